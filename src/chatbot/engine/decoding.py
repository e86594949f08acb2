"""Forward passes with a KV cache, for one sequence: causal LMs and encoder-decoder models."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from transformers import DynamicCache, EncoderDecoderCache


class DecodingSession(Protocol):
    def prefill(self) -> torch.Tensor:
        """Run the prompt; return the logits for the first new token (1-D)."""

    def step(self, token: int) -> torch.Tensor:
        """Feed one token; return the logits for the next one (1-D)."""


class CausalSession:
    def __init__(self, model: Any, input_ids: list[int], device: torch.device) -> None:
        self._model = model
        self._device = device
        self._input_ids = input_ids
        self._cache = DynamicCache(config=model.config)

    def prefill(self) -> torch.Tensor:
        ids = torch.tensor([self._input_ids], device=self._device)
        return self._forward(ids)

    def step(self, token: int) -> torch.Tensor:
        return self._forward(torch.tensor([[token]], device=self._device))

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self._model(input_ids=ids, cache=self._cache, use_cache=True, logits_to_keep=1)
        logits: torch.Tensor = out.logits[0, -1]
        return logits


class Seq2SeqSession:
    def __init__(self, model: Any, input_ids: list[int], device: torch.device) -> None:
        self._model = model
        self._device = device
        self._input_ids = input_ids
        self._cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self._encoder_outputs: Any = None

    def prefill(self) -> torch.Tensor:
        ids = torch.tensor([self._input_ids], device=self._device)
        self._encoder_outputs = self._model.get_encoder()(input_ids=ids)
        start = self._model.config.decoder_start_token_id
        if start is None:
            start = self._model.config.bos_token_id
        return self.step(int(start))

    def step(self, token: int) -> torch.Tensor:
        out = self._model(
            encoder_outputs=self._encoder_outputs,
            decoder_input_ids=torch.tensor([[token]], device=self._device),
            cache=self._cache,
            use_cache=True,
        )
        logits: torch.Tensor = out.logits[0, -1]
        return logits
