"""``response_format``: the JSON schema a reply must follow, checked before any work.

``json_object`` is any JSON object; ``json_schema`` is the caller's schema, always enforced by
constrained decoding (``strict`` or not: a reply that may break the schema helps nobody).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from chatbot.api.openai.protocol import ResponseFormat
from chatbot.errors import InvalidRequestError

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def json_schema_of(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The schema the reply must follow, or None for plain text; a 400 says what to fix."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return dict(ANY_OBJECT)
    spec = response_format.json_schema
    if spec is None or spec.schema_ is None:
        raise InvalidRequestError(
            "response_format.json_schema.schema is required with type json_schema "
            '(e.g. {"type": "json_schema", "json_schema": {"name": "answer", "schema": {...}}})',
            param="response_format.json_schema.schema",
        )
    try:
        Draft202012Validator.check_schema(spec.schema_)
    except SchemaError as exc:
        raise InvalidRequestError(
            f"response_format.json_schema.schema: not a valid JSON schema: {exc.message}",
            param="response_format.json_schema.schema",
            code="invalid_schema",
        ) from None
    return spec.schema_
