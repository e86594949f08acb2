"""Message text for display: Markdown and code render, HTML shows as text and never runs.

Streamlit renders Markdown; raw HTML inside it is not trusted. Escaping ``<`` and ``&`` outside
code makes a ``<script>`` in a message visible as typed. Inside code blocks and code spans the
text is shown literally by Markdown already, so it is left alone there. ``$`` is escaped too,
since Streamlit would read ``$5 and $6`` as LaTeX.

``!`` is escaped outside code so that ``![alt](url)`` is a link, not an image: the browser must
fetch nothing because of a message or a reply (a model could leak the conversation in an image
URL). Raw ``<img>`` is already text, since ``<`` is escaped. Labels (conversation titles on
buttons) go through :func:`safe_label`, since Streamlit renders images in button labels too.
"""

from __future__ import annotations

import re

from chatbot.domain import Message, MessageStatus, ReplyStats

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
QUEUED_SHOWN_FROM_S = 0.1  # a shorter wait for a place is noise, not news
_ESCAPES = {"&": "&amp;", "<": "&lt;", "$": "\\$", "!": "\\!"}


def _escape_plain(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _escape_line(line: str) -> str:
    """One line outside fences: code spans kept, the rest escaped."""
    out: list[str] = []
    last = 0
    for match in _CODE_SPAN.finditer(line):
        out.append(_escape_plain(line[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_plain(line[last:]))
    return "".join(out)


class _Fences:
    """Tracks whether a line is inside a fenced code block (CommonMark rules, simplified)."""

    def __init__(self) -> None:
        self.marker: str | None = None

    def inside_after(self, line: str) -> bool:
        """Feed a complete line; True when the line belongs to a code block (fences included)."""
        match = _FENCE.match(line)
        if self.marker is None:
            if match:
                self.marker = match.group(1)
                return True
            return False
        closes = (
            match is not None
            and match.group(1)[0] == self.marker[0]
            and len(match.group(1)) >= len(self.marker)
            and not line.strip().strip(self.marker[0])
        )
        if closes:
            self.marker = None
        return True


def safe_markdown(text: str) -> str:
    """The Markdown to show for a message's text."""
    fences = _Fences()
    lines = text.split("\n")
    return "\n".join(line if fences.inside_after(line) else _escape_line(line) for line in lines)


def safe_label(text: str) -> str:
    """A title for a button or caption: one line, nothing rendered that could fetch a URL."""
    return _escape_plain(" ".join(text.split()))


class StreamEscaper:
    """Escapes a reply delta by delta, for ``st.write_stream``.

    Fences are exact (they depend on earlier lines only); code spans are escaped while streaming
    (a closing backtick may come later) and shown exactly once the reply is stored and redrawn.
    """

    def __init__(self) -> None:
        self._fences = _Fences()
        self._line = ""
        self._inside = False

    def feed(self, delta: str) -> str:
        out: list[str] = []
        for ch in delta:
            if ch == "\n":
                self._fences.inside_after(self._line)
                self._inside = self._fences.marker is not None
                self._line = ""
                out.append(ch)
                continue
            if not self._line:
                self._inside = self._fences.marker is not None
            self._line += ch
            out.append(ch if self._inside else _ESCAPES.get(ch, ch))
        return "".join(out)


def stats_caption(message: Message) -> str:
    """The line under a reply: tokens, speed, first token, time queued, how it ended.

    The speed counts the model's own time only; waits for the model to load or for a place
    show apart ("model loading", "queued").
    """
    parts: list[str] = []
    stats: ReplyStats | None = message.stats
    if stats is not None and stats.completion_tokens:
        parts.append(f"{stats.completion_tokens} tokens")
        if stats.tokens_per_second is not None:
            parts.append(f"{stats.tokens_per_second:.1f} tokens/s")
        if stats.time_to_first_token_s is not None:
            parts.append(f"first token {stats.time_to_first_token_s:.2f} s")
        if stats.loading_s is not None and stats.loading_s >= QUEUED_SHOWN_FROM_S:
            parts.append(f"model loading {stats.loading_s:.1f} s")
        if stats.queued_s is not None and stats.queued_s >= QUEUED_SHOWN_FROM_S:
            parts.append(f"queued {stats.queued_s:.1f} s")
        if stats.finish_reason is not None and stats.finish_reason.value == "length":
            parts.append("cut at the maximum length")
        if stats.dropped_messages:
            parts.append(f"{stats.dropped_messages} old messages left out of the context")
    status = {
        MessageStatus.STOPPED: "stopped",
        MessageStatus.ERROR: "failed",
        MessageStatus.INTERRUPTED: "interrupted",
    }.get(message.status)
    if status:
        parts.append(status)
    return " · ".join(parts)
