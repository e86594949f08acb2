"""The one interface the UI depends on, with two transports behind it.

It is synchronous because Streamlit scripts are: in process it is
:class:`chatbot.service.portal.PortalChatService` (the async service on one event loop in one
thread), over HTTP :class:`chatbot.service.http.HttpChatService`.

Every method raises only :mod:`chatbot.errors` exceptions, so callers handle one error tree.

A service acts for one user (the local user unless bound with :meth:`for_user`); every
conversation method sees only that user's conversations, and another user's is a NotFoundError
like a missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from chatbot.domain import (
    Conversation,
    ConversationSummary,
    ExportFormat,
    GenerationParams,
    ReplyEvent,
)
from chatbot.domain.users import User
from chatbot.service.params import ServiceLimits
from chatbot.service.waiting import RunnerStatus


@runtime_checkable
class ChatServiceProtocol(Protocol):
    @property
    def model_id(self) -> str:
        """The name of the model that answers."""

    @property
    def deployment(self) -> str:
        """'monolith' in process, 'microservices' over HTTP; the UI shows it in its title."""

    def limits(self) -> ServiceLimits:
        """What a request may ask for (reply length cap and default, text lengths)."""

    def status(self) -> RunnerStatus:
        """Model loaded or not, replies running and queued, the wait estimate (never cached)."""

    def for_user(self, user: User) -> ChatServiceProtocol:
        """The same service acting for ``user`` (cheap; closing it does nothing)."""

    # -- conversations -----------------------------------------------------------------
    def create_conversation(
        self,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation: ...

    def list_conversations(self, *, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
        """Newest activity first."""

    def get_conversation(self, conversation_id: str) -> Conversation:
        """With all messages, oldest first. NotFoundError when it does not exist."""

    def update_conversation(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
    ) -> Conversation:
        """Rename, or change the system prompt or parameters; None leaves a field as it is.

        An empty string clears the system prompt.
        """

    def delete_conversation(self, conversation_id: str) -> None: ...

    def clear_conversation(self, conversation_id: str) -> Conversation:
        """Delete every message (the seed's "Clear conversation"), keeping title and settings."""

    # -- replies -----------------------------------------------------------------------
    def send_message(self, conversation_id: str, content: str) -> Iterator[ReplyEvent]:
        """Store the user message, then stream the reply.

        The user message is committed before the first event; the reply belongs to the service
        and goes on if the caller stops reading. ConflictError while another reply runs.
        """

    def attach(self, conversation_id: str) -> Iterator[ReplyEvent]:
        """Re-attach to the reply in progress: its text so far as one delta, then the rest.

        Yields nothing when no reply is in progress.
        """

    def stop(self, conversation_id: str) -> bool:
        """Stop the reply in progress (the model stops); False when there was none."""

    def regenerate(self, conversation_id: str) -> Iterator[ReplyEvent]:
        """Answer the last user message again; the earlier reply stays as another version."""

    def edit_message(
        self, conversation_id: str, message_id: str, content: str
    ) -> Iterator[ReplyEvent]:
        """Answer a new version of an earlier user message; the old branch stays selectable."""

    def select_version(self, conversation_id: str, message_id: str) -> Conversation:
        """Show the branch through ``message_id`` (one of a message's ``sibling_ids``).

        Returns the conversation as it now reads. ConflictError while a reply runs.
        """

    # -- files -------------------------------------------------------------------------
    def export_conversation(self, conversation_id: str, fmt: ExportFormat) -> str: ...

    def import_conversation(self, text: str, fmt: ExportFormat) -> Conversation:
        """Create a new conversation from an exported file."""
