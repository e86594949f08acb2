"""Reply versions over /v1/conversations: the tree in each message, and the select route."""

from __future__ import annotations

from fastapi.testclient import TestClient

VARIED = {"max_new_tokens": 3, "temperature": 1.0}


def test_versions_are_exposed_and_selectable(client: TestClient) -> None:
    cid = client.post("/v1/conversations", json={"params": VARIED}).json()["id"]
    first = client.post(f"/v1/conversations/{cid}/messages", json={"content": "Hi"}).json()
    for _ in range(2):
        again = client.post(f"/v1/conversations/{cid}/regenerate", json={})
        assert again.status_code == 200
    user, reply = client.get(f"/v1/conversations/{cid}").json()["messages"]
    # The existing fields stay; the tree is additive.
    assert {"role", "content", "status", "id", "created_at", "stats"} <= set(reply)
    assert reply["parent_id"] == user["id"] and user["parent_id"] is None
    assert (reply["version"], reply["versions"]) == (3, 3)
    assert reply["sibling_ids"][0] == first["id"] and reply["sibling_ids"][2] == reply["id"]
    assert (user["version"], user["versions"], user["sibling_ids"]) == (1, 1, [user["id"]])

    selected = client.post(f"/v1/conversations/{cid}/messages/{first['id']}/select")
    assert selected.status_code == 200
    assert [m["id"] for m in selected.json()["messages"]] == [user["id"], first["id"]]
    assert selected.json()["messages"][1]["version"] == 1
    exported = client.get(f"/v1/conversations/{cid}/export", params={"format": "csv"}).text
    assert exported.count("\nFalse,") == 1
    assert client.get(f"/v1/conversations/{cid}").json()["messages"][1]["id"] == first["id"]

    tree = client.get(f"/v1/conversations/{cid}/messages").json()
    assert tree["object"] == "list"
    assert [m["id"] for m in tree["data"]] == [user["id"], *reply["sibling_ids"]]
    assert {m["parent_id"] for m in tree["data"][1:]} == {user["id"]}

    edited = client.put(f"/v1/conversations/{cid}/messages/{user['id']}", json={"content": "Hello"})
    assert edited.status_code == 200
    now = client.get(f"/v1/conversations/{cid}").json()["messages"]
    assert now[0]["content"] == "Hello" and now[0]["sibling_ids"] == [user["id"], now[0]["id"]]


def test_select_refusals(client: TestClient) -> None:
    cid = client.post("/v1/conversations", json={"params": VARIED}).json()["id"]
    client.post(f"/v1/conversations/{cid}/messages", json={"content": "Hi"})
    missing = client.post(f"/v1/conversations/{cid}/messages/nope/select")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "message_id"
    assert client.get("/v1/conversations/nope/messages").status_code == 404
    unknown = client.post("/v1/conversations/nope/messages/nope/select")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "conversation_id"
