"""Waiting states: the estimate, and replies that say why they wait, on the real embedded model."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from chatbot.config import LimitSettings
from chatbot.domain import GenerationParams, Message, ReplyEventType, ReplyStats, WaitPhase
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.errors import OverloadedError
from chatbot.service.admission import AdmissionControl
from chatbot.service.local import ChatService
from chatbot.service.metrics import Metrics
from chatbot.service.portal import PortalChatService
from chatbot.service.runner import ReplyLimits, ReplyRunner
from chatbot.service.waiting import (
    READING_NOTICE_TOKENS,
    ReplyTimes,
    Running,
    WaitState,
    estimate_start_s,
)
from chatbot.store import ConversationStore
from tests.fixtures.engines import run_async
from tests.fixtures.prompts import LONG_PROMPT

HI = [Message.user("Tell me about the sea.")]


# -- the estimate (pure) ------------------------------------------------------------------------
def test_no_estimate_before_a_reply_is_measured() -> None:
    assert ReplyTimes().mean_s() is None
    assert estimate_start_s(2, 1, [Running(1.0)], None) is None
    assert ReplyTimes().tokens_per_s() is None


def test_the_estimate_plays_the_queue_forward() -> None:
    times = ReplyTimes(window=3)
    for seconds in (10.0, 2.0, 4.0, 6.0):  # the first falls out of the window
        times.add(seconds, tokens=24)
    assert times.mean_s() == 4.0
    assert times.tokens_per_s() == 6.0  # 72 tokens in the window's 12 s
    # One place, its reply has run 1 s of the expected 4: the next in line waits 3 s, the
    # second 3 + 4 s.
    assert estimate_start_s(1, 1, [Running(1.0)], 4.0) == 3.0
    assert estimate_start_s(2, 1, [Running(1.0)], 4.0) == 7.0
    # Two places, one idle: the next in line starts at once, the second when the busy one ends.
    assert estimate_start_s(1, 2, [Running(1.0)], 4.0) == 0.0
    assert estimate_start_s(2, 2, [Running(1.0)], 4.0) == 3.0
    # Never later than its token budget allows (2 s of tokens left < 3 s to the mean).
    assert estimate_start_s(1, 1, [Running(1.0, budget_left_s=2.0)], 4.0) == 2.0
    # Past the mean, its token budget says how long it may still take.
    assert estimate_start_s(1, 1, [Running(9.0, budget_left_s=5.0)], 4.0) == 5.0
    # Past the mean with no measured speed (no reply has made a token yet): another mean, not
    # "now", which would be wrong for every long reply.
    assert estimate_start_s(1, 1, [Running(9.0)], 4.0) == 4.0
    # A reply whose tokens are all made (it is ending) frees its place at once.
    assert estimate_start_s(1, 1, [Running(9.0, budget_left_s=0.0)], 4.0) == 0.0
    # Just short of the mean: a few milliseconds left, which is not "now" (rounded up).
    assert estimate_start_s(1, 1, [Running(3.96, budget_left_s=90.0)], 4.0) == 0.1


def test_the_speed_counts_the_whole_time_in_the_place() -> None:
    # A short reply whose pieces reach the service in one burst (a busy event loop) still
    # gives a finite speed: 8 tokens in the 0.25 s it held its place. A reply that made
    # nothing (an error) counts towards the mean, not the speed.
    times = ReplyTimes()
    times.add(0.25, tokens=8)
    times.add(0.25, tokens=0)
    assert times.tokens_per_s() == 32.0
    assert times.mean_s() == 0.25
    # The running reply is past the mean with 500 tokens left: about 500 / 32 s (15.625, up to
    # a tenth), not "now".
    eta = estimate_start_s(1, 1, [Running(3.0, budget_left_s=500 / 32.0)], times.mean_s())
    assert eta == 15.7


# -- the runner on the real model ---------------------------------------------------------------
def _runner(engine: TransformersEngine) -> ReplyRunner:
    admission = AdmissionControl(max_concurrent=1, max_queued=1, queue_timeout_s=120)
    return ReplyRunner(engine, admission, Metrics(), ReplyLimits())


@pytest.mark.slow
def test_a_queued_reply_reports_its_position_and_estimate_then_streams(
    embedded_engine: TransformersEngine,
) -> None:
    async def scenario() -> tuple[list[WaitState], str, dict[str, object]]:
        runner = _runner(embedded_engine)
        first = runner.start(HI, GenerationParams(max_new_tokens=4), endpoint="test")
        await first.wait_finished()  # one measured reply: the estimate has a basis
        running = runner.start(HI, GenerationParams(max_new_tokens=48), endpoint="test")
        queued = runner.start(HI, GenerationParams(max_new_tokens=4), endpoint="test")
        status = runner.status()
        with pytest.raises(OverloadedError) as refused:  # the queue's one slot is taken
            runner.start(HI, GenerationParams(max_new_tokens=4), endpoint="test")
        expected = runner.estimate_start_s(1)
        assert expected is not None
        assert refused.value.retry_after_s == max(1, min(60, math.ceil(expected)))
        states = [state async for state in queued.waiting()]
        await queued.wait_finished()
        await running.wait_finished()
        return states, queued.text(), {"running": status.running, "queued": status.queued}

    states, text, status = run_async(scenario())
    assert status == {"running": 1, "queued": 1}
    assert states, "a queued reply says it waits"
    assert states[0].phase is WaitPhase.QUEUED and states[0].queue_position == 1
    assert states[0].eta_s is not None and states[0].eta_s > 0
    assert all(s.phase is WaitPhase.QUEUED for s in states)
    assert text, "once its turn comes, it streams"


@pytest.mark.slow
def test_a_reply_sent_while_the_model_loads_says_so_then_streams(
    embedded_engine: TransformersEngine,
) -> None:
    async def scenario() -> tuple[list[WaitState], bool, bool, str, ReplyStats]:
        runner = _runner(embedded_engine)
        go = asyncio.Event()

        async def load() -> None:  # the real load, held until the test has seen the state
            await go.wait()
            await asyncio.sleep(0.3)  # at least this long "loading", whatever the load takes
            await asyncio.to_thread(embedded_engine.load)

        runner.load_in_background(load())
        reply = runner.start(HI, GenerationParams(max_new_tokens=4), endpoint="test")
        states: list[WaitState] = []
        loaded_before = runner.loaded
        async for state in reply.waiting():
            states.append(state)
            go.set()
        await reply.wait_finished()
        assert reply.end is not None
        return states, loaded_before, runner.loaded, reply.text(), reply.end.stats

    states, loaded_before, loaded_after, text, stats = run_async(scenario())
    assert not loaded_before and loaded_after
    assert states[0] == WaitState(WaitPhase.LOADING)
    assert text
    # The wait for the model shows apart from the queue and from the model's speed.
    assert stats.loading_s is not None and stats.loading_s >= 0.3
    assert stats.queued_s is not None and stats.queued_s < 0.3
    assert stats.duration_s is not None and stats.generation_s is not None
    assert stats.generation_s <= stats.duration_s - stats.loading_s + 1e-6


@pytest.mark.slow
def test_a_long_prompt_is_read_with_its_token_count_a_short_one_says_nothing(
    embedded_engine: TransformersEngine,
) -> None:
    long = [Message.user("Please summarise this. " + "The sea is wide and deep. " * 80)]

    async def scenario() -> tuple[list[WaitState], list[WaitState]]:
        runner = _runner(embedded_engine)
        reply = runner.start(long, GenerationParams(max_new_tokens=2), endpoint="test")
        read = [state async for state in reply.waiting()]
        await reply.wait_finished()
        short = runner.start(HI, GenerationParams(max_new_tokens=2), endpoint="test")
        quiet = [state async for state in short.waiting()]
        await short.wait_finished()
        return read, quiet

    read, quiet = run_async(scenario())
    assert len(read) == 1 and read[0].phase is WaitPhase.READING
    assert read[0].prompt_tokens is not None and read[0].prompt_tokens >= READING_NOTICE_TOKENS
    assert quiet == []


# -- the service: waiting events in the reply stream (what both transports carry) ---------------
@pytest.mark.slow
def test_the_second_conversation_hears_its_place_in_the_queue(
    embedded_engine: TransformersEngine, tmp_path: Path
) -> None:
    runner = _runner(embedded_engine)
    chat = ChatService(
        embedded_engine,
        ConversationStore.open(f"sqlite:///{tmp_path / 'q.sqlite3'}"),
        LimitSettings(),
        runner=runner,
    )
    service = PortalChatService.around(chat)
    try:
        busy = service.create_conversation(params=GenerationParams(max_new_tokens=48)).id
        waiting = service.create_conversation(params=GenerationParams(max_new_tokens=4)).id
        assert busy and waiting
        first = service.send_message(busy, LONG_PROMPT)
        assert next(first).type is ReplyEventType.START
        events = list(service.send_message(waiting, "Hi"))
        list(first)
        status = service.status()
    finally:
        service.close()
    kinds = [e.type for e in events]
    assert kinds[0] is ReplyEventType.START and kinds[-1] is ReplyEventType.DONE
    waits = [e for e in events if e.type is ReplyEventType.WAITING]
    assert waits and waits[0].phase is WaitPhase.QUEUED and waits[0].queue_position == 1
    assert kinds.index(ReplyEventType.WAITING) < kinds.index(ReplyEventType.DELTA)
    assert status.loaded and status.running == 0 and status.queued == 0
    assert status.mean_reply_s is not None and status.estimate_s == 0.0
