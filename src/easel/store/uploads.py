"""Images callers uploaded to name later (Runware's imageUpload), in the job store: every API
process and worker reads the same rows. Each belongs to the caller that sent it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from easel.store.schema import uploads


@dataclass(frozen=True)
class Upload:
    image_id: str
    caller: str
    ext: str
    digest: str
    width: int
    height: int
    size_bytes: int
    created_at: float
    expires_at: float


class UploadStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, upload: Upload) -> None:
        with self.engine.begin() as conn:
            conn.execute(uploads.insert().values(
                image_id=upload.image_id, caller=upload.caller, ext=upload.ext,
                sha256=upload.digest, width=upload.width, height=upload.height,
                size_bytes=upload.size_bytes, created_at=upload.created_at,
                expires_at=upload.expires_at, deleted=False))

    def get(self, image_id: str, now: float) -> Upload | None:
        """The upload, unless deleted or past its lifetime."""
        with self.engine.connect() as conn:
            row = conn.execute(uploads.select().where(
                uploads.c.image_id == image_id, uploads.c.deleted.is_(False),
                uploads.c.expires_at > now)).mappings().first()
        return None if row is None else _upload(row)

    def used(self, image_id: str, expires_at: float) -> None:
        """A request named it: it lives on from now (Runware keeps an upload 30 days from its
        last use)."""
        with self.engine.begin() as conn:
            conn.execute(uploads.update().where(uploads.c.image_id == image_id,
                                                uploads.c.expires_at < expires_at)
                         .values(expires_at=expires_at))

    def expired(self, now: float, limit: int = 500) -> list[tuple[str, str]]:
        """(image id, extension) of uploads past their lifetime, not yet deleted."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(uploads.c.image_id, uploads.c.ext).where(
                uploads.c.deleted.is_(False), uploads.c.expires_at <= now).limit(limit)).all()
        return [(image_id, ext) for image_id, ext in rows]

    def mark_deleted(self, image_ids: Sequence[str]) -> None:
        if image_ids:
            with self.engine.begin() as conn:
                conn.execute(uploads.update().where(uploads.c.image_id.in_(list(image_ids)))
                             .values(deleted=True))


def _upload(row: RowMapping) -> Upload:
    return Upload(row["image_id"], row["caller"], row["ext"], row["sha256"], row["width"],
                  row["height"], row["size_bytes"], row["created_at"], row["expires_at"])
