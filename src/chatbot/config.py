"""Settings, one model per concern, all read from ``CHATBOT_*`` environment variables.

Every field carries a description and bounds; the CLI builds its flags from the fields that
declare a ``cli`` flag (see :mod:`chatbot.cli`), so nothing is written twice.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from chatbot.errors import ConfigurationError

S = TypeVar("S", bound=BaseSettings)


class EngineKind(StrEnum):
    """Which model runtime turns messages into text."""

    OPENVINO = "openvino"
    TRANSFORMERS = "transformers"
    LLAMACPP = "llamacpp"
    OPENAI = "openai"
    SCRIPTED = "scripted"  # replies by rule, no model: tests and trying a UI (scripted_engine)


class OpenVINOPrecision(StrEnum):
    """Inference and KV-cache precision of the OpenVINO engine (see engine.openvino_precision)."""

    AUTO = "auto"  # f32 (faithful), then what the CPU plugin reports it accelerates
    F32 = "f32"
    BF16 = "bf16"
    F16 = "f16"
    PLUGIN = "plugin"  # the CPU plugin's own defaults: its precision, a u8 KV cache


class Device(StrEnum):
    """Where the transformers engine runs the model."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def _cli(flag: str) -> dict[str, Any]:
    return {"cli": flag}


_BASE_CONFIG = SettingsConfigDict(
    env_prefix="CHATBOT_", extra="ignore", validate_default=True, frozen=True
)


