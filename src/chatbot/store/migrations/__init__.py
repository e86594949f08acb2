"""Alembic migrations, run programmatically by :func:`chatbot.store.migrate.upgrade`."""
