"""ChatService with the real embedded model, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from chatbot.config import LimitSettings
from chatbot.domain import (
    ExportFormat,
    FinishReason,
    GenerationParams,
    MessageStatus,
    ReplyEventType,
    Role,
)
from chatbot.engine.transformers_engine import TransformersEngine
from chatbot.errors import ConflictError, InvalidRequestError, NotFoundError, OverloadedError
from chatbot.service.admission import AdmissionControl
from chatbot.service.local import ChatService
from chatbot.service.metrics import Metrics
from chatbot.service.portal import PortalChatService
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.service.runner import ReplyLimits, ReplyRunner
from chatbot.store import ConversationStore
from tests.fixtures.prompts import LONG_PROMPT
from tests.service.replies import text_of, until_first_delta

SHORT = GenerationParams(max_new_tokens=6)
# Greedy: a new conversation samples at the server default (0.7) unless told, and a sampled
# reply may end before the Stop these tests send.
# Past the end-of-text token to its 200 tokens: a reply that is stopped cannot end first.
LONG = GenerationParams(max_new_tokens=200, temperature=0.0, ignore_eos=True)


def _new(service: PortalChatService, params: GenerationParams = SHORT) -> str:
    conversation_id = service.create_conversation(params=params).id
    assert conversation_id is not None
    return conversation_id


def _wait_until_idle(
    service: PortalChatService, conversation_id: str, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while service.get_conversation(conversation_id).messages[-1].status is MessageStatus.STREAMING:
        assert time.monotonic() < deadline, "the reply never ended"
        time.sleep(0.1)


def test_is_the_contract(service: PortalChatService) -> None:
    assert isinstance(service, ChatServiceProtocol)
    assert service.deployment == "monolith" and service.model_id


def test_send_streams_and_persists(service: PortalChatService) -> None:
    conversation_id = _new(service)
    events = list(service.send_message(conversation_id, "Hello! Who are you?"))
    start, done = events[0], events[-1]
    assert start.type is ReplyEventType.START
    assert start.user_message is not None and start.user_message.content == "Hello! Who are you?"
    assert start.message is not None and start.message.id is not None
    assert start.message.status is MessageStatus.STREAMING
    assert done.type is ReplyEventType.DONE and done.message is not None
    assert {e.type for e in events[1:-1]} == {ReplyEventType.DELTA}
    final = done.message
    assert final.id == start.message.id and final.status is MessageStatus.COMPLETE
    assert final.content == text_of(events) and final.content
    stats = final.stats
    assert stats is not None
    assert 0 < stats.completion_tokens <= 6 and stats.prompt_tokens > 0
    assert stats.time_to_first_token_s is not None and stats.duration_s is not None
    assert stats.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)

    stored = service.get_conversation(conversation_id)
    assert [(m.role, m.content, m.status) for m in stored.messages] == [
        (Role.USER, "Hello! Who are you?", MessageStatus.COMPLETE),
        (Role.ASSISTANT, final.content, MessageStatus.COMPLETE),
    ]
    assert stored.messages[1].stats == stats
    assert stored.title == "Hello! Who are you?"
    assert service.list_conversations()[0].id == conversation_id


def test_system_prompt_and_params_per_conversation(service: PortalChatService) -> None:
    created = service.create_conversation(
        title="Pirate", system_prompt="You are a pirate.", params=GenerationParams(max_new_tokens=3)
    )
    assert created.id is not None
    done = list(service.send_message(created.id, "Hi"))[-1].message
    assert done is not None and done.stats is not None
    assert done.stats.completion_tokens <= 3
    assert service.get_conversation(created.id).title == "Pirate"


def test_stop_really_stops_the_model(service: PortalChatService) -> None:
    conversation_id = _new(service, LONG)
    events = service.send_message(conversation_id, LONG_PROMPT)
    seen = until_first_delta(events)
    assert service.stop(conversation_id) is True
    rest = list(events)
    final = rest[-1].message
    assert rest[-1].type is ReplyEventType.DONE and final is not None
    assert final.status is MessageStatus.STOPPED
    assert final.stats is not None and final.stats.finish_reason is FinishReason.CANCELLED
    assert 0 < final.stats.completion_tokens < 200
    assert final.content == text_of(seen + rest) != ""
    stored = service.get_conversation(conversation_id).messages[-1]
    assert (stored.status, stored.content) == (MessageStatus.STOPPED, final.content)
    assert service.stop(conversation_id) is False


def test_reply_goes_on_without_its_reader(service: PortalChatService) -> None:
    conversation_id = _new(service)
    events = service.send_message(conversation_id, "Say hello.")
    next(events)
    events.close()  # the client went away
    _wait_until_idle(service, conversation_id)
    reply = service.get_conversation(conversation_id).messages[-1]
    assert reply.status is MessageStatus.COMPLETE and reply.content


def test_attach_mid_reply_sees_the_whole_text(service: PortalChatService) -> None:
    conversation_id = _new(service, LONG)
    assert list(service.attach(conversation_id)) == []
    first = service.send_message(conversation_id, LONG_PROMPT)
    first_seen = until_first_delta(first)
    attached = service.attach(conversation_id)
    attached_seen = [next(attached), next(attached)]
    assert attached_seen[0].type is ReplyEventType.START
    assert attached_seen[1].type is ReplyEventType.DELTA  # the text so far, as one delta
    assert attached_seen[1].delta.startswith(text_of(first_seen))
    attached_seen.append(next(attached))  # and then it follows the reply as it goes
    assert service.stop(conversation_id) is True
    attached_seen += list(attached)
    first_rest = list(first)
    final = first_rest[-1].message
    assert final is not None and final.status is MessageStatus.STOPPED
    assert text_of(attached_seen) == final.content == text_of(first_seen + first_rest)
    assert attached_seen[-1].message == final
    assert list(service.attach(conversation_id)) == []
    with pytest.raises(NotFoundError):
        service.attach("no-such-conversation")


def test_regenerate_replaces_the_last_reply(service: PortalChatService) -> None:
    conversation_id = _new(service)
    first = list(service.send_message(conversation_id, "Name a color."))[-1].message
    again = list(service.regenerate(conversation_id))
    assert again[0].user_message is None
    final = again[-1].message
    assert final is not None and first is not None and final.id != first.id
    messages = service.get_conversation(conversation_id).messages
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT]
    assert messages[1] == final


def test_edit_replaces_later_messages(service: PortalChatService) -> None:
    conversation_id = _new(service, GenerationParams(max_new_tokens=3))
    start, *_ = list(service.send_message(conversation_id, "First question"))
    list(service.send_message(conversation_id, "Second question"))
    assert start.user_message is not None and start.user_message.id is not None
    events = list(service.edit_message(conversation_id, start.user_message.id, "Edited question"))
    assert events[-1].type is ReplyEventType.DONE
    messages = service.get_conversation(conversation_id).messages
    assert [(m.role, m.content) for m in messages][:1] == [(Role.USER, "Edited question")]
    assert len(messages) == 2 and messages[1] == events[-1].message
    assert service.get_conversation(conversation_id).title == "Edited question"


def test_two_clients_at_once_one_conflict(service: PortalChatService) -> None:
    conversation_id = _new(service, GenerationParams(max_new_tokens=4))
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def client(text: str) -> None:
        barrier.wait()
        try:
            outcomes.append(list(service.send_message(conversation_id, text)))
        except ConflictError as exc:
            outcomes.append(exc)

    for round_number in range(2):
        threads = [threading.Thread(target=client, args=(f"r{round_number} {c}",)) for c in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "list"]
        outcomes.clear()
    messages = service.get_conversation(conversation_id).messages
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT] * 2
    assert all(m.status is MessageStatus.COMPLETE for m in messages)
    with pytest.raises(ConflictError):
        events = service.send_message(conversation_id, "one")
        service.send_message(conversation_id, "two")
    list(events)


def test_replicas_share_a_reply(database_url: str, embedded_engine: TransformersEngine) -> None:
    """Replica B attaches to and stops a reply that replica A writes, through the database."""
    limits = LimitSettings()
    a = PortalChatService.around(
        ChatService(embedded_engine, ConversationStore.open(database_url, owner_id="a"), limits)
    )
    b: PortalChatService | None = None
    try:
        conversation_id = _new(a, LONG)
        events = a.send_message(conversation_id, LONG_PROMPT)
        until_first_delta(events)
        # B starts while A writes: A's reply must not be marked interrupted.
        b = PortalChatService.around(
            ChatService(embedded_engine, ConversationStore.open(database_url, owner_id="b"), limits)
        )
        assert b.get_conversation(conversation_id).messages[-1].status is MessageStatus.STREAMING
        with pytest.raises(ConflictError):
            b.send_message(conversation_id, "me too")
        followed = b.attach(conversation_id)
        assert next(followed).type is ReplyEventType.START
        assert b.stop(conversation_id) is True
        rest = list(followed)
        final = rest[-1].message
        assert final is not None and final.status is MessageStatus.STOPPED
        assert final.stats is not None and final.stats.completion_tokens < 200
        assert text_of(rest) == final.content
        assert [e.type for e in events][-1] is ReplyEventType.DONE
    finally:
        a.close()
        if b is not None:
            b.close()


def test_export_import_round_trip(service: PortalChatService) -> None:
    created = service.create_conversation(
        title="Round trip", system_prompt="Be kind.", params=GenerationParams(max_new_tokens=4)
    )
    assert created.id is not None
    list(service.send_message(created.id, 'Hello, CSV, "quotes" and\nnew lines'))
    original = service.get_conversation(created.id)
    for fmt in (ExportFormat.JSON, ExportFormat.CSV, ExportFormat.OPENAI):
        text = service.export_conversation(created.id, fmt)
        copy = service.import_conversation(text, fmt)
        assert copy.id != original.id
        assert [(m.role, m.content) for m in copy.messages] == [
            (m.role, m.content) for m in original.messages
        ]
        assert service.get_conversation(str(copy.id)).messages == copy.messages
        if fmt is ExportFormat.JSON:
            assert (copy.title, copy.system_prompt) == ("Round trip", "Be kind.")
            assert copy.params == original.params
    markdown = service.export_conversation(created.id, ExportFormat.MARKDOWN)
    assert "Round trip" in markdown and "**You:**" in markdown
    with pytest.raises(InvalidRequestError):
        service.import_conversation(markdown, ExportFormat.MARKDOWN)


def test_limits(database_url: str, embedded_engine: TransformersEngine) -> None:
    limits = LimitSettings(max_message_chars=20, max_tokens_cap=16, max_messages=2)
    service = PortalChatService.around(
        ChatService(embedded_engine, ConversationStore.open(database_url), limits)
    )
    try:
        # One rule on every path: a reply length over the cap is refused, naming the cap.
        with pytest.raises(InvalidRequestError, match="CHATBOT_MAX_TOKENS_CAP") as over:
            service.create_conversation(params=GenerationParams(max_new_tokens=500))
        assert over.value.param == "params.max_new_tokens"
        created = service.create_conversation(params=GenerationParams(max_new_tokens=16))
        assert created.id is not None and created.params.max_new_tokens == 16
        for bad in ("", "   \n", "x" * 21):
            with pytest.raises(InvalidRequestError) as info:
                service.send_message(created.id, bad)
            assert info.value.param == "content"
        for limit in (0, 201):
            with pytest.raises(InvalidRequestError) as info:
                service.list_conversations(limit=limit)
            assert info.value.param == "limit"
        with pytest.raises(InvalidRequestError) as info:
            service.update_conversation(created.id, title="t" * 201)
        assert info.value.param == "title"
        with pytest.raises(InvalidRequestError) as info:
            service.import_conversation("is_user,text\nTrue,a\nFalse,b\nTrue,c\n", ExportFormat.CSV)
        assert info.value.param == "content"
        with pytest.raises(NotFoundError):
            service.send_message("missing", "hello")
        assert service.get_conversation(created.id).messages == ()
    finally:
        service.close()


def test_full_admission_refuses_before_storing(
    database_url: str, embedded_engine: TransformersEngine
) -> None:
    admission = AdmissionControl(max_concurrent=1, max_queued=0, queue_timeout_s=5)
    runner = ReplyRunner(embedded_engine, admission, Metrics(), ReplyLimits())
    service = PortalChatService.around(
        ChatService(
            embedded_engine, ConversationStore.open(database_url), LimitSettings(), runner=runner
        )
    )
    try:
        conversation_id = _new(service)
        held = admission.reserve()
        with pytest.raises(OverloadedError):
            service.send_message(conversation_id, "hello")
        assert service.get_conversation(conversation_id).messages == ()
        held.release()
        events = list(service.send_message(conversation_id, "hello"))
        assert events[-1].type is ReplyEventType.DONE
        assert admission.in_flight == 0
        # The monolith measures conversation replies like the backend does.
        registry = service.metrics.registry
        labels = {"endpoint": "conversations"}
        assert (
            registry.get_sample_value("chatbot_requests_rejected_total", {"reason": "overloaded"})
            == 1
        )
        assert registry.get_sample_value("chatbot_time_to_first_token_seconds_count", labels) == 1
        tokens = registry.get_sample_value("chatbot_tokens_generated_total", labels)
        final = events[-1].message
        assert final is not None and final.stats is not None
        assert tokens == final.stats.completion_tokens > 0
    finally:
        service.close()


def test_failure_ends_in_error_and_the_conversation_goes_on(service: PortalChatService) -> None:
    conversation_id = _new(service)
    too_long = "word " * 12_000  # beyond the model's context window
    events = list(service.send_message(conversation_id, too_long))
    assert events[-1].type is ReplyEventType.ERROR and events[-1].error
    assert events[-1].message is not None and events[-1].message.status is MessageStatus.ERROR
    assert service.get_conversation(conversation_id).messages[-1].status is MessageStatus.ERROR
    service.clear_conversation(conversation_id)
    assert list(service.send_message(conversation_id, "Hi"))[-1].type is ReplyEventType.DONE


def test_close_interrupts_running_replies(
    database_url: str, embedded_engine: TransformersEngine
) -> None:
    service = PortalChatService.around(
        ChatService(embedded_engine, ConversationStore.open(database_url), LimitSettings())
    )
    conversation_id = _new(service, LONG)
    until_first_delta(service.send_message(conversation_id, LONG_PROMPT))
    service.close()
    store = ConversationStore.open(database_url)
    try:
        reply = store.get_conversation(conversation_id).messages[-1]
        assert reply.status is MessageStatus.INTERRUPTED and reply.content
    finally:
        store.close()
