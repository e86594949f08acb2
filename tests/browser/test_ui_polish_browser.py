"""Issue 14's polish in a real Chromium, both deployments: nothing fetched because of a message
or a reply (and a CSP behind it), copy buttons, and a second tab that follows without a click."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import UIProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 240_000
STATS = re.compile(r"\d+ tokens · [\d.]+ tokens/s")
TITLES = {"monolith": "Monolithic ChatBot App", "microservices": "Microservices ChatBot App"}


class RecordingServer:
    """A loopback HTTP server that answers every GET with a tiny PNG and records the path."""

    PNG = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )

    def __init__(self) -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(recorder.PNG)))
                self.end_headers()
                self.wfile.write(recorder.PNG)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def image_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture(params=["monolith", "microservices"])
def deployment(request: pytest.FixtureRequest, start_ui: Callable[..., UIProcess]) -> UIProcess:
    if request.param == "monolith":
        return start_ui(CHATBOT_MAX_TOKENS_CAP="12")
    backend = request.getfixturevalue("backend_server")
    return start_ui("--backend", backend.url)


def _page(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    return page


def _import_csv(page: Any, rows: list[tuple[bool, str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["is_user", "text"])
    writer.writerows((str(is_user), text) for is_user, text in rows)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": "images.csv", "mimeType": "text/csv", "buffer": buffer.getvalue().encode()}]
    )


def test_safe_rendering_copy_and_a_second_tab(
    browser: Any,
    deployment: UIProcess,
    image_server: RecordingServer,
    artifacts_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    name = request.node.callspec.params["deployment"]
    shots = artifacts_dir / "issue14"
    shots.mkdir(exist_ok=True)
    remote = image_server.url
    page = _page(browser, deployment.url)
    refused: list[str] = []  # what the page's CSP refused, as Chromium reports it
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    response = page.goto(deployment.url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in policy

    # A message and a reply (imported, as if a model had written it) naming remote images.
    page.get_by_role("heading", name=TITLES[name]).wait_for(timeout=TIMEOUT_MS)
    user_text = f"Look: ![cat]({remote}/user-markdown.png) <img src='{remote}/user-raw.png'>"
    reply_text = (
        f"Here is a dog ![dog]({remote}/reply-markdown.png) and [![b]({remote}/nested.png)](x)\n\n"
        "```python\nprint('hi')\n```"
    )
    _import_csv(page, [(True, user_text), (False, reply_text)])
    bubbles = page.get_by_test_id("stChatMessage")
    expect(bubbles).to_have_count(2, timeout=TIMEOUT_MS)
    expect(bubbles.nth(1)).to_contain_text("Here is a dog", timeout=TIMEOUT_MS)
    expect(bubbles.nth(1).get_by_role("link", name="dog")).to_have_attribute(
        "href", f"{remote}/reply-markdown.png"
    )
    assert bubbles.locator("img").count() == 0
    conversation_url = page.url
    assert "c=" in conversation_url

    # A second tab on the same conversation, left alone from here on.
    other = _page(browser, deployment.url)
    other.goto(conversation_url)
    other_bubbles = other.get_by_test_id("stChatMessage")
    expect(other_bubbles).to_have_count(2, timeout=TIMEOUT_MS)

    typed = f"What is in ![bird]({remote}/typed.png)?"
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(typed)
    box.press("Enter")
    expect(bubbles).to_have_count(4, timeout=TIMEOUT_MS)
    expect(bubbles.nth(3).get_by_text(STATS)).to_have_count(1, timeout=TIMEOUT_MS)
    reply = bubbles.nth(3).get_by_test_id("stMarkdownContainer").first.inner_text()

    # The other tab shows the new message and the whole reply without a click.
    expect(other_bubbles).to_have_count(4, timeout=TIMEOUT_MS)
    expect(other_bubbles.nth(2)).to_contain_text("What is in", timeout=TIMEOUT_MS)
    expect(other_bubbles.nth(3).get_by_text(STATS)).to_have_count(1, timeout=TIMEOUT_MS)
    expect(other_bubbles.nth(3)).to_contain_text(reply.strip()[:20], timeout=TIMEOUT_MS)
    title = page.get_by_label("Title").input_value()
    assert title.startswith("Look: ")
    expect(other.get_by_label("Title")).to_have_value(title)  # in sync after the reruns
    other.screenshot(path=str(shots / f"second-tab-followed-{name}.png"), full_page=True)

    # Behind the escaping, the page's policy refuses a remote image whatever draws it.
    page.evaluate(
        "url => { const i = document.createElement('img'); i.src = url;"
        " document.body.appendChild(i); }",
        f"{remote}/injected.png",
    )
    # The refusal, as Chromium reports it on the console, is the sign the image was handled.
    deadline = time.monotonic() + 30
    while not any("injected.png" in text for text in refused):
        assert time.monotonic() < deadline, f"no CSP refusal of the injected image: {refused}"
        page.wait_for_timeout(100)
    page.screenshot(path=str(shots / f"images-as-links-{name}.png"), full_page=True)
    assert image_server.paths == [], image_server.paths
    # The policy refused the injected image and nothing of Streamlit's own.
    assert refused and all("injected.png" in text for text in refused), refused

    # Copy: the message's Copy control, and the copy button of a code block in a reply.
    bubbles.nth(1).get_by_role("button", name="Copy", exact=True).click()
    popover = page.get_by_test_id("stPopoverBody")
    popover.get_by_test_id("stCode").hover()
    popover.get_by_role("button", name="Copy to clipboard").click()
    assert page.evaluate("navigator.clipboard.readText()") == reply_text
    page.screenshot(path=str(shots / f"copy-message-{name}.png"))
    page.keyboard.press("Escape")
    code = bubbles.nth(1).get_by_test_id("stCode")
    code.hover()
    code.get_by_role("button", name="Copy to clipboard").click()
    assert page.evaluate("navigator.clipboard.readText()").strip() == "print('hi')"
    assert image_server.paths == [], image_server.paths

    # The sidebar: grouped by date, searchable; Delete asks before it deletes.
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Today", exact=True)).to_be_visible()
    # Listed conversations other than the current one are tertiary buttons.
    blank = sidebar.get_by_test_id("stBaseButton-tertiary").filter(has_text="New conversation")
    if name == "monolith":  # a fresh UI: the blank conversation opened at the start is listed
        expect(blank).to_have_count(1)
    sidebar.get_by_placeholder("Search titles").fill("look")
    sidebar.get_by_placeholder("Search titles").press("Enter")
    expect(blank).to_have_count(0, timeout=TIMEOUT_MS)
    expect(sidebar.get_by_role("button", name=re.compile(r"^Look: "))).to_have_count(1)
    sidebar.get_by_role("button", name="Delete conversation").click()
    expect(page.get_by_role("button", name="Delete for good")).to_be_visible()
    page.screenshot(path=str(shots / f"sidebar-search-and-delete-{name}.png"))
    page.keyboard.press("Escape")
    expect(bubbles).to_have_count(4)  # nothing deleted without the second click
