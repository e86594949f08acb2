"""The one error table: every class has its row and survives the trip through HTTP and events."""

from __future__ import annotations

import json

import pytest

from chatbot import errors


def _error_classes() -> list[type[errors.ChatbotError]]:
    """Every ChatbotError class that chatbot.errors defines."""
    return [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.ChatbotError)
        and cls.__module__ == errors.__name__
    ]


def _instance(cls: type[errors.ChatbotError]) -> errors.ChatbotError:
    if cls is errors.OverloadedError:
        return errors.OverloadedError("busy", retry_after_s=7)
    if cls is errors.ContextOverflowError:
        return errors.ContextOverflowError("too long", prompt_tokens=9000, context_window=4096)
    return cls(f"a {cls.__name__}", param="p")


def test_every_class_has_a_row_of_its_own() -> None:
    """Completeness: a new error class fails here until the table knows it."""
    rows = [kind.cls for kind in errors.ERRORS]
    assert sorted(rows, key=str) == sorted(_error_classes(), key=str)
    keys = [(kind.status, kind.type, kind.code) for kind in errors.ERRORS]
    assert len(set(keys)) == len(keys)
    by_type = [(kind.type, kind.code) for kind in errors.ERRORS]
    assert len(set(by_type)) == len(by_type), "an event without a status must still tell them"


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_class_round_trips_through_http(cls: type[errors.ChatbotError]) -> None:
    sent = _instance(cls)
    status, body, headers = errors.to_http(sent)
    assert status == cls.status_code
    back = errors.from_http(status, json.dumps(body).encode(), headers)
    assert type(back) is cls
    assert (back.message, back.param, back.code) == (sent.message, sent.param, sent.code)
    if isinstance(sent, errors.OverloadedError):
        assert headers == {"Retry-After": "7"}
        assert isinstance(back, errors.OverloadedError) and back.retry_after_s == 7
    else:
        assert headers == {}


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_class_round_trips_through_a_stream_event(cls: type[errors.ChatbotError]) -> None:
    sent = _instance(cls)
    event = {"type": "error", "error": sent.message, **errors.event_fields(sent)}
    back = errors.error_from_event(json.loads(json.dumps(event)))
    assert type(back) is cls
    assert (back.message, back.param, back.code) == (sent.message, sent.param, sent.code)
    if isinstance(sent, errors.OverloadedError):
        assert isinstance(back, errors.OverloadedError) and back.retry_after_s == 7
    # an OpenAI stream chunk carries the body alone, without the status
    chunk = {"error": errors.to_http(sent)[1]["error"]}
    assert type(errors.error_from_event(chunk)) is cls


@pytest.mark.parametrize(
    ("status", "error_type", "code", "expected"),
    [
        (504, "upstream_error", None, errors.UpstreamTimeoutError),
        (504, "timeout_error", "request_timeout", errors.RequestTimeoutError),
        (400, "invalid_request_error", "context_length_exceeded", errors.ContextOverflowError),
        (404, "invalid_request_error", "model_not_found", errors.ModelNotFoundError),
        (404, "not_found_error", None, errors.NotFoundError),
        (400, "invalid_request_error", "empty", errors.InvalidRequestError),
        (405, "invalid_request_error", None, errors.MethodNotAllowedError),
        (503, "service_unavailable", "draining", errors.UnavailableError),
        (500, "server_error", "generation_error", errors.GenerationError),
    ],
)
def test_status_type_and_code_pick_the_class(
    status: int, error_type: str, code: str | None, expected: type[errors.ChatbotError]
) -> None:
    body = {"error": {"message": "m", "type": error_type, "param": None, "code": code}}
    error = errors.from_http(status, json.dumps(body), {})
    assert type(error) is expected
    assert error.code == code


def test_context_overflow_in_openais_words_keeps_the_class_and_numbers() -> None:
    ours = errors.ContextOverflowError(
        "too long", prompt_tokens=9000, context_window=8192, completion_tokens=256
    )
    theirs = ours.in_openai_words()
    assert theirs.message == (
        "This model's maximum context length is 8192 tokens. However, you requested 9256 "
        "tokens (9000 in the messages, 256 in the completion). Please reduce the length of "
        "the messages or completion."
    )
    assert (theirs.code, theirs.param) == ("context_length_exceeded", "messages")
    status, body, _ = errors.to_http(theirs)
    assert type(errors.from_http(status, json.dumps(body))) is errors.ContextOverflowError
    rebuilt = errors.ContextOverflowError("from an answer")  # no numbers: the text stays
    assert rebuilt.in_openai_words() is rebuilt
