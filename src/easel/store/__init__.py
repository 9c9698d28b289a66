"""Durable state: the job store (SQLAlchemy Core; SQLite by default, PostgreSQL-ready)."""

from easel.store.jobs import (
    InsertResult,
    JobStore,
    NewJob,
    QueueRules,
    ReadyImage,
    StoredImage,
)
from easel.store.keys import KeyStore
from easel.store.loras import LoraStore
from easel.store.outbox import DeliveryStore

__all__ = ["DeliveryStore", "InsertResult", "JobStore", "KeyStore", "LoraStore", "NewJob",
           "QueueRules", "ReadyImage", "StoredImage"]
