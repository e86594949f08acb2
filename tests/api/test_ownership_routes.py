"""The route walk: every route that takes a conversation id, with every method, as another user.

Built from the app's own routes (``app.routes``), so a route added later is walked too: user B
calls each one, with each method it declares (both ``stream`` variants where its body has one),
on user A's conversation and on an id that does not exist. B must get a 404 whose body is the
same for both (nothing tells "someone else's" from "missing"), once with A's conversation at
rest and once while A's reply is running; A's reply then completes with its full text and A's
conversation is as it was. Lists, cursors, exports, ``/v1/status`` and ``/metrics`` never show
A's data to B.

Users are real: each has a per-user API key (``chatbot keys``), sent as its bearer to a real
backend under uvicorn on loopback. The walk's table (route x method x outcome) is written to
``artifacts/issue13/route_walk.md``.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from chatbot.api import create_app
from chatbot.api.deps import get_service
from chatbot.config import (
    AuthSettings,
    EngineSettings,
    LimitSettings,
    ServerSettings,
    StoreSettings,
)
from chatbot.domain.users import User
from chatbot.engine.scripted_engine import ScriptedEngine
from chatbot.store.api_keys import ApiKeyStore
from chatbot.store.repository import new_id
from tests.fixtures.prompts import LONG_PROMPT
from tests.fixtures.servers import free_port

TABLE = Path(__file__).resolve().parents[2] / "artifacts" / "issue13" / "route_walk.md"
ALICE = User(id="alice@example.com", name="Alice")
BOB = User(id="bob@example.com", name="Bob")

# Path parameters that name a conversation's data; any other must be listed here with why it
# is not (so a new route with, say, ``{id}`` fails this walk until someone decides).
CONVERSATION_PARAMS = {"conversation_id", "message_id"}
NOT_CONVERSATION_PARAMS = {"model_id": "a served model's name (GET /v1/models/{model_id})"}


@dataclass
class Backend:
    app: FastAPI
    url: str
    database_url: str


@pytest.fixture
def backend(scripted_engine: ScriptedEngine, tmp_path: Path) -> Iterator[Backend]:
    """The real app under uvicorn in a thread of this process, on the scripted engine (the
    routes' owners are the subject; a held reply is certainly running while B calls)."""
    store = StoreSettings(data_dir=tmp_path / "data")
    app = create_app(
        ServerSettings(warmup=False),
        EngineSettings(model="embedded"),
        store,
        LimitSettings(max_tokens_cap=300, default_max_tokens=8),
        engine=scripted_engine,
        auth=AuthSettings(),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the backend did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the backend never became ready"
        time.sleep(0.1)
    yield Backend(app, url, store.resolved_database_url())
    server.should_exit = True
    thread.join(30)


UserClient = Callable[[User], httpx.Client]


@pytest.fixture
def as_user(backend: Backend) -> Iterator[UserClient]:
    """THE way this walk names a user: an HTTP client that sends that user's own API key.

    Keys are made as ``chatbot keys create`` makes them; the backend resolves each request's
    user from its key (api/auth), as in production.
    """
    keys = ApiKeyStore.open(backend.database_url)
    clients: list[httpx.Client] = []

    def client(user: User) -> httpx.Client:
        key, _ = keys.create(user)
        made = httpx.Client(
            base_url=backend.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        clients.append(made)
        return made

    yield client
    for made in clients:
        made.close()
    keys.close()


@dataclass(frozen=True)
class Call:
    """One request of the walk: a route, a method, a variant of its body."""

    path: str
    method: str
    variant: str
    body: dict[str, Any] | None
    streams: bool

    def send(self, client: httpx.Client, conversation_id: str, message_id: str) -> httpx.Response:
        url = self.path.format(conversation_id=conversation_id, message_id=message_id)
        headers = {"Accept": "text/event-stream"} if self.streams else {}
        return client.request(self.method, url, json=self.body, headers=headers)


@dataclass(frozen=True)
class Route:
    """An API route as the app serves it: its full path (router prefixes included)."""

    path: str
    methods: frozenset[str]
    api_route: APIRoute


def conversation_routes(app: FastAPI) -> list[Route]:
    """Every API route with a path parameter, checked to be a conversation's or listed."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or context.path is None:
            continue
        path = context.path
        params = set(re.findall(r"{(\w+)(?::\w+)?}", path))
        unknown = params - CONVERSATION_PARAMS - set(NOT_CONVERSATION_PARAMS)
        assert not unknown, f"{path}: decide whether {unknown} names a user's data"
        if params & CONVERSATION_PARAMS:
            assert "conversation_id" in params, f"{path}: a message outside a conversation"
            found.append(Route(path, frozenset(context.methods or route.methods), route))
    return found


def calls_of(walked: Route) -> list[Call]:
    """Each method the route declares, with a valid body, both stream variants if it has one."""
    route = walked.api_route
    body_schema = _body_schema(route)
    streams_always = "text/event-stream" in json.dumps(route.responses) and body_schema is None
    calls = []
    for method in sorted(walked.methods):
        if body_schema is None:
            variant = "stream" if streams_always else "-"
            calls.append(Call(walked.path, method, variant, None, streams_always))
            continue
        body = _minimal_body(body_schema)
        if "stream" in body_schema.get("properties", {}):
            for stream in (False, True):
                calls.append(
                    Call(
                        walked.path,
                        method,
                        f"stream={str(stream).lower()}",
                        body | {"stream": stream},
                        stream,
                    )
                )
        else:
            calls.append(Call(walked.path, method, "-", body, False))
    return calls


def _body_schema(route: APIRoute) -> dict[str, Any] | None:
    if route.body_field is None:
        return None
    annotation = route.body_field.field_info.annotation
    model = next(
        (
            a
            for a in getattr(annotation, "__args__", (annotation,))
            if hasattr(a, "model_json_schema")
        ),
        None,
    )
    assert model is not None, f"{route.path}: a body the walk cannot build"
    schema: dict[str, Any] = model.model_json_schema()
    return schema


def _minimal_body(schema: dict[str, Any]) -> dict[str, Any]:
    """The required fields with plain valid values, plus a title where one may be set."""
    samples = {"string": "from bob", "boolean": False, "integer": 1, "number": 1}
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        kind = schema["properties"][name].get("type", "string")
        body[name] = samples[kind]
    if not body and "title" in schema.get("properties", {}):
        body["title"] = "from bob"
    return body


@dataclass
class Outcome:
    call: Call
    theirs: httpx.Response
    missing: httpx.Response

    @property
    def same_body(self) -> bool:
        return _normalised(self.theirs, self.call) == _normalised(self.missing, self.call)


def _normalised(response: httpx.Response, call: Call) -> Any:
    """The body with the id that was asked for taken out (it is echoed in the message)."""
    text = response.text
    for match in re.findall(r"'([0-9a-f]{32})'", text):
        text = text.replace(match, "<id>")
    return response.status_code, response.headers.get("content-type"), text


def touches_a_running_reply(call: Call) -> bool:
    return call.path.endswith(("/stop", "/reply"))


def walk(
    bob: httpx.Client,
    routes: list[Route],
    conversation_id: str,
    message_id: str,
    which: Callable[[Call], bool] = lambda call: True,
) -> list[Outcome]:
    outcomes = []
    calls = [call for route in routes for call in calls_of(route) if which(call)]
    for call in calls:
        theirs = call.send(bob, conversation_id, message_id)
        missing = call.send(bob, new_id(), message_id)
        outcomes.append(Outcome(call, theirs, missing))
    return outcomes


def _sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


def _alices_conversation(alice: httpx.Client) -> tuple[str, str]:
    created = alice.post(
        "/v1/conversations",
        json={"title": "Alice's secret plans", "params": {"max_new_tokens": 8}},
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    sent = alice.post(f"/v1/conversations/{cid}/messages", json={"content": "my secret is 42"})
    assert sent.status_code == 200, sent.text
    regenerated = alice.post(f"/v1/conversations/{cid}/regenerate")
    assert regenerated.status_code == 200, regenerated.text
    message_id = alice.get(f"/v1/conversations/{cid}").json()["messages"][0]["id"]
    return cid, message_id


def _snapshot(alice: httpx.Client, cid: str) -> tuple[Any, Any]:
    conversation = alice.get(f"/v1/conversations/{cid}")
    messages = alice.get(f"/v1/conversations/{cid}/messages")
    assert conversation.status_code == messages.status_code == 200
    return conversation.json(), messages.json()


def test_another_users_conversation_is_404_on_every_route(
    backend: Backend, as_user: UserClient, scripted_engine: ScriptedEngine
) -> None:
    alice, bob = as_user(ALICE), as_user(BOB)
    routes = conversation_routes(backend.app)
    assert {r.path for r in routes} >= {
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/reply",
        "/v1/conversations/{conversation_id}/stop",
        "/v1/conversations/{conversation_id}/export",
    }
    cid, message_id = _alices_conversation(alice)
    before = _snapshot(alice, cid)

    at_rest = walk(bob, routes, cid, message_id)
    assert _snapshot(alice, cid) == before

    # Again while A's reply runs: B's stop and attach must leave it alone.
    alice.patch(
        f"/v1/conversations/{cid}", json={"params": {"max_new_tokens": 300, "temperature": 0}}
    )
    with alice.stream(
        "POST",
        f"/v1/conversations/{cid}/messages",
        json={"content": LONG_PROMPT, "stream": True},
        headers={"Accept": "text/event-stream"},
    ) as reply:
        assert reply.status_code == 200
        events = _sse_events(reply)
        seen = []
        for event in events:
            seen.append(event)
            if event["type"] == "delta":
                break
        # A stop or an attach first, while the reply surely runs (held before its next token):
        # the calls that could touch it.
        scripted_engine.hold()
        running = walk(bob, routes, cid, message_id, touches_a_running_reply)
        latest = alice.get(f"/v1/conversations/{cid}").json()["messages"][-1]
        assert latest["status"] == "streaming"
        running += walk(bob, routes, cid, message_id, lambda c: not touches_a_running_reply(c))
        scripted_engine.release()
        seen += list(events)
    assert seen[-1]["type"] == "done", seen[-1]
    final = seen[-1]["message"]
    assert final["status"] == "complete"  # neither stopped nor interrupted by B
    assert final["content"] == "".join(e.get("delta", "") for e in seen) != ""
    stored = alice.get(f"/v1/conversations/{cid}").json()["messages"]
    assert [m["content"] for m in stored][-2:] == [LONG_PROMPT, final["content"]]

    _write_table(at_rest, running)
    for outcome in at_rest + running:
        label = f"{outcome.call.method} {outcome.call.path} {outcome.call.variant}"
        assert outcome.theirs.status_code == 404, (label, outcome.theirs.text)
        assert outcome.same_body, (label, outcome.theirs.text, outcome.missing.text)
        assert outcome.theirs.json()["error"]["type"] == "not_found_error", label
    assert alice.get(f"/v1/conversations/{cid}").status_code == 200


def test_lists_exports_and_server_data_never_show_another_users(
    backend: Backend, as_user: UserClient
) -> None:
    alice, bob = as_user(ALICE), as_user(BOB)
    cid, _ = _alices_conversation(alice)
    for n in range(3):
        assert bob.post("/v1/conversations", json={"title": f"bob {n}"}).status_code == 201
    secret = alice.get(f"/v1/conversations/{cid}").json()
    secrets = [cid, "Alice's secret plans", "my secret is 42", secret["messages"][-1]["content"]]

    listed = bob.get("/v1/conversations").json()
    assert [c["title"] for c in listed["data"]] == ["bob 2", "bob 1", "bob 0"]
    first = bob.get("/v1/conversations", params={"limit": 1}).json()
    paged = bob.get("/v1/conversations", params={"limit": 5, "after": first["next_cursor"]})
    assert [c["title"] for c in paged.json()["data"]] == ["bob 1", "bob 0"]
    alices_cursor = alice.get("/v1/conversations", params={"limit": 1}).json()
    assert alices_cursor["has_more"] is False and alices_cursor["data"][0]["id"] == cid
    # Alice's row as a place in the order: Bob gets his own rows older than it, nothing of hers.
    handed = bob.get("/v1/conversations", params={"after": f"9{'0' * 16}.{cid}"}).json()
    assert [c["title"] for c in handed["data"]] == ["bob 2", "bob 1", "bob 0"]
    imported = bob.post(
        "/v1/conversations/import",
        json={"format": "json", "content": json.dumps({"title": "bob's import", "messages": []})},
    )
    assert imported.status_code == 201
    assert imported.json()["id"] not in {
        c["id"] for c in alice.get("/v1/conversations").json()["data"]
    }

    for path in ("/v1/conversations", "/v1/status", "/metrics", "/v1/info", "/readyz"):
        response = bob.get(path)
        assert response.status_code == 200, (path, response.text)
        for secret_text in secrets:
            assert secret_text not in response.text, (path, secret_text)


def test_no_route_reaches_the_unbound_service(backend: Backend) -> None:
    """Routes get the service through ``ServiceDep`` only: bound to the request's user."""
    checked = 0
    for context in iter_route_contexts(backend.app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        pending, calls = [route.dependant], [route.endpoint]
        while pending:
            dependant = pending.pop()
            for dependency in dependant.dependencies:
                pending.append(dependency)
                if dependency.call is not None:
                    calls.append(dependency.call)
        for call in calls:
            if call is get_service:
                continue
            source = inspect.getsource(call)
            assert "runtime.service" not in source, f"{context.path}: {call.__qualname__}"
            checked += 1
    assert checked > 20


def _write_table(at_rest: list[Outcome], running: list[Outcome]) -> None:
    while_running = {(o.call.path, o.call.method, o.call.variant): o for o in running}
    at_rest = sorted(at_rest, key=lambda o: not touches_a_running_reply(o.call))
    lines = [
        "# Route walk: user B on user A's conversation",
        "",
        "Generated by `tests/api/test_ownership_routes.py` from the app's own routes (every",
        "route with a `{conversation_id}`, every method, both `stream` variants where the body",
        'has one). B and A are real users with their own API keys. "Same body": B\'s answer on',
        "A's conversation equals its answer for an id that does not exist (the id aside).",
        "",
        "| Route | Method | Variant | B on A's conversation | B on a missing id | Same body "
        "| While A's reply runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in at_rest:
        call = outcome.call
        live = while_running[(call.path, call.method, call.variant)]
        lines.append(
            f"| `{call.path}` | {call.method} | {call.variant} | {_status(outcome.theirs)} "
            f"| {_status(outcome.missing)} | {'yes' if outcome.same_body else 'NO'} "
            f"| {_status(live.theirs)}{'' if live.same_body else ' (body differs)'} |"
        )
    lines += [
        "",
        "A's reply, running during the second walk, completed with its full text (`complete`),",
        "and A's conversation read the same before and after the first walk.",
        "",
    ]
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(lines))


def _status(response: httpx.Response) -> str:
    try:
        code = response.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        code = response.headers.get("content-type", "")
    return f"{response.status_code} {code}"
