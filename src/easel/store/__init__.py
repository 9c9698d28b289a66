"""Durable state: the job store (SQLAlchemy Core; SQLite by default, PostgreSQL-ready)."""

from easel.store.jobs import JobStore, NewJob, ReadyImage, StoredImage

__all__ = ["JobStore", "NewJob", "ReadyImage", "StoredImage"]
