"""Per-request limits from LimitSettings, checked before any work, each naming what to fix."""

from __future__ import annotations

from collections.abc import Sequence

from chatbot.config import LimitSettings
from chatbot.domain import Message
from chatbot.errors import InvalidRequestError


def check_messages(
    messages: Sequence[Message], limits: LimitSettings, param: str = "messages"
) -> None:
    if len(messages) > limits.max_messages:
        raise InvalidRequestError(
            f"{param} has {len(messages)} messages but this server accepts at most "
            f"{limits.max_messages} (CHATBOT_MAX_MESSAGES)",
            param=param,
            code="too_many_messages",
        )
    for index, message in enumerate(messages):
        if len(message.content) > limits.max_message_chars:
            raise InvalidRequestError(
                f"{param}[{index}].content has {len(message.content)} characters but this "
                f"server accepts at most {limits.max_message_chars} (CHATBOT_MAX_MESSAGE_CHARS)",
                param=f"{param}[{index}].content",
                code="message_too_long",
            )
