"""The job store's schema migrations (Alembic), run by `easel.store.schema.create`."""
