"""Conversations and messages in SQL: SQLite by default, PostgreSQL by URL."""

from chatbot.store.repository import ConversationStore, ListPosition, ReplyStart, derive_title

__all__ = ["ConversationStore", "ListPosition", "ReplyStart", "derive_title"]
