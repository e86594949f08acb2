"""Reply versions through ChatServiceProtocol, in process and over HTTP (one contract)."""

from __future__ import annotations

import pytest

from chatbot.domain import ExportFormat, GenerationParams, Role
from chatbot.errors import NotFoundError
from chatbot.service.protocol import ChatServiceProtocol

pytestmark = pytest.mark.slow

VARIED = GenerationParams(max_new_tokens=4, temperature=1.0)


def test_versions_select_and_export(chat_service: ChatServiceProtocol) -> None:
    cid = chat_service.create_conversation(params=VARIED).id or ""
    list(chat_service.send_message(cid, "Name a fruit."))
    list(chat_service.regenerate(cid))
    user, reply = chat_service.get_conversation(cid).messages
    assert (reply.version, reply.versions) == (2, 2) and reply.parent_id == user.id
    older = reply.sibling_ids[0]

    shown = chat_service.select_version(cid, older)
    assert [m.id for m in shown.messages] == [user.id, older]
    assert chat_service.get_conversation(cid).messages[1].id == older
    rows = chat_service.export_conversation(cid, ExportFormat.CSV).splitlines()
    assert rows[:2] == ["is_user,text", "True,Name a fruit."] and len(rows) >= 3

    list(chat_service.edit_message(cid, user.id or "", "Name a vegetable."))
    edited = chat_service.get_conversation(cid).messages
    assert [m.role for m in edited] == [Role.USER, Role.ASSISTANT]
    assert (edited[0].content, edited[0].version, edited[0].versions) == (
        "Name a vegetable.",
        2,
        2,
    )
    with pytest.raises(NotFoundError):
        chat_service.select_version(cid, "0" * 32)
