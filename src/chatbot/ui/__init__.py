"""The Streamlit UI: small pages and components that receive a ``ChatServiceProtocol``.

Nothing here imports the engine or the store; :mod:`chatbot.ui.wiring` picks the transport.
"""
