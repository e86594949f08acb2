"""/v1/conversations over the real ChatService and a SQLite file."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient


def test_conversation_lifecycle(client: TestClient) -> None:
    created = client.post(
        "/v1/conversations", json={"title": "Trip", "params": {"max_new_tokens": 3}}
    )
    assert created.status_code == 201
    cid = created.json()["id"]
    reply = client.post(f"/v1/conversations/{cid}/messages", json={"content": "Hi"})
    assert reply.status_code == 200
    assert reply.json()["role"] == "assistant" and reply.json()["status"] == "complete"

    with client.stream(
        "POST", f"/v1/conversations/{cid}/messages", json={"content": "Again", "stream": True}
    ) as response:
        assert response.headers["x-accel-buffering"] == "no"
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert events[0]["type"] == "start" and events[-1]["type"] == "done"

    conversation = client.get(f"/v1/conversations/{cid}").json()
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"] * 2
    assert client.get(f"/v1/conversations/{cid}/reply").status_code == 204
    assert client.post(f"/v1/conversations/{cid}/stop").json() == {"stopped": False}

    exported = client.get(f"/v1/conversations/{cid}/export", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.text.startswith("is_user,text")
    assert "attachment" in exported.headers["content-disposition"]
    imported = client.post(
        "/v1/conversations/import", json={"format": "csv", "content": exported.text}
    )
    assert imported.status_code == 201 and len(imported.json()["messages"]) == 4

    renamed = client.patch(f"/v1/conversations/{cid}", json={"title": "Renamed"})
    assert renamed.json()["title"] == "Renamed"
    listed = client.get("/v1/conversations").json()
    assert listed["object"] == "list" and {row["id"] for row in listed["data"]} >= {cid}
    assert client.post(f"/v1/conversations/{cid}/clear").json()["messages"] == []
    assert client.delete(f"/v1/conversations/{cid}").status_code == 204
    missing = client.get(f"/v1/conversations/{cid}")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_conversation_inputs_are_checked(client: TestClient) -> None:
    too_long = client.post("/v1/conversations", json={"params": {"max_new_tokens": 10_000}})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["param"] == "params.max_new_tokens"
    cid = client.post("/v1/conversations", json={}).json()["id"]
    empty = client.post(f"/v1/conversations/{cid}/messages", json={"content": "  "})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "content"
    unknown = client.post("/v1/conversations/nope/messages", json={"content": "hi"})
    assert unknown.status_code == 404
    bad_format = client.get(f"/v1/conversations/{cid}/export", params={"format": "pdf"})
    assert bad_format.status_code == 400 and bad_format.json()["error"]["param"] == "format"
