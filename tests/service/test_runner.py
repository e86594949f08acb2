"""The reply runner on the real embedded model: stops at any moment, readers early and late."""

from __future__ import annotations

import pytest

from chatbot.domain import GenerationParams, Message, MessageStatus
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.service.admission import AdmissionControl
from chatbot.service.metrics import Metrics
from chatbot.service.runner import ReplyEnd, ReplyLimits, ReplyRunner
from tests.fixtures.engines import run_async

pytestmark = pytest.mark.slow

HI = [Message.user("Tell me about the sea.")]


def _runner(engine: TransformersEngine) -> tuple[ReplyRunner, AdmissionControl]:
    admission = AdmissionControl(max_concurrent=1, max_queued=1, queue_timeout_s=30)
    return ReplyRunner(engine, admission, Metrics(), ReplyLimits()), admission


def test_a_reply_stopped_before_its_task_runs_still_ends_and_frees_its_place(
    embedded_engine: TransformersEngine,
) -> None:
    async def scenario() -> tuple[ReplyEnd, int]:
        runner, admission = _runner(embedded_engine)
        reply = runner.start(HI, GenerationParams(max_new_tokens=8), endpoint="test")
        reply.stop()  # before the task's first step
        end = await reply.wait_finished()
        return end, admission.in_flight

    end, in_flight = run_async(scenario())
    assert end.status is MessageStatus.STOPPED
    assert in_flight == 0


def test_early_readers_get_pieces_late_readers_catch_up_in_one(
    embedded_engine: TransformersEngine,
) -> None:
    async def scenario() -> tuple[list[str], list[str], str]:
        runner, _ = _runner(embedded_engine)
        reply = runner.start(HI, GenerationParams(max_new_tokens=12), endpoint="test")
        early: list[str] = []
        late: list[str] = []
        async for item in reply.stream(catch_up=False):  # the reader that asked
            if isinstance(item, str):
                early.append(item)
        async for item in reply.stream():  # after the end: everything as one piece
            if isinstance(item, str):
                late.append(item)
        return early, late, reply.text()

    early, late, text = run_async(scenario())
    assert len(early) > 3, "an early reader gets the reply piece by piece"
    assert "".join(early) == text
    assert late == [text]


def test_time_in_the_queue_is_counted_apart_from_generation(
    embedded_engine: TransformersEngine,
) -> None:
    async def scenario() -> tuple[ReplyEnd, ReplyEnd]:
        runner, _ = _runner(embedded_engine)
        params = GenerationParams(max_new_tokens=16, temperature=0)
        first = runner.start(HI, params, endpoint="test")
        second = runner.start(HI, params, endpoint="test")  # waits for the one place
        return await first.wait_finished(), await second.wait_finished()

    first, second = run_async(scenario())
    # The first got its place at once: its time in the queue is the event loop's scheduling,
    # far below the second's wait (a shared CPU can stretch the scheduling to tens of ms).
    assert first.stats.queued_s is not None and first.stats.queued_s < 0.5
    assert second.stats.queued_s is not None and first.stats.duration_s is not None
    # The second waited about as long as the first took; its speed leaves that wait out.
    assert second.stats.queued_s > 0.5 * first.stats.duration_s
    assert second.stats.generation_s is not None and second.stats.duration_s is not None
    assert second.stats.generation_s < second.stats.duration_s - 0.5 * first.stats.duration_s
