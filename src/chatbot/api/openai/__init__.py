"""The OpenAI-compatible API: protocol (types), serving (logic) and router (HTTP only)."""
