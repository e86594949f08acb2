"""The one thread that owns the model and runs requests on it, first come first served."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable

import torch

from chatbot.domain import FinishReason
from chatbot.engine.decoding import DecodingSession
from chatbot.engine.sequence import SequenceState
from chatbot.engine.threads import start_model_thread

logger = logging.getLogger(__name__)

SessionFactory = Callable[[list[int]], DecodingSession]


class SequentialScheduler:
    """Runs one request at a time to completion: the seed's design, and the safe default.

    Only this thread calls the model, so callers on any thread are safe without a lock.
    Cancellation is checked before every forward pass, so a stop costs at most one token.
    """

    def __init__(self, new_session: SessionFactory, name: str = "engine") -> None:
        self._new_session = new_session
        self._jobs: queue.SimpleQueue[SequenceState | None] = queue.SimpleQueue()
        self._thread = start_model_thread(self._run, name)

    def submit(self, sequence: SequenceState) -> None:
        self._jobs.put(sequence)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while (sequence := self._jobs.get()) is not None:
            try:
                with torch.inference_mode():
                    self._decode(sequence)
            except Exception as exc:  # one failed request must not stop the engine
                logger.exception("generation failed")
                sequence.fail(exc)

    def _decode(self, sequence: SequenceState) -> None:
        if sequence.cancelled:
            sequence.finish(FinishReason.CANCELLED)
            return
        session = self._new_session(sequence.input_ids)
        logits = session.prefill()
        while True:
            if sequence.advance(sequence.choose(logits)):
                return
            if sequence.cancelled:
                sequence.finish(FinishReason.CANCELLED)
                return
            logits = session.step(sequence.last_token or 0)
