"""The LoRA allow-list in the job store: every API process and worker reads the same rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from easel.domain.lora import Adapter
from easel.store.schema import loras


class LoraStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, adapter: Adapter) -> bool:
        """False when the name is taken (names are never silently replaced)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(loras.insert().values(**_row(adapter)))
        except IntegrityError:
            return False
        return True

    def get(self, name: str) -> Adapter | None:
        """The adapter called `name`, or named by one of its aliases."""
        with self.engine.connect() as conn:
            row = conn.execute(loras.select().where(loras.c.name == name)).mappings().first()
        if row is not None:
            return _adapter(row)
        return next((a for a in self.list() if name in a.aliases), None)

    def list(self) -> list[Adapter]:
        with self.engine.connect() as conn:
            rows = conn.execute(loras.select().order_by(loras.c.name)).mappings().all()
        return [_adapter(row) for row in rows]

    def remove(self, name: str) -> Adapter | None:
        """The removed adapter, or None when there was none of that name."""
        with self.engine.begin() as conn:
            row = conn.execute(loras.select().where(loras.c.name == name)).mappings().first()
            if row is None:
                return None
            conn.execute(loras.delete().where(loras.c.name == name))
        return _adapter(row)

    def digest_in_use(self, digest: str) -> bool:
        """Whether another allow-listed name still holds these bytes (then they stay)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(loras.c.name).where(loras.c.sha256 == digest)
                                .limit(1)).first() is not None


def _row(adapter: Adapter) -> dict[str, Any]:
    return {"name": adapter.name, "base": adapter.base, "sha256": adapter.digest,
            "size_bytes": adapter.size_bytes, "source": adapter.source, "scale": adapter.scale,
            "trigger": adapter.trigger, "license": adapter.license,
            "aliases": list(adapter.aliases), "layout": adapter.layout, "rank": adapter.rank,
            "added_at": adapter.added_at}


def _adapter(row: RowMapping) -> Adapter:
    return Adapter(name=row["name"], base=row["base"], digest=row["sha256"],
                   size_bytes=int(row["size_bytes"]), source=row["source"],
                   scale=float(row["scale"]), trigger=row["trigger"], license=row["license"],
                   aliases=tuple(row["aliases"] or ()), layout=row["layout"], rank=row["rank"],
                   added_at=float(row["added_at"]))
