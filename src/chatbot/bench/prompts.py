"""Fixed prompts that ask for long replies, so most requests run to ``max_tokens``."""

from __future__ import annotations

PROMPTS = (
    "Write a long story about a dragon who learns to bake bread.",
    "Explain in detail how a steam engine works, step by step.",
    "Write a long letter to a friend about your trip to the mountains.",
    "Describe the history of the city of Rome in many paragraphs.",
    "Write a detailed guide to growing tomatoes in a small garden.",
    "Tell a long story about a robot who wants to become a painter.",
    "Explain the water cycle to a child, with many examples.",
    "Write a long essay about why people like music.",
)


def prompt_for(client: int, index: int) -> str:
    """Clients start at different prompts so concurrent requests differ."""
    return PROMPTS[(client + index) % len(PROMPTS)]
