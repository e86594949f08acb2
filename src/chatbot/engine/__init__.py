"""Model runtimes behind one protocol."""

from chatbot.engine.base import Engine, Generation, GenerationOutcome
from chatbot.engine.factory import create_engine, warm_up

__all__ = ["Engine", "Generation", "GenerationOutcome", "create_engine", "warm_up"]
