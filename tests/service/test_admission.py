"""AdmissionControl: C places, Q queue slots, refusal at once beyond, FIFO promotion.

It lives on the service's event loop: waiting is a future, never a thread or a poll.
"""

from __future__ import annotations

import asyncio

import pytest

from chatbot.errors import OverloadedError, UnavailableError
from chatbot.service.admission import AdmissionControl
from tests.fixtures.engines import run_async


def test_refuses_at_once_beyond_places_and_queue() -> None:
    control = AdmissionControl(max_concurrent=1, max_queued=1, queue_timeout_s=5)
    first = control.reserve()
    second = control.reserve()
    assert first.granted and not second.granted
    assert (control.in_flight, control.queued) == (1, 1)
    with pytest.raises(OverloadedError) as refused:
        control.reserve()
    assert refused.value.retry_after_s >= 1
    assert refused.value.status_code == 429


def test_release_promotes_the_oldest_waiter_and_is_idempotent() -> None:
    control = AdmissionControl(max_concurrent=1, max_queued=2, queue_timeout_s=5)
    holder = control.reserve()
    older, newer = control.reserve(), control.reserve()
    holder.release()
    holder.release()
    assert older.granted and not newer.granted
    assert (control.in_flight, control.queued) == (1, 1)
    run_async(older.wait(timeout=0.1))  # already placed: returns at once
    assert newer.position == 1 and older.position == 0
    older.release()
    assert newer.granted
    newer.release()
    assert (control.in_flight, control.queued) == (0, 0)


def test_wait_times_out_and_frees_the_queue_slot() -> None:
    control = AdmissionControl(max_concurrent=1, max_queued=1, queue_timeout_s=0.05)
    control.reserve()
    waiting = control.reserve()
    with pytest.raises(UnavailableError):
        run_async(waiting.wait())
    assert control.queued == 0


def test_queue_positions_move_up_as_places_free() -> None:
    control = AdmissionControl(max_concurrent=1, max_queued=3, queue_timeout_s=5)
    holder = control.reserve()
    waiters = [control.reserve() for _ in range(3)]
    assert [w.position for w in waiters] == [1, 2, 3]
    holder.release()
    assert [w.position for w in waiters] == [0, 1, 2]
    waiters[2].release()  # leaving the queue frees its slot at once
    assert control.queued == 1


def test_async_wait_wakes_and_cancel_gives_the_slot_back() -> None:
    async def scenario() -> None:
        control = AdmissionControl(max_concurrent=1, max_queued=2, queue_timeout_s=5)
        holder = control.reserve()
        waiting = control.reserve()
        asyncio.get_running_loop().call_later(0.05, holder.release)
        await waiting.wait()
        assert waiting.granted
        abandoned = control.reserve()
        task = asyncio.ensure_future(abandoned.wait())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert control.queued == 0

    run_async(scenario())
