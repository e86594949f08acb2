"""Message text for display: HTML shown as text, code left alone, streamed text escaped too."""

from __future__ import annotations

import pytest

from chatbot.config import EngineSettings, StoreSettings, UISettings
from chatbot.domain import Message, MessageStatus, ReplyStats
from chatbot.ui.launcher import (
    APP_FILE,
    ENTRY_FILE,
    open_message,
    settings_environment,
    streamlit_flags,
)
from chatbot.ui.text import StreamEscaper, safe_label, safe_markdown, stats_caption

SAMPLE = (
    "Hi <b>you</b> & $5 `<i>` done\n"
    "```html\n<div onclick='x()'>a & b</div>\n```\n"
    "<script>alert(1)</script> <img src=x onerror=alert(1)>"
)


def test_html_outside_code_is_escaped_and_code_is_kept() -> None:
    out = safe_markdown(SAMPLE)
    assert "&lt;b>you&lt;/b> &amp; \\$5 `<i>` done" in out
    assert "<div onclick='x()'>a & b</div>" in out  # inside a fence: shown literally anyway
    assert "&lt;script>alert(1)&lt;/script> &lt;img src=x onerror=alert(1)>" in out
    assert "<script" not in out and "<img" not in out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_streamed_text_is_safe_whatever_the_chunking(size: int) -> None:
    escaper = StreamEscaper()
    out = "".join(escaper.feed(SAMPLE[i : i + size]) for i in range(0, len(SAMPLE), size))
    assert "<script" not in out and "<img" not in out and "<b>" not in out
    assert "<div onclick='x()'>a & b</div>" in out


IMAGES = (
    "See ![the cat](http://127.0.0.1:9/cat.png) and [![b](http://h/b.png)](http://h/)\n"
    "![ref][1]\n\n[1]: http://h/ref.png\n"
    "`![code](http://h/kept.png)`"
)


def test_markdown_images_become_links() -> None:
    out = safe_markdown(IMAGES)
    assert "\\![the cat](http://127.0.0.1:9/cat.png)" in out  # an escaped "!": a plain link
    assert "[\\![b](http://h/b.png)](http://h/)" in out
    assert "\\![ref][1]" in out
    assert "`![code](http://h/kept.png)`" in out  # code shows the text as typed anyway
    assert "![" not in out.replace("\\![", "").replace("`![code]", "")


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_streamed_images_become_links_whatever_the_chunking(size: int) -> None:
    escaper = StreamEscaper()
    out = "".join(escaper.feed(IMAGES[i : i + size]) for i in range(0, len(IMAGES), size))
    assert "\\![the cat](http://127.0.0.1:9/cat.png)" in out
    assert "\\![ref][1]" in out


def test_labels_render_no_image_and_stay_on_one_line() -> None:
    assert safe_label("![x](http://h/x.png)\n<b>t</b>") == "\\![x](http://h/x.png) &lt;b>t&lt;/b>"


def test_stats_caption_shows_queueing_apart_from_speed() -> None:
    stats = ReplyStats(
        completion_tokens=20, duration_s=5.0, time_to_first_token_s=3.25, queued_s=3.0
    )
    message = Message.assistant("x").model_copy(update={"stats": stats})
    assert stats_caption(message) == (
        "20 tokens · 10.0 tokens/s · first token 3.25 s · queued 3.0 s"
    )


def test_stats_caption_shows_model_loading_apart_from_queueing_and_speed() -> None:
    stats = ReplyStats(
        completion_tokens=20,
        duration_s=9.0,
        time_to_first_token_s=7.25,
        loading_s=4.0,
        queued_s=3.0,
    )
    message = Message.assistant("x").model_copy(update={"stats": stats})
    assert stats_caption(message) == (
        "20 tokens · 10.0 tokens/s · first token 7.25 s · model loading 4.0 s · queued 3.0 s"
    )


def test_stats_caption() -> None:
    stats = ReplyStats(completion_tokens=20, duration_s=2.0, time_to_first_token_s=0.25)
    message = Message.assistant("x").model_copy(
        update={"stats": stats, "status": MessageStatus.STOPPED}
    )
    assert stats_caption(message) == "20 tokens · 10.0 tokens/s · first token 0.25 s · stopped"


def test_launcher_passes_settings_through_the_environment() -> None:
    env = settings_environment(
        UISettings(backend_url="http://127.0.0.1:9"),
        EngineSettings(model="embedded", threads=2),
        StoreSettings(database_url="sqlite:///x.db"),
    )
    assert env["CHATBOT_BACKEND_URL"] == "http://127.0.0.1:9"
    assert env["CHATBOT_ENGINE"] == "openvino"  # the default for the embedded GGUF
    assert env["CHATBOT_THREADS"] == "2"
    assert env["CHATBOT_DATABASE_URL"] == "sqlite:///x.db"
    assert "CHATBOT_CONTEXT_WINDOW" not in env  # unset stays unset
    flags = streamlit_flags(UISettings(ui_port=8765, ui_host="127.0.0.1"))
    assert "--server.headless=true" in flags and "--server.port=8765" in flags
    assert "--browser.gatherUsageStats=false" in flags
    assert APP_FILE.exists() and ENTRY_FILE.exists()
    assert open_message(UISettings(ui_port=8501, ui_host="0.0.0.0")) == (
        "Open http://localhost:8501 in a browser (Ctrl+C stops the UI)."
    )
