"""The OpenAPI document as this server answers: every status, content type and limit it has.

FastAPI writes what the routes declare; this adds what the app around them does, so a client
(or schemathesis) that trusts the document is never surprised:

- no ``422``: validation errors are ``400`` in the OpenAI error shape (:mod:`.error_handlers`);
- the statuses of the middleware (``408`` body too slow, ``413`` body too large, ``503``
  draining, ``401`` refused credentials), of the framework (``400`` for malformed JSON or
  parameters, ``500``), and of generation (``429`` overloaded, ``502``/``504`` upstream and
  timeouts), each with the error body;
- the limits that are settings (``CHATBOT_MAX_TOKENS_CAP``, ``CHATBOT_MAX_MESSAGES``,
  ``CHATBOT_MAX_MESSAGE_CHARS``), written into the request schemas of this app's document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from chatbot.api.middleware import PROBE_PATHS, PUBLIC_PATHS
from chatbot.api.openai.protocol import ErrorResponse
from chatbot.config import AuthMode, AuthSettings, LimitSettings, ServerSettings

ERROR_STATUSES = {
    400: "Invalid request: the message and `param` say what to fix.",
    401: "Missing or wrong credentials (`Authorization: Bearer <API key or token>`).",
    404: "No such resource (conversation, message or model).",
    409: "The conversation is busy with another reply, or cannot be answered again.",
    408: "The request body did not arrive within CHATBOT_BODY_TIMEOUT_S.",
    413: "The request body is larger than CHATBOT_MAX_BODY_BYTES.",
    429: "Every generation place and queue slot is taken; see `Retry-After`.",
    500: "The server failed; the log has the details.",
    502: "The upstream model server failed (engine `openai`).",
    503: "Not ready yet, shutting down, or a dependency is down.",
    504: "The reply took longer than allowed.",
}
# Operations that run the model: they can be refused for load, time out or fail upstream.
GENERATING = frozenset(
    {
        ("post", "/chat"),
        ("post", "/v1/chat/completions"),
        ("post", "/v1/conversations/{conversation_id}/messages"),
        ("post", "/v1/conversations/{conversation_id}/regenerate"),
        ("put", "/v1/conversations/{conversation_id}/messages/{message_id}"),
        ("get", "/v1/conversations/{conversation_id}/reply"),
    }
)
_UNUSED = ("HTTPValidationError", "ValidationError")


def install(
    app: FastAPI, server: ServerSettings, limits: LimitSettings, auth: AuthSettings | None = None
) -> None:
    """Serve the finished document at ``/openapi.json`` (built once, on first request)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = finish(schema, server, limits, auth)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def finish(
    schema: dict[str, Any],
    server: ServerSettings,
    limits: LimitSettings,
    auth: AuthSettings | None = None,
) -> dict[str, Any]:
    mode = auth.auth if auth is not None else AuthMode.NONE
    # Anonymous requests are refused (401) with a key, or in the oidc and header modes.
    protected = server.api_key is not None or mode is not AuthMode.NONE
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for name, definition in components["ErrorResponse"].pop("$defs", {}).items():
        components.setdefault(name, definition)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            _declare_statuses(path, method, operation)
    _link_created_conversations(schema["paths"])
    for name in _UNUSED:
        components.pop(name, None)
    _write_limits(components, limits)
    if protected:
        assert auth is not None or server.api_key is not None
        _declare_security(schema, auth)
    return schema


