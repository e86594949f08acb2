"""Conversations grouped by when they were last active, as chat apps list them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo

from chatbot.domain import ConversationSummary


def date_group(when: datetime, now: datetime) -> str:
    """``Today``, ``Yesterday``, ``Last 7 days``, ``Last 30 days``, else the month."""
    local = when.astimezone(now.tzinfo)
    days = (now.date() - local.date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days < 7:
        return "Last 7 days"
    if days < 30:
        return "Last 30 days"
    return local.strftime("%B %Y")


def grouped(
    summaries: Iterable[ConversationSummary], now: datetime
) -> list[tuple[str, list[ConversationSummary]]]:
    """Groups in the order given (newest first), each with its conversations in that order."""
    groups: dict[str, list[ConversationSummary]] = {}
    for summary in summaries:
        groups.setdefault(date_group(summary.updated_at, now), []).append(summary)
    return list(groups.items())


def matching(summaries: Iterable[ConversationSummary], query: str) -> list[ConversationSummary]:
    """Titles that contain every word of ``query``, ignoring case."""
    words = query.casefold().split()
    return [s for s in summaries if all(word in s.title.casefold() for word in words)]


def browser_now(timezone: str | None) -> datetime:
    """Now in the browser's time zone (Streamlit reports it), else in this machine's."""
    zone: tzinfo | None = None
    if timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
    return datetime.now(zone).astimezone(zone) if zone else datetime.now().astimezone()
