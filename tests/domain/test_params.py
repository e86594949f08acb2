"""Generation parameters reject out-of-range values with the field's name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatbot.domain import GenerationParams


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", -5),
        ("max_new_tokens", 10**9),
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("seed", -1),
        ("stop", ("",)),
        ("stop", ("a", "b", "c", "d", "e")),
        ("stop", ("x" * 201,)),
    ],
)
def test_out_of_range_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        GenerationParams(**{field: value})  # type: ignore[arg-type]
    assert info.value.errors()[0]["loc"][0] == field


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        GenerationParams(temprature=1.0)  # type: ignore[call-arg]


def test_defaults_are_greedy() -> None:
    assert GenerationParams().greedy
    assert not GenerationParams(temperature=0.7).greedy
