"""One contract for ChatServiceProtocol, run in process and over HTTP against a real backend.

Whatever the UI can do in one deployment, this suite proves in the other.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable

import pytest

from chatbot.domain import (
    ExportFormat,
    GenerationParams,
    MessageStatus,
    ReplyEvent,
    ReplyEventType,
    Role,
)
from chatbot.errors import ConflictError, InvalidRequestError, NotFoundError
from chatbot.service.protocol import ChatServiceProtocol
from tests.client.conftest import PRODUCT_TEMPERATURE
from tests.fixtures.prompts import LONG_PROMPT

pytestmark = pytest.mark.slow

SHORT = GenerationParams(max_new_tokens=6)
# Greedy: a sure length, no early end; 256 tokens leave a Stop seconds of margin on any engine.
LONG = GenerationParams(max_new_tokens=256, temperature=0.0, ignore_eos=True)
MISSING = "0" * 32


def _drain(events: Iterable[ReplyEvent]) -> tuple[list[ReplyEvent], str]:
    seen = list(events)
    return seen, "".join(e.delta for e in seen if e.type is ReplyEventType.DELTA)


def _wait_for_text(service: ChatServiceProtocol, cid: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = service.get_conversation(cid).messages[-1]
        if last.role is Role.ASSISTANT and last.content:
            return
        time.sleep(0.1)
    raise AssertionError("the reply wrote nothing in time")


def test_identity(chat_service: ChatServiceProtocol) -> None:
    assert isinstance(chat_service, ChatServiceProtocol)
    assert chat_service.deployment in ("monolith", "microservices")
    assert "SmolLM2" in chat_service.model_id


def test_new_conversations_sample_and_greedy_stays_available(
    shipped_service: ChatServiceProtocol,
) -> None:
    default = PRODUCT_TEMPERATURE
    assert default > 0  # Regenerate gives another answer
    assert shipped_service.create_conversation(params=SHORT).params.temperature == default
    assert shipped_service.create_conversation().params.temperature == default
    greedy = shipped_service.create_conversation(params=SHORT.model_copy(update={"temperature": 0}))
    assert greedy.params.greedy and greedy.params.max_new_tokens == 6
    stored = shipped_service.get_conversation(greedy.id or "")
    assert stored.params.greedy


def test_the_suite_runs_greedy_unless_a_test_asks(chat_service: ChatServiceProtocol) -> None:
    # tests/conftest.py: a conversation that names no temperature replies the same way every
    # run, on both transports, so stops and comparisons never race a reply that ended early.
    assert chat_service.create_conversation(params=SHORT).params.greedy


def test_create_list_get_rename_delete(chat_service: ChatServiceProtocol) -> None:
    created = chat_service.create_conversation(
        title="Plans", system_prompt="Be brief.", params=SHORT
    )
    assert created.id and created.title == "Plans"
    assert created.system_prompt == "Be brief." and created.params.max_new_tokens == 6
    assert created.id in [s.id for s in chat_service.list_conversations(limit=200)]
    renamed = chat_service.update_conversation(created.id, title="Holiday plans")
    assert renamed.title == "Holiday plans"
    assert renamed.system_prompt == "Be brief."  # None leaves a field as it is
    cleared = chat_service.update_conversation(created.id, system_prompt="")
    assert not cleared.system_prompt
    tuned = chat_service.update_conversation(
        created.id, params=GenerationParams(max_new_tokens=5, temperature=0.7)
    )
    assert (tuned.params.max_new_tokens, tuned.params.temperature) == (5, 0.7)
    assert chat_service.get_conversation(created.id).title == "Holiday plans"
    chat_service.delete_conversation(created.id)
    with pytest.raises(NotFoundError):
        chat_service.get_conversation(created.id)
    assert created.id not in [s.id for s in chat_service.list_conversations(limit=200)]


def test_list_is_newest_first_and_pages(chat_service: ChatServiceProtocol) -> None:
    ids = [chat_service.create_conversation(title=f"c{i}").id for i in range(3)]
    page = chat_service.list_conversations(limit=2)
    assert [s.id for s in page] == ids[::-1][:2]
    assert chat_service.list_conversations(limit=1, offset=1)[0].id == ids[1]


def test_send_streams_start_deltas_done_and_stores_both(
    chat_service: ChatServiceProtocol,
) -> None:
    cid = chat_service.create_conversation(params=SHORT).id or ""
    events, text = _drain(chat_service.send_message(cid, "Say hi"))
    assert events[0].type is ReplyEventType.START
    assert events[0].user_message is not None and events[0].user_message.content == "Say hi"
    assert events[-1].type is ReplyEventType.DONE
    assert sum(e.type is ReplyEventType.DELTA for e in events) >= 1
    final = events[-1].message
    assert final is not None and final.content == text and text
    assert final.stats is not None and 1 <= final.stats.completion_tokens <= 6
    stored = chat_service.get_conversation(cid)
    assert [(m.role, m.status) for m in stored.messages] == [
        (Role.USER, MessageStatus.COMPLETE),
        (Role.ASSISTANT, MessageStatus.COMPLETE),
    ]
    assert stored.messages[1].content == text
    assert stored.title != "New conversation"  # named after the first message


def test_refusals_are_typed_errors(chat_service: ChatServiceProtocol) -> None:
    cid = chat_service.create_conversation(params=SHORT).id or ""
    with pytest.raises(InvalidRequestError) as empty:
        chat_service.send_message(cid, "   ")
    assert empty.value.param == "content"
    with pytest.raises(NotFoundError):
        chat_service.send_message(MISSING, "hello")
    with pytest.raises(NotFoundError):
        chat_service.update_conversation(MISSING, title="x")
    with pytest.raises(NotFoundError):
        chat_service.export_conversation(MISSING, ExportFormat.CSV)
    with pytest.raises(InvalidRequestError):
        chat_service.import_conversation("not,a,conversation\n", ExportFormat.CSV)
    assert chat_service.get_conversation(cid).messages == ()  # nothing stored on refusal


def test_conflict_stop_and_attach(chat_service: ChatServiceProtocol) -> None:
    cid = chat_service.create_conversation(params=LONG).id or ""
    stream = chat_service.send_message(cid, LONG_PROMPT)
    _wait_for_text(chat_service, cid)
    with pytest.raises(ConflictError):
        chat_service.send_message(cid, "And again")
    attached = chat_service.attach(cid)
    assert chat_service.stop(cid) is True
    events, text = _drain(attached)
    assert events[0].type is ReplyEventType.START
    assert events[-1].type is ReplyEventType.DONE
    final = events[-1].message
    assert final is not None and final.status is MessageStatus.STOPPED
    stored = chat_service.get_conversation(cid).messages[-1]
    assert stored.status is MessageStatus.STOPPED and stored.content == text
    assert stored.stats is None or stored.stats.completion_tokens < 256
    assert chat_service.stop(cid) is False
    assert list(chat_service.attach(cid)) == []
    _drain(stream)  # the first reader still ends cleanly
    chat_service.update_conversation(cid, params=SHORT)  # the next reply need not be long
    events, _ = _drain(chat_service.send_message(cid, "ok"))  # no conflict any more
    assert events[-1].type is ReplyEventType.DONE


def test_regenerate_replaces_the_last_reply(chat_service: ChatServiceProtocol) -> None:
    cid = chat_service.create_conversation(params=SHORT).id or ""
    _drain(chat_service.send_message(cid, "Name a fruit."))
    before = chat_service.get_conversation(cid).messages
    _, text = _drain(chat_service.regenerate(cid))
    after = chat_service.get_conversation(cid).messages
    assert [m.role for m in after] == [Role.USER, Role.ASSISTANT]
    assert after[0].id == before[0].id
    assert after[1].id != before[1].id and after[1].content == text


def test_edit_replaces_the_message_and_drops_later_ones(
    chat_service: ChatServiceProtocol,
) -> None:
    cid = chat_service.create_conversation(params=SHORT).id or ""
    _drain(chat_service.send_message(cid, "First question"))
    _drain(chat_service.send_message(cid, "Second question"))
    first = chat_service.get_conversation(cid).messages[0]
    _drain(chat_service.edit_message(cid, first.id or "", "Edited question"))
    after = chat_service.get_conversation(cid).messages
    assert [(m.role, m.content) for m in after][:1] == [(Role.USER, "Edited question")]
    assert len(after) == 2 and after[1].role is Role.ASSISTANT


def test_clear_keeps_title_and_settings(chat_service: ChatServiceProtocol) -> None:
    cid = chat_service.create_conversation(title="Keep", system_prompt="Hi", params=SHORT).id
    assert cid
    _drain(chat_service.send_message(cid, "Hello"))
    cleared = chat_service.clear_conversation(cid)
    assert cleared.messages == () and cleared.title == "Keep" and cleared.system_prompt == "Hi"


def test_export_and_import_round_trip(chat_service: ChatServiceProtocol) -> None:
    cid = chat_service.create_conversation(title="Trip", system_prompt="Be kind.", params=SHORT).id
    assert cid
    _drain(chat_service.send_message(cid, 'Hello, "world"'))
    original = chat_service.get_conversation(cid)
    exported = chat_service.export_conversation(cid, ExportFormat.CSV)
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows == [
        ["is_user", "text"],
        ["True", 'Hello, "world"'],
        ["False", original.messages[1].content],
    ]
    from_csv = chat_service.import_conversation(exported, ExportFormat.CSV)
    assert from_csv.id != cid
    assert [(m.role, m.content) for m in from_csv.messages] == [
        (m.role, m.content) for m in original.messages
    ]
    as_json = chat_service.export_conversation(cid, ExportFormat.JSON)
    assert json.loads(as_json)["title"] == "Trip"
    from_json = chat_service.import_conversation(as_json, ExportFormat.JSON)
    assert from_json.title == "Trip" and from_json.system_prompt == "Be kind."
    assert len(chat_service.get_conversation(from_json.id or "").messages) == 2
    markdown = chat_service.export_conversation(cid, ExportFormat.MARKDOWN)
    assert markdown.startswith("# Trip")
    with pytest.raises(InvalidRequestError):
        chat_service.import_conversation(markdown, ExportFormat.MARKDOWN)


def test_limits_are_one_rule_on_both_transports(chat_service: ChatServiceProtocol) -> None:
    """Over-cap and out-of-range input: the same refusal, naming what to fix, on both sides."""
    limits = chat_service.limits()
    assert limits.max_tokens_cap == 256  # the suite's cap, read from the service itself
    over = GenerationParams(max_new_tokens=limits.max_tokens_cap + 1)
    cid = chat_service.create_conversation(params=SHORT).id or ""
    refusals = {
        "create": lambda: chat_service.create_conversation(params=over),
        "update": lambda: chat_service.update_conversation(cid, params=over),
        "import": lambda: chat_service.import_conversation(
            json.dumps({"title": "t", "params": over.model_dump(), "messages": []}),
            ExportFormat.JSON,
        ),
    }
    for action, refuse in refusals.items():
        with pytest.raises(InvalidRequestError, match="CHATBOT_MAX_TOKENS_CAP") as info:
            refuse()
        assert info.value.param == "params.max_new_tokens", action
        assert info.value.code == "max_tokens_too_large", action
    at_cap = chat_service.update_conversation(
        cid, params=GenerationParams(max_new_tokens=limits.max_tokens_cap)
    )
    assert at_cap.params.max_new_tokens == limits.max_tokens_cap
    unset = chat_service.create_conversation()
    assert unset.params.max_new_tokens == limits.default_max_tokens
    too_long = "x" * (limits.max_message_chars + 1)
    for field, call in (
        ("content", lambda: chat_service.send_message(cid, too_long)),
        ("title", lambda: chat_service.update_conversation(cid, title="t" * 201)),
        ("system_prompt", lambda: chat_service.update_conversation(cid, system_prompt=too_long)),
    ):
        with pytest.raises(InvalidRequestError) as info:
            call()
        assert info.value.param == field
    assert chat_service.get_conversation(cid).messages == ()  # nothing stored on refusal