class EngineSettings(BaseSettings):
    """The model and the runtime that serves it."""

    model_config = _BASE_CONFIG

    model: str = Field(
        default="embedded",
        min_length=1,
        max_length=4096,
        description="Hugging Face id, local folder or .gguf path; 'embedded' is SmolLM2-135M.",
        json_schema_extra=_cli("--model"),
    )
    engine: EngineKind = Field(
        default=EngineKind.TRANSFORMERS,
        description=(
            "Model runtime: openvino, transformers, llamacpp, openai or scripted (replies by "
            "rule, no model; default: openvino for the embedded model and .gguf files, "
            "transformers for Hugging Face ids and folders)."
        ),
        json_schema_extra=_cli("--engine"),
    )
    device: Device = Field(default=Device.AUTO, description="auto, cpu or cuda.")
    context_window: int | None = Field(
        default=None,
        ge=16,
        le=1_048_576,
        description="Override the model's context length in tokens (default: the model's).",
    )
    max_batch_size: int = Field(
        default=8, ge=1, le=256, description="Most requests decoded together in one batch."
    )
    batching: bool = Field(
        default=True, description="Decode concurrent requests together (continuous batching)."
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where converted GGUF models are kept (default: ~/.cache/chatbot).",
    )
    threads: int | None = Field(
        default=None, ge=1, le=512, description="CPU threads for the model (default: all)."
    )
    openvino_ir_copy: bool = Field(
        default=True,
        description="Serve a GGUF through an OpenVINO IR copy in cache_dir that holds the "
        "file's exact weights (made at the first start); false reads the GGUF directly, whose "
        "4-bit offsets OpenVINO rounds.",
    )
    openvino_precision: OpenVINOPrecision = Field(
        default=OpenVINOPrecision.AUTO,
        description="OpenVINO inference and KV-cache precision: auto (f32 first, then what the "
        "CPU plugin accepts), f32, bf16, f16 or plugin (the plugin's own defaults).",
    )
    openai_base_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Upstream OpenAI-compatible URL (e.g. http://vllm:8000/v1) for engine=openai.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="Bearer key sent to the upstream of the openai engine."
    )
    openai_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="Upstream read timeout in seconds."
    )

    scripted_token_s: float = Field(
        default=0.01, ge=0, le=60, description="engine=scripted: seconds between two tokens."
    )
    scripted_reply_tokens: int = Field(
        default=24, ge=1, le=1_000_000, description="engine=scripted: tokens a reply has."
    )
    scripted_load_s: float = Field(
        default=0, ge=0, le=86_400, description="engine=scripted: seconds its load takes."
    )
    scripted_load_gate: Path | None = Field(
        default=None,
        description="engine=scripted: its load also waits until this file exists (the cue a "
        "test or a demonstration of the loading states gives).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_engine_for_the_model(cls, data: Any) -> Any:
        """GGUF files (the embedded model too) run on OpenVINO unless an engine is named."""
        if isinstance(data, dict) and data.get("engine") in (None, ""):
            model = str(data.get("model") or "embedded")
            gguf = model == "embedded" or model.lower().endswith(".gguf")
            return {**data, "engine": EngineKind.OPENVINO if gguf else EngineKind.TRANSFORMERS}
        return data

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "chatbot"


class StoreSettings(BaseSettings):
    """Where conversations are kept."""

    model_config = _BASE_CONFIG

    database_url: str | None = Field(
        default=None,
        max_length=4096,
        description="SQLAlchemy URL (postgresql+psycopg://...); default: SQLite in data_dir.",
        json_schema_extra=_cli("--database-url"),
    )
    data_dir: Path | None = Field(
        default=None,
        description="Folder of the default SQLite file (default: ~/.local/share/chatbot).",
    )

    def data_folder(self) -> Path:
        """Where local files go (the default SQLite file, the terminal chat's history)."""
        return self.data_dir or _default_data_dir()

    def resolved_database_url(self) -> str:
        """The URL to open: the explicit one, or the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        folder = self.data_folder()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'chatbot.sqlite3'}"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chatbot"


class LimitSettings(BaseSettings):
    """What one request may ask for; shared by the service and the API."""

    model_config = _BASE_CONFIG

    max_tokens_cap: int = Field(
        default=2048, ge=1, le=131_072, description="Largest max_tokens a request may ask for."
    )
    default_max_tokens: int = Field(
        default=256, ge=1, le=131_072, description="Reply length when a request names none."
    )
    default_temperature: float = Field(
        default=0.7,
        ge=0.0,
        le=2.0,
        description="Temperature of a new conversation that names none (0 is greedy).",
    )
    max_messages: int = Field(
        default=1000, ge=1, le=100_000, description="Most messages in one request."
    )
    max_message_chars: int = Field(
        default=100_000, ge=1, le=10_000_000, description="Longest single message, in characters."
    )
    max_body_bytes: int = Field(
        default=2_000_000, ge=1024, le=1_000_000_000, description="Largest request body in bytes."
    )


class ServerSettings(BaseSettings):
    """The FastAPI backend (``chatbot serve``)."""

    model_config = _BASE_CONFIG

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=255,
        description="Address to bind.",
        json_schema_extra=_cli("--host"),
    )
    port: int = Field(
        default=8000, ge=0, le=65535, description="Port to bind.", json_schema_extra=_cli("--port")
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, every route but /, /health, /healthz, /readyz needs it.",
    )
    max_concurrent_requests: int = Field(
        default=8, ge=1, le=1024, description="Requests that generate at once."
    )
    max_queued_requests: int = Field(
        default=32, ge=0, le=100_000, description="Requests that wait for a place; beyond: 429."
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, le=86_400, description="Longest a request may generate, in seconds."
    )
    queue_timeout_s: float = Field(
        default=120.0, gt=0, le=86_400, description="Longest a request may wait in the queue."
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0, le=3600, description="SSE comment interval while a request waits."
    )
    shutdown_grace_s: float = Field(
        default=20.0, ge=0, le=3600, description="Time streams get to finish on SIGTERM."
    )
    keep_alive_timeout_s: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="Close a kept-alive connection that sends no new request for this long.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "Close a connection whose request line and headers have not all arrived this long "
            "after it opened or after its last response (idle and slow-loris clients)."
        ),
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Answer 408 and close when a request body has not fully arrived this long "
        "after its headers.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, max_length=100, description="Allowed CORS origins (never '*')."
    )
    warmup: bool = Field(default=True, description="Run one short generation before ready.")
    model_aliases: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        max_length=100,
        description=(
            "Comma-separated model names the OpenAI routes accept besides the served model's "
            "own (for clients with a hard-coded name, e.g. gpt-4o-mini); any other is a 404."
        ),
    )

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _split_aliases(cls, value: Any) -> Any:
        """``a, b`` from the environment; a list or tuple as it is."""
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value


class UISettings(BaseSettings):
    """The Streamlit UI (``chatbot ui``)."""

    model_config = _BASE_CONFIG

    ui_port: int = Field(
        default=8501,
        ge=0,
        le=65535,
        description="Port of the UI.",
        json_schema_extra=_cli("--port"),
    )
    ui_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=255,
        description="Address of the UI.",
        json_schema_extra=_cli("--host"),
    )
    backend_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Backend URL: run the UI as the microservice frontend instead of in-process.",
        json_schema_extra=_cli("--backend"),
    )
    backend_api_key: SecretStr | None = Field(
        default=None, description="Key the UI sends to the backend (default: CHATBOT_API_KEY)."
    )
    ui_secrets_file: Path | None = Field(
        default=None,
        description="Streamlit's secrets.toml with the [auth] section for CHATBOT_AUTH=oidc "
        "(default: Streamlit's own places, ./.streamlit/secrets.toml then "
        "~/.streamlit/secrets.toml).",
    )


class AuthMode(StrEnum):
    """Where the user comes from (``CHATBOT_AUTH``): the UI, the backend and the terminal."""

    NONE = "none"
    OIDC = "oidc"
    HEADER = "header"


class AuthSettings(BaseSettings):
    """Who is signed in; the same settings for the UI, the backend and the terminal."""

    model_config = _BASE_CONFIG

    auth: AuthMode = Field(
        default=AuthMode.NONE,
        description=(
            "none: one local user (a laptop); oidc: sign in with an OpenID Connect provider; "
            "header: the user comes from a header set by an authenticating proxy."
        ),
    )
    oidc_issuer: str | None = Field(
        default=None,
        max_length=2048,
        description="oidc: the provider's issuer URL; the backend checks bearer tokens against "
        "its JWKS.",
    )
    oidc_audience: str | None = Field(
        default=None,
        max_length=1024,
        description="oidc: the audience bearer tokens must carry (usually the client id).",
    )
    auth_header: str = Field(
        default="X-Forwarded-Email",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9-]+$",
        description="header: the header that names the user.",
    )
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        max_length=100,
        description="header: comma-separated proxy addresses or networks (CIDR) whose header "
        "is honoured; from any other address it is ignored.",
    )
    service_key: SecretStr | None = Field(
        default=None,
        description="The UI's key to the backend: with it, and only with it, a request may "
        "name the user it acts for (X-Chatbot-User).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class LogSettings(BaseSettings):
    """How much the processes log; message text and keys are never logged at INFO or above."""

    model_config = _BASE_CONFIG

    log_level: str | None = Field(
        default=None,
        pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO; WARNING for chat).",
        json_schema_extra=_cli("--log-level"),
    )


def load(model: type[S], **overrides: Any) -> S:
    """Build settings from the environment plus explicit overrides, or fail with a clear message.

    The message names the environment variable and what it accepts, so a typo in a deployment
    fails at start and not at the first request.
    """
    explicit = {k: v for k, v in overrides.items() if v is not None}
    try:
        return model(**explicit)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            allowed = _allowed_values(model, field)
            hint = f" (allowed: {allowed})" if allowed else ""
            problems.append(f"CHATBOT_{field.upper()}: {err['msg']}{hint}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


def _allowed_values(model: type[BaseSettings], field: str) -> str:
    info = model.model_fields.get(field)
    if info is None:
        return ""
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return ", ".join(m.value for m in annotation)
    bounds = [
        f"{name} {getattr(meta, name)}"
        for meta in info.metadata
        for name in ("ge", "gt", "le", "lt", "min_length", "max_length")
        if getattr(meta, name, None) is not None
    ]
    return ", ".join(bounds)
