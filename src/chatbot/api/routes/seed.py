"""The seed article's contract, exactly: ``GET /`` and ``POST /chat`` returning a JSON string."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chatbot.api.body import StrictJSONRoute
from chatbot.api.deps import LimitsDep, RunnerDep
from chatbot.api.streaming import one_shot_text
from chatbot.config import LimitSettings
from chatbot.domain import from_wire
from chatbot.errors import InvalidRequestError
from chatbot.service.params import resolve_params

router = APIRouter(tags=["seed"], route_class=StrictJSONRoute)


class SeedChatRequest(BaseModel):
    """The article's body: the two history lists and the new input."""

    model_config = ConfigDict(extra="ignore")

    past_user_inputs: list[str] = Field(default_factory=list)
    generated_responses: list[str] = Field(default_factory=list)
    user_input: str


@router.get("/")
async def root() -> dict[str, str]:
    return {"status": "OK!"}


@router.post("/chat", response_model=str)
async def chat(
    body: SeedChatRequest, request: Request, runner: RunnerDep, limits: LimitsDep
) -> Response:
    _check_limits(body, limits)
    messages = from_wire(body.past_user_inputs, body.generated_responses, body.user_input)
    reply = runner.start(messages, resolve_params(None, limits), endpoint="seed_chat")
    result = await one_shot_text(reply, request)
    if isinstance(result, Response):
        return result
    return JSONResponse(result[0])


def _check_limits(body: SeedChatRequest, limits: LimitSettings) -> None:
    count = len(body.past_user_inputs) + len(body.generated_responses) + 1
    if count > limits.max_messages:
        raise InvalidRequestError(
            f"the history has {count} messages but this server accepts at most "
            f"{limits.max_messages} (CHATBOT_MAX_MESSAGES)",
            param="past_user_inputs",
            code="too_many_messages",
        )
    fields = [("user_input", body.user_input)]
    fields += [(f"past_user_inputs[{i}]", t) for i, t in enumerate(body.past_user_inputs)]
    fields += [(f"generated_responses[{i}]", t) for i, t in enumerate(body.generated_responses)]
    for param, text in fields:
        if len(text) > limits.max_message_chars:
            raise InvalidRequestError(
                f"{param} has {len(text)} characters but this server accepts at most "
                f"{limits.max_message_chars} (CHATBOT_MAX_MESSAGE_CHARS)",
                param=param,
                code="message_too_long",
            )
