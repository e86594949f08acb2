"""Structured output for the engines that sample on our side (transformers, llama.cpp).

A JSON schema becomes a grammar (llguidance, a kept library: the same one vLLM and llama.cpp can
use), and the grammar becomes a mask over the next token's logits, one step at a time, so the
reply is JSON that validates against the schema whatever the model would rather say. OpenVINO
has its own structured output and the ``openai`` engine passes the schema upstream; neither uses
this module.

Compact JSON (no free whitespace between tokens): a small greedy model otherwise tends to fill
the reply with newlines, which the grammar would allow forever.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from chatbot.errors import ConfigurationError, InvalidRequestError

if TYPE_CHECKING:
    import torch

JsonSchema = Mapping[str, Any]

# Options of llguidance's JSON compiler: compact separators, no whitespace between tokens.
_JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False}


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:  # a dependency of the package; missing only in odd installs
        raise ConfigurationError(
            "structured output needs llguidance: pip install llguidance"
        ) from exc
    return llguidance


def compile_json_schema(schema: JsonSchema, param: str = "response_format") -> str:
    """The llguidance grammar of a schema; a 400 naming ``param`` when it cannot be enforced."""
    guidance = _llguidance()
    try:
        grammar: str = guidance.LLMatcher.grammar_from_json_schema(
            json.dumps(dict(schema)), defaults=_JSON_OPTIONS
        )
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"{param}: not a JSON schema: {exc}", param=param) from None
    error = guidance.LLMatcher.validate_grammar(grammar)
    if error and not error.startswith("WARNING"):
        raise InvalidRequestError(
            f"{param}: this JSON schema cannot be enforced by constrained decoding: {error}",
            param=param,
            code="unsupported_schema",
        )
    return grammar


class GrammarTokenizer:
    """The engine's vocabulary as llguidance sees it, built once, on the first constrained reply.

    Building it reads the whole vocabulary (about a second), so engines that never get a
    constrained request never pay for it.
    """

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self._build = build
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._build(_llguidance())
            return self._tokenizer

    def constraint(self, schema: JsonSchema, eos_ids: Collection[int]) -> JsonConstraint:
        return JsonConstraint(self.get(), compile_json_schema(schema), eos_ids)


class JsonConstraint:
    """One reply's grammar state: masks logits before sampling, follows each chosen token."""

    def __init__(self, tokenizer: Any, grammar: str, eos_ids: Collection[int]) -> None:
        guidance = _llguidance()
        self._matcher = guidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise InvalidRequestError(
                f"response_format: {self._matcher.get_error()}", param="response_format"
            )
        self._vocab = int(tokenizer.vocab_size)
        self._eos = sorted(eos_ids)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits with every token the grammar forbids at this step set to -inf."""
        import torch  # here: only engines that sample themselves mask logits

        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
        if self._matcher.is_stopped():  # the JSON is complete: only an end of reply remains
            allowed[[t for t in self._eos if t < allowed.numel()]] = True
        else:
            raw = bytearray(self._matcher.compute_logit_bias())
            bias = torch.frombuffer(raw, dtype=torch.uint8)
            width = min(self._vocab, logits.shape[-1], bias.numel())
            allowed[:width] = bias[:width] > 0
            if self._matcher.is_accepting():
                allowed[[t for t in self._eos if t < allowed.numel()]] = True
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def accept(self, token: int) -> None:
        """Follow a chosen token (an end-of-reply token needs no following)."""
        if token in self._eos or self._matcher.is_stopped():
            return
        if not self._matcher.consume_token(token):
            raise RuntimeError(f"structured output: the grammar refused token {token}")
