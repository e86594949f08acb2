"""Parsing untrusted JSON text: every way :func:`json.loads` can fail becomes a 400.

Besides syntax errors, Python's parser raises a bare ``ValueError`` for an integer literal
longer than the interpreter's conversion limit (4,300 digits) and ``RecursionError`` for deep
nesting; and it accepts ``NaN``, ``Infinity`` and lone UTF-16 surrogates (``"\\ud800"``), which
no JSON encoder, database or CSV writer downstream will take. Request bodies and imported
files both go through here, so the two paths refuse the same things with the same words.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any

from chatbot.errors import InvalidRequestError

Path = tuple[int | str, ...]


def parse_json(text: str, *, what: str, param: str | None = None) -> Any:
    """``json.loads`` whose failures are :class:`InvalidRequestError` naming ``what``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            param=param,
            code="invalid_json",
        ) from None
    except RecursionError:
        raise InvalidRequestError(
            f"{what} nests JSON too deeply", param=param, code="invalid_json"
        ) from None
    except ValueError:
        # int() refuses literals past sys.get_int_max_str_digits(): no field needs one.
        raise InvalidRequestError(
            f"{what} has a number with too many digits (more than "
            f"{_max_digits()}); send numbers within the documented bounds",
            param=param,
            code="invalid_number",
        ) from None


def first_lone_surrogate(value: Any) -> Path | None:
    """Path to the first string (key or value) that cannot be encoded as UTF-8; iterative."""
    for path, item in _walk(value):
        if isinstance(item, str) and not encodable(item):
            return path
    return None


def first_non_finite(value: Any) -> Path | None:
    """Path to the first NaN or infinite number (``NaN``, ``Infinity``, ``1e999``)."""
    for path, item in _walk(value):
        if isinstance(item, float) and not math.isfinite(item):
            return path
    return None


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate), i.e. can be stored as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any) -> Iterator[tuple[Path, Any]]:
    """Every value and dict key with its path, depth first, without recursion.

    A key is reported with the path of its object, as the place to fix.
    """
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                yield path, key
                stack.append(((*path, key), child))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append(((*path, index), item[index]))
        else:
            yield path, item


def _max_digits() -> int:
    return sys.get_int_max_str_digits() or 4300
