"""Reply versions through ChatService with the real embedded model, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from chatbot.domain import ExportFormat, GenerationParams, ReplyEventType, Role
from chatbot.errors import ConflictError
from chatbot.service.portal import PortalChatService

pytestmark = pytest.mark.slow

# Sampling, so that versions differ; tests check ids and order, never that texts differ.
VARIED = GenerationParams(max_new_tokens=6, temperature=1.0)


def _new(service: PortalChatService) -> str:
    cid = service.create_conversation(params=VARIED).id
    assert cid is not None
    return cid


def test_regenerate_twice_gives_three_versions_and_select_switches(
    service: PortalChatService,
) -> None:
    cid = _new(service)
    first = list(service.send_message(cid, "Name a colour."))[-1].message
    second = list(service.regenerate(cid))
    third = list(service.regenerate(cid))
    assert second[0].type is ReplyEventType.START and second[0].message is not None
    assert second[0].message.versions == 2  # the placeholder already counts as a version
    final = third[-1].message
    assert first is not None and final is not None and first.id is not None

    user, reply = service.get_conversation(cid).messages
    assert reply == final and (reply.version, reply.versions) == (3, 3)
    assert reply.sibling_ids[0] == first.id and reply.parent_id == user.id

    shown = service.select_version(cid, first.id)
    assert [m.id for m in shown.messages] == [user.id, first.id]
    assert service.get_conversation(cid).messages[-1].content == first.content
    exported = service.export_conversation(cid, ExportFormat.JSON)
    assert exported.count('"role": "assistant"') == 1
    assert service.export_conversation(cid, ExportFormat.CSV).count("\nFalse,") == 1


def test_edit_makes_a_branch_and_refuses_select_while_a_reply_runs(
    service: PortalChatService,
) -> None:
    cid = _new(service)
    list(service.send_message(cid, "First question"))
    list(service.send_message(cid, "Second question"))
    original = service.get_conversation(cid).messages[0]
    assert original.id is not None
    list(service.edit_message(cid, original.id, "Edited question"))
    edited = service.get_conversation(cid).messages
    assert [m.role for m in edited] == [Role.USER, Role.ASSISTANT]
    assert edited[0].sibling_ids == (original.id, edited[0].id)

    back = service.select_version(cid, original.id)
    assert [m.content for m in back.messages if m.role is Role.USER] == [
        "First question",
        "Second question",
    ]
    # A long greedy reply for this one, so it is still running at the Stop however fast the
    # engine (six sampled tokens can end first).
    service.update_conversation(cid, params=GenerationParams(max_new_tokens=300, temperature=0.0))
    events = service.regenerate(cid)
    next(iter(events))  # the reply runs now
    with pytest.raises(ConflictError):
        service.select_version(cid, edited[0].id or "")
    assert service.stop(cid)
    list(events)
