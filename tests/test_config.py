"""Settings come from CHATBOT_* variables and fail at start with the name and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.config import EngineKind, EngineSettings, ServerSettings, StoreSettings, load
from chatbot.errors import ConfigurationError


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_ENGINE", "openai")
    monkeypatch.setenv("CHATBOT_MAX_CONCURRENT_REQUESTS", "3")
    assert load(EngineSettings).engine is EngineKind.OPENAI
    assert load(ServerSettings).max_concurrent_requests == 3


def test_explicit_values_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_PORT", "9000")
    assert load(ServerSettings, port=9100).port == 9100
    assert load(ServerSettings, port=None).port == 9000


def test_an_invalid_choice_names_the_setting_and_the_allowed_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATBOT_ENGINE", "vllm")
    with pytest.raises(ConfigurationError) as info:
        load(EngineSettings)
    assert "CHATBOT_ENGINE" in info.value.message
    assert "transformers, llamacpp, openai" in info.value.message


def test_a_value_out_of_bounds_names_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_MAX_CONCURRENT_REQUESTS", "0")
    with pytest.raises(ConfigurationError) as info:
        load(ServerSettings)
    assert "CHATBOT_MAX_CONCURRENT_REQUESTS" in info.value.message
    assert "ge 1" in info.value.message


def test_not_a_number_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_PORT", "eighty")
    with pytest.raises(ConfigurationError, match="CHATBOT_PORT"):
        load(ServerSettings)


def test_model_aliases_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_MODEL_ALIASES", "gpt-4o-mini, gpt-3.5-turbo,")
    assert load(ServerSettings).model_aliases == ("gpt-4o-mini", "gpt-3.5-turbo")
    monkeypatch.delenv("CHATBOT_MODEL_ALIASES")
    assert load(ServerSettings).model_aliases == ()


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = load(StoreSettings, data_dir=tmp_path / "data").resolved_database_url()
    assert url == f"sqlite:///{tmp_path / 'data' / 'chatbot.sqlite3'}"
    assert (tmp_path / "data").is_dir()


def test_every_field_has_a_description() -> None:
    from chatbot import config

    models = [
        value
        for value in vars(config).values()
        if isinstance(value, type)
        and value.__module__ == config.__name__
        and hasattr(value, "model_fields")
    ]
    assert len(models) >= 5
    for model in models:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
