"""The sidebar's date groups and title search, at fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from chatbot.domain import ConversationSummary
from chatbot.ui.dates import browser_now, date_group, grouped, matching

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def _summary(title: str, days_ago: float) -> ConversationSummary:
    when = NOW - timedelta(days=days_ago)
    return ConversationSummary(id=title, title=title, created_at=when, updated_at=when)


def test_date_groups() -> None:
    assert date_group(NOW - timedelta(hours=8), NOW) == "Today"
    assert date_group(NOW - timedelta(hours=10), NOW) == "Yesterday"  # 23:00 the day before
    assert date_group(NOW - timedelta(days=3), NOW) == "Last 7 days"
    assert date_group(NOW - timedelta(days=12), NOW) == "Last 30 days"
    assert date_group(NOW - timedelta(days=60), NOW) == "January 2026"


def test_groups_follow_the_browsers_time_zone() -> None:
    late = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)  # already the 10th in Tokyo
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    assert date_group(late, NOW) == "Yesterday"
    assert date_group(late, tokyo) == "Today"
    assert browser_now("Asia/Tokyo").utcoffset() == timedelta(hours=9)
    assert browser_now("No/Such_Zone").tzinfo is not None  # falls back to this machine's


def test_grouped_keeps_the_order_and_search_matches_every_word() -> None:
    summaries = [_summary("Trip to Rome", 0), _summary("Rome budget", 1), _summary("Cats", 1.2)]
    groups = grouped(summaries, NOW)
    assert [(name, [s.title for s in members]) for name, members in groups] == [
        ("Today", ["Trip to Rome"]),
        ("Yesterday", ["Rome budget", "Cats"]),
    ]
    assert [s.title for s in matching(summaries, "rome")] == ["Trip to Rome", "Rome budget"]
    assert [s.title for s in matching(summaries, "ROME trip")] == ["Trip to Rome"]
    assert matching(summaries, "dogs") == []
