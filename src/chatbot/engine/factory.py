"""Building the engine that the settings ask for."""

from __future__ import annotations

import asyncio

from chatbot.config import EngineKind, EngineSettings
from chatbot.domain import GenerationParams, Message
from chatbot.engine.base import Engine, collect
from chatbot.errors import ConfigurationError


def create_engine(settings: EngineSettings) -> Engine:
    """Construct (not load) the engine; loading is the caller's choice of moment."""
    match settings.engine:
        case EngineKind.OPENVINO:
            from chatbot.engine.openvino_engine import OpenVINOEngine, _genai

            _genai()  # a clear error now if the runtime is missing
            return OpenVINOEngine(settings)
        case EngineKind.TRANSFORMERS:
            from chatbot.engine.transformers_engine import TransformersEngine

            return TransformersEngine(settings)
        case EngineKind.LLAMACPP:
            try:
                from chatbot.engine.llamacpp_engine import LlamaCppEngine
            except ImportError as exc:
                raise ConfigurationError(
                    "CHATBOT_ENGINE=llamacpp needs the llamacpp extra: "
                    "pip install 'chatbot[llamacpp]'"
                ) from exc
            return LlamaCppEngine(settings)
        case EngineKind.OPENAI:
            from chatbot.engine.openai_engine import OpenAIEngine

            return OpenAIEngine(settings)
        case EngineKind.SCRIPTED:
            from chatbot.engine.scripted_engine import ScriptedEngine

            return ScriptedEngine(settings)


async def warm_up(engine: Engine) -> None:
    """Load the model and run one tiny generation, so the first user does not pay for it."""
    await asyncio.to_thread(engine.load)
    await collect(engine.generate([Message.user("Hi")], GenerationParams(max_new_tokens=2)))
