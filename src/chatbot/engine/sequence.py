"""One request's decoding state: sampling, text, stop sequences, limits and its outcome."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from chatbot.domain import FinishReason, GenerationParams, Usage
from chatbot.engine.base import ChunkChannel, GenerationOutcome
from chatbot.engine.sampling import TokenSampler
from chatbot.engine.text_stream import IncrementalDetokenizer, StopSequenceFilter

if TYPE_CHECKING:
    import torch

    from chatbot.engine.constraints import JsonConstraint


class SequenceState:
    """Everything a scheduler needs to advance one request by one token, batched or not."""

    def __init__(
        self,
        channel: ChunkChannel,
        params: GenerationParams,
        tokenizer: Any,
        eos_token_ids: Collection[int],
        input_ids: list[int],
        device: str,
        dropped_messages: int = 0,
        constraint: JsonConstraint | None = None,
    ) -> None:
        self.channel = channel
        self.constraint = constraint
        self.dropped_messages = dropped_messages
        self.params = params
        self.input_ids = input_ids
        self._device = device
        self._sampler: TokenSampler | None = None  # made at the first choice: engines that
        # sample natively (OpenVINO) never need it, nor torch
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._stops = StopSequenceFilter(params.stop)
        self._eos = frozenset(eos_token_ids)
        self.completion_tokens = 0
        self.finished = False
        self.last_token: int | None = None

    @property
    def cancelled(self) -> bool:
        return self.channel.cancelled

    def choose(self, logits: torch.Tensor) -> int:
        if self._sampler is None:
            self._sampler = TokenSampler(self.params, self._device)
        if self.constraint is not None:
            logits = self.constraint.mask(logits)
        elif self.params.ignore_eos:
            logits = logits.clone()
            logits[[t for t in self._eos if t < logits.shape[-1]]] = float("-inf")
        return self._sampler(logits)

    def advance(self, token: int) -> bool:
        """Take one new token; return True when the request is finished."""
        self.last_token = token
        if self.constraint is not None:
            self.constraint.accept(token)
        # With ignore_eos an end-of-text token (from a sampler that is not ours) is a token
        # like the others; a schema's end still ends the reply.
        if token in self._eos and (self.constraint is not None or not self.params.ignore_eos):
            self.finish(FinishReason.STOP)
            return True
        self.completion_tokens += 1
        shown = self._stops.feed(self._detokenizer.add(token))
        if shown:
            self.channel.push(shown)
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
                self.channel.push(tail)
        usage = Usage(prompt_tokens=len(self.input_ids), completion_tokens=self.completion_tokens)
        self.channel.push(GenerationOutcome(reason, usage, self.dropped_messages))

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.channel.push(error)
