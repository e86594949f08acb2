"""Model runtimes behind one protocol: ``generate()`` streams :class:`Chunk` objects."""

from chatbot.engine.base import Chunk, Engine, collect
from chatbot.engine.factory import create_engine, warm_up

__all__ = ["Chunk", "Engine", "collect", "create_engine", "warm_up"]
