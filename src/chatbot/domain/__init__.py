"""Plain typed data and file formats; no I/O."""

from chatbot.domain.events import (
    ConversationPage,
    ConversationSummary,
    ReplyEvent,
    ReplyEventType,
    WaitPhase,
)
from chatbot.domain.formats import ExportFormat, export, parse
from chatbot.domain.messages import (
    Conversation,
    FinishReason,
    GenerationParams,
    Message,
    MessageStatus,
    ReplyStats,
    Role,
    Usage,
)
from chatbot.domain.wire import from_wire, to_wire

__all__ = [
    "Conversation",
    "ConversationPage",
    "ConversationSummary",
    "ExportFormat",
    "FinishReason",
    "GenerationParams",
    "Message",
    "MessageStatus",
    "ReplyEvent",
    "ReplyEventType",
    "ReplyStats",
    "Role",
    "Usage",
    "WaitPhase",
    "export",
    "from_wire",
    "parse",
    "to_wire",
]
