"""chatbot: one LLM chatbot, deployable as a Streamlit monolith or as FastAPI microservices."""

__version__ = "0.1.0"
