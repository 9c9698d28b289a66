"""One module a schema revision, oldest first; `alembic revision` writes new ones here."""
