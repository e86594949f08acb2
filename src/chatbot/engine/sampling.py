"""Choosing the next token: greedy, or temperature and nucleus sampling with a seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatbot.domain import GenerationParams

if TYPE_CHECKING:
    import torch


class TokenSampler:
    """One per request, so a seed gives the same reply whatever else runs beside it."""

    def __init__(self, params: GenerationParams, device: str) -> None:
        import torch  # here, not at import: the OpenVINO path never loads torch

        self._params = params
        self._generator: torch.Generator | None = None
        if not params.greedy:
            self._generator = torch.Generator(device=device)
            if params.seed is not None:
                self._generator.manual_seed(params.seed)
            else:
                self._generator.seed()

    def __call__(self, logits: torch.Tensor) -> int:
        """Pick from 1-D logits over the vocabulary."""
        import torch

        if self._generator is None:
            return int(torch.argmax(logits).item())
        scaled = logits.float() / self._params.temperature
        probs = torch.softmax(scaled, dim=-1)
        if self._params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            outside = cumulative - sorted_probs > self._params.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            choice = torch.multinomial(sorted_probs, 1, generator=self._generator)
            return int(order[choice].item())
        return int(torch.multinomial(probs, 1, generator=self._generator).item())
