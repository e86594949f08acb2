"""One request's decoding state: sampling, text, stop sequences, limits and its outcome."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch

from chatbot.domain import FinishReason, GenerationParams, Usage
from chatbot.engine.base import Generation, GenerationOutcome
from chatbot.engine.sampling import TokenSampler
from chatbot.engine.text_stream import IncrementalDetokenizer, StopSequenceFilter


class SequenceState:
    """Everything a scheduler needs to advance one request by one token, batched or not."""

    def __init__(
        self,
        generation: Generation,
        params: GenerationParams,
        tokenizer: Any,
        eos_token_ids: Collection[int],
        input_ids: list[int],
        device: torch.device,
    ) -> None:
        self.generation = generation
        self.params = params
        self.input_ids = input_ids
        self._sampler = TokenSampler(params, device)
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._stops = StopSequenceFilter(params.stop)
        self._eos = frozenset(eos_token_ids)
        self.completion_tokens = 0
        self.finished = False
        self.last_token: int | None = None

    @property
    def cancelled(self) -> bool:
        return self.generation.cancelled

    def choose(self, logits: torch.Tensor) -> int:
        return self._sampler(logits)

    def advance(self, token: int) -> bool:
        """Take one new token; return True when the request is finished."""
        self.last_token = token
        if token in self._eos:
            self.finish(FinishReason.STOP)
            return True
        self.completion_tokens += 1
        shown = self._stops.feed(self._detokenizer.add(token))
        if shown:
            self.generation.push(shown)
        if self._stops.stopped:
            self.finish(FinishReason.STOP)
        elif self.completion_tokens >= self.params.max_new_tokens:
            self.finish(FinishReason.LENGTH)
        return self.finished

    def finish(self, reason: FinishReason) -> None:
        if self.finished:
            return
        self.finished = True
        if reason is not FinishReason.CANCELLED:
            tail = self._stops.feed(self._detokenizer.flush()) + self._stops.flush()
            if tail:
                self.generation.push(tail)
        usage = Usage(prompt_tokens=len(self.input_ids), completion_tokens=self.completion_tokens)
        self.generation.push(GenerationOutcome(reason, usage, self.generation.dropped_messages))

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.generation.push(error)
