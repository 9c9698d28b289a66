"""In-process services on a real SQLite store with the fake engine: the job service, the
worker (driven by run_until_empty, no threads) and delivery, deterministic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from easel.domain.request import ImageFormat
from easel.domain.submission import (
    Caller,
    DeliverySettings,
    ExactSize,
    GenerationInput,
    ModelChoice,
    Submission,
    WireNames,
)
from easel.runtime.build import build_runtime, dialects
from easel.runtime.process import Runtime
from easel.settings import Settings
from easel.worker import Worker
from tests.fakes import FakeEngine
from tests.server_harness import SMALL_SIZES

CALLER = Caller("test")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(SMALL_SIZES)
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "catalog_file": catalog,
                              "preload_models": [], "allow_loopback_urls": False}
    values.update(overrides)
    return Settings(**values)


class Core:
    """The runtime built as `easel serve` builds it, with the fake engine, not started."""

    def __init__(self, tmp_path: Path, engine: FakeEngine, **settings: Any) -> None:
        self.engine = engine
        self.settings = make_settings(tmp_path, **settings)
        self.runtime: Runtime = build_runtime(self.settings, dialects(), lambda: engine)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if "mode=ro" not in self.settings.database_url:  # a read-only store cannot be created
            self.runtime.store.create()
        worker = self.runtime.worker
        assert isinstance(worker, Worker)
        self.worker = worker


@pytest.fixture
def core(tmp_path: Path, database_url: str, request: pytest.FixtureRequest
         ) -> Callable[..., Core]:
    """Cores on SQLite (each in its own data dir) and, in a second run, on PostgreSQL (each on
    its own fresh database)."""
    made: list[Core] = []

    def make(engine: FakeEngine | None = None, **settings: Any) -> Core:
        if "database" not in settings and not database_url.startswith("sqlite"):
            settings["database"] = (database_url if not made
                                    else request.getfixturevalue("postgres").new_database())
            # One secret, as every process sharing a PostgreSQL store must be given.
            settings.setdefault("secret_key", "one-secret-for-every-process")
        built = Core(tmp_path / f"core{len(made)}", engine or FakeEngine(), **settings)
        made.append(built)
        return built

    yield make  # type: ignore[misc]
    for built in made:
        built.runtime.store.close()


def submission(
    prompt: str = "a red fox", *, n: int = 1, seed: int | None = None, task_id: str | None = None,
    negative: str | None = None, names: WireNames | None = None,
    delivery: DeliverySettings | None = None, caller: Caller = CALLER, model: str = "google:2@3",
    dialect: str = "test",
) -> Submission:
    generation = GenerationInput(
        ModelChoice(model), prompt, ExactSize(64, 64), num_images=n, negative_prompt=negative,
        seed=seed, output_format=ImageFormat.PNG,
    )
    return Submission(dialect, caller, generation, delivery or DeliverySettings(), task_id,
                      names or WireNames())