def _declare_statuses(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    statuses = {500}
    if path not in PROBE_PATHS:
        statuses.add(503)  # draining, or the model still loading
    checked = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
    if checked or "requestBody" in operation or method in ("post", "put", "patch"):
        statuses.add(400)  # parameters, or a JSON body (malformed JSON even where none is read)
    if method != "get":
        statuses.update({408, 413})  # a body too slow or too large
    if path not in PUBLIC_PATHS:
        # Also where anonymous requests are let in: an unknown per-user key, or a named user
        # without the service key, is refused.
        statuses.add(401)
    if "{" in path or path == "/v1/chat/completions":  # a conversation, message or model
        statuses.add(404)
    if (method, path) in GENERATING:
        statuses.update({429, 502, 504})
        if method != "get" and "conversation" in path:
            statuses.add(409)  # one reply per conversation at a time
    for status in sorted(statuses):
        entry = responses.setdefault(str(status), {"description": ERROR_STATUSES[status]})
        entry.setdefault("content", {"application/json": {"schema": _ref("ErrorResponse")}})


def _link_created_conversations(paths: dict[str, Any]) -> None:
    """OpenAPI links: a created conversation's ``id`` is the ``conversation_id`` of the others.

    Clients and generators (schemathesis' stateful phase) follow them from a new
    conversation to reading, renaming, messaging and deleting it.
    """
    prefix = "/v1/conversations/{conversation_id}"
    links = {
        operation["operationId"]: {
            "operationId": operation["operationId"],
            "parameters": {"conversation_id": "$response.body#/id"},
        }
        for path, item in paths.items()
        if path.startswith(prefix) and "{message_id}" not in path
        for operation in item.values()
    }
    for creating in ("/v1/conversations", "/v1/conversations/import"):
        paths[creating]["post"]["responses"]["201"]["links"] = links


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _declare_security(schema: dict[str, Any], auth: AuthSettings | None) -> None:
    """The ways in for this mode; any one of them is enough (OpenAPI's list is an OR)."""
    schemes = schema["components"].setdefault("securitySchemes", {})
    schemes["APIKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "CHATBOT_API_KEY (the local user), a per-user key from "
        "'chatbot keys create' (cb-...), or CHATBOT_SERVICE_KEY with X-Chatbot-User.",
    }
    requirements: list[dict[str, list[str]]] = [{"APIKey": []}]
    if auth is not None and auth.auth is AuthMode.OIDC and auth.oidc_issuer:
        schemes["OpenIDConnect"] = {
            "type": "openIdConnect",
            "openIdConnectUrl": auth.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
            "description": "An ID token of the provider, as 'Authorization: Bearer <token>'.",
        }
        requirements.append({"OpenIDConnect": []})
    if auth is not None and auth.auth is AuthMode.HEADER:
        schemes["ProxyHeader"] = {
            "type": "apiKey",
            "in": "header",
            "name": auth.auth_header,
            "description": "Set by the authenticating proxy; honoured only from "
            "CHATBOT_TRUSTED_PROXIES.",
        }
        requirements.append({"ProxyHeader": []})
    for path, item in schema.get("paths", {}).items():
        if path in PUBLIC_PATHS:
            continue
        for operation in item.values():
            operation["security"] = requirements


def _write_limits(components: dict[str, Any], limits: LimitSettings) -> None:
    """The settings' limits into the request schemas, so valid data is never refused."""
    chars = limits.max_message_chars
    pairs = (limits.max_messages - 1) // 2  # the seed's history: a user and a reply per pair
    bounds: list[tuple[str, str, str, str, int]] = [
        ("ChatCompletionRequest", "max_tokens", "integer", "maximum", limits.max_tokens_cap),
        (
            "ChatCompletionRequest",
            "max_completion_tokens",
            "integer",
            "maximum",
            limits.max_tokens_cap,
        ),
        ("ChatCompletionRequest", "messages", "array", "maxItems", limits.max_messages),
        ("ChatMessage", "content", "string", "maxLength", chars),
        ("ContentPart", "text", "string", "maxLength", chars),
        ("GenerationParams", "max_new_tokens", "integer", "maximum", limits.max_tokens_cap),
        ("ConversationCreate", "system_prompt", "string", "maxLength", chars),
        ("ConversationUpdate", "system_prompt", "string", "maxLength", chars),
        ("SendMessage", "content", "string", "maxLength", chars),
        ("SeedChatRequest", "user_input", "string", "maxLength", chars),
        ("SeedChatRequest", "past_user_inputs", "array", "maxItems", pairs),
        ("SeedChatRequest", "generated_responses", "array", "maxItems", pairs),
    ]
    for model, field, kind, keyword, value in bounds:
        for branch in _typed(components[model]["properties"][field], kind):
            branch[keyword] = value
    for field in ("past_user_inputs", "generated_responses"):
        items = components["SeedChatRequest"]["properties"][field]["items"]
        items["maxLength"] = chars


def _typed(prop: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The schema, or its ``anyOf`` branches, of the given JSON type."""
    matched = [branch for branch in prop.get("anyOf", [prop]) if branch.get("type") == kind]
    if not matched:
        raise RuntimeError(f"the document has no {kind} schema to bound in {prop}")
    return matched
