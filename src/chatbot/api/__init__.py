"""The FastAPI backend of the microservices deployment: ``create_app`` builds it."""

from chatbot.api.app import create_app

__all__ = ["create_app"]
