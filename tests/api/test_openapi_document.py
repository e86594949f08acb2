"""The OpenAPI document says what the server does: statuses, content types, this app's limits.

The full conformance run is ``test_schemathesis.py``; these are the facts it rests on, quick.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import ClientFactory


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_no_422_and_every_error_has_the_error_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
        if method in ("post", "put", "patch"):
            assert {"400", "413", "503"} <= set(responses), (method, path)


def test_content_types_are_declared(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    export = paths["/v1/conversations/{conversation_id}/export"]["get"]["responses"]["200"]
    assert {"text/csv", "text/markdown", "application/json"} <= set(export["content"])
    for path in ("/v1/chat/completions", "/v1/conversations/{conversation_id}/messages"):
        assert "text/event-stream" in paths[path]["post"]["responses"]["200"]["content"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    generating = paths["/v1/chat/completions"]["post"]["responses"]
    assert {"404", "429", "502", "504"} <= set(generating)  # model_not_found, load, upstream


def test_the_settings_limits_are_in_the_request_schemas(make_client: ClientFactory) -> None:
    client = make_client(limits={"max_tokens_cap": 7, "max_messages": 9, "max_message_chars": 99})
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["max_tokens"]["anyOf"][0]["maximum"] == 7
    assert chat["messages"]["maxItems"] == 9
    assert schemas["ChatMessage"]["properties"]["content"]["anyOf"][0]["maxLength"] == 99
    assert schemas["GenerationParams"]["properties"]["max_new_tokens"]["maximum"] == 7
    assert schemas["SeedChatRequest"]["properties"]["past_user_inputs"]["maxItems"] == 4


def test_the_api_key_is_a_declared_bearer_scheme(make_client: ClientFactory) -> None:
    keyed = make_client(api_key="k")
    document = keyed.get("/openapi.json", headers={"Authorization": "Bearer k"}).json()
    assert document["components"]["securitySchemes"]["APIKey"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/health"]["get"]
    assert "401" in document["paths"]["/v1/models"]["get"]["responses"]
    plain = make_client().get("/openapi.json").json()
    # Open to anonymous requests: no scheme is required, but a refused key is still a 401.
    assert "securitySchemes" not in plain["components"]
    assert "security" not in plain["paths"]["/v1/models"]["get"]
    assert "401" in plain["paths"]["/v1/models"]["get"]["responses"]
    assert "401" not in plain["paths"]["/health"]["get"]["responses"]


def test_a_wrong_method_is_405_naming_every_method_of_the_path(client: TestClient) -> None:
    for method in ("PUT", "OPTIONS", "DELETE", "HEAD"):
        response = client.request(method, "/v1/conversations")
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "GET, POST"
        if method != "HEAD":  # no body to a HEAD
            assert response.json()["error"]["code"] == "method_not_allowed"
    # A literal segment is not an id: GET /v1/conversations/import is not "conversation import".
    response = client.get("/v1/conversations/import")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert client.put("/v1/conversations/c").headers["allow"] == "GET, PATCH, DELETE"
