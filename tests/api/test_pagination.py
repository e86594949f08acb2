"""Keyset pagination of ``GET /v1/conversations``: no row repeated or skipped while adding."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _create(client: TestClient, title: str) -> str:
    response = client.post("/v1/conversations", json={"title": title})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_paging_by_cursor_neither_repeats_nor_skips_while_conversations_are_added(
    client: TestClient,
) -> None:
    existing = [_create(client, f"old {n}") for n in range(7)]
    newest_first = list(reversed(existing))
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if after is not None:
            params["after"] = after
        page = client.get("/v1/conversations", params=params).json()
        seen += [row["id"] for row in page["data"]]
        pages += 1
        _create(client, f"new while paging {pages}")  # sorts first: offset paging would repeat
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        after = page["next_cursor"]
        assert isinstance(after, str)
    assert seen == newest_first
    assert pages == 4


def test_offset_still_works_and_the_first_page_is_the_same(client: TestClient) -> None:
    for n in range(3):
        _create(client, f"c {n}")
    first = client.get("/v1/conversations", params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert {"id", "title", "created_at", "updated_at", "message_count"} <= set(first["data"][0])
    by_offset = client.get("/v1/conversations", params={"limit": 2, "offset": 2}).json()
    by_cursor = client.get(
        "/v1/conversations", params={"limit": 2, "after": first["next_cursor"]}
    ).json()
    assert by_offset["data"] == by_cursor["data"] and len(by_cursor["data"]) == 1
    assert by_cursor["has_more"] is False


def test_a_cursor_of_another_shape_is_a_named_400(client: TestClient) -> None:
    for cursor in ("not-a-cursor", "12.ab/cd", "x" * 60):
        response = client.get("/v1/conversations", params={"after": cursor})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "after"
    # Any cursor of the right shape is a place in the order, row or no row.
    response = client.get("/v1/conversations", params={"after": "1.nosuchrow"})
    assert response.status_code == 200 and response.json()["data"] == []
