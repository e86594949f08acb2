"""The one place where a reply's parameters are decided, for every route and both transports.

The rule, chosen once: a reply length above the server's cap is refused with a 400 that names
the cap and the setting (``CHATBOT_MAX_TOKENS_CAP``), whichever path asked (the UI, the seed
route, the OpenAI route, the conversations API, the terminal); a request that names no length
gets the server's default. The engine may still shorten a reply to fit the context window, and
says so in the reply's stats. Values that reach a reply from storage (written before the cap
was lowered) are capped, not refused, since nobody is there to fix them.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.config import LimitSettings
from chatbot.domain import GenerationParams
from chatbot.errors import InvalidRequestError
from chatbot.store.models import MAX_TITLE_CHARS


@dataclass(frozen=True)
class ServiceLimits:
    """What a client may ask for; the UI builds its controls from these, never from constants."""

    max_tokens_cap: int
    default_max_tokens: int
    max_message_chars: int
    max_title_chars: int
    max_system_prompt_chars: int

    @classmethod
    def of(cls, limits: LimitSettings) -> ServiceLimits:
        return cls(
            max_tokens_cap=limits.max_tokens_cap,
            default_max_tokens=min(limits.default_max_tokens, limits.max_tokens_cap),
            max_message_chars=limits.max_message_chars,
            max_title_chars=MAX_TITLE_CHARS,
            max_system_prompt_chars=limits.max_message_chars,
        )


def resolve_params(
    params: GenerationParams | None, limits: LimitSettings, *, param: str = "max_tokens"
) -> GenerationParams:
    """Requested values within the caps; ``param`` is how the caller's API spells the length."""
    caps = ServiceLimits.of(limits)
    params = params if params is not None else GenerationParams()
    if "max_new_tokens" not in params.model_fields_set:
        return params.model_copy(update={"max_new_tokens": caps.default_max_tokens})
    if params.max_new_tokens > caps.max_tokens_cap:
        raise InvalidRequestError(
            f"{param} is {params.max_new_tokens} but this server allows at most "
            f"{caps.max_tokens_cap} (CHATBOT_MAX_TOKENS_CAP)",
            param=param,
            code="max_tokens_too_large",
        )
    return params


def conversation_params(params: GenerationParams | None, limits: LimitSettings) -> GenerationParams:
    """A new conversation's parameters: as :func:`resolve_params`, and the server's default
    temperature when none is named, so Regenerate gives another answer (0 stays greedy)."""
    params = resolve_params(params, limits, param="params.max_new_tokens")
    if "temperature" in params.model_fields_set:
        return params
    return params.model_copy(update={"temperature": limits.default_temperature})


def stored_params(params: GenerationParams, limits: LimitSettings) -> GenerationParams:
    """Parameters kept with a conversation, capped by today's limit."""
    if params.max_new_tokens <= limits.max_tokens_cap:
        return params
    return params.model_copy(update={"max_new_tokens": limits.max_tokens_cap})
