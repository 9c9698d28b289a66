"""The server's secret across processes: a process whose job store is shared between machines
(anything but SQLite) refuses to start without EASEL_SECRET_KEY, instead of making a secret of
its own that no other process knows (webhook secrets would depend on which process answered,
an id one process signed would be unknown to the next). One machine on SQLite still makes its
own and keeps it in the data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from easel.runtime.serve import StartRefused, check_can_serve
from easel.services.access.secrets import server_secret
from easel.settings import Settings
from tests.server_harness import free_port

# Nothing listens there: the refusal comes before any connection is tried.
SHARED_STORE = "postgresql://easel@127.0.0.1:9/easel"


def test_easel_serve_on_a_shared_store_refuses_to_start_without_the_secret(
    tmp_path: Path,
) -> None:
    base = {**os.environ, "EASEL_DATABASE": SHARED_STORE, "EASEL_API_KEYS": "a-key",
            "EASEL_PORT": str(free_port()), "EASEL_CONFIG": ""}
    base.pop("EASEL_SECRET_KEY", None)
    # Unset, and left blank as a copied example file leaves it: both refused.
    for env in (base, {**base, "EASEL_SECRET_KEY": ""}):
        refused = subprocess.run(
            [sys.executable, "-m", "easel.cli", "serve", "--no-worker", "--data-dir",
             str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert "EASEL_SECRET_KEY is not set" in refused.stderr
        assert "openssl rand -hex 32" in refused.stderr
        assert not (tmp_path / "secret.key").exists()  # no secret of its own was made


def test_no_process_on_a_shared_store_makes_a_secret_of_its_own(tmp_path: Path) -> None:
    shared = Settings(data_dir=tmp_path, database=SHARED_STORE, port=free_port())
    with pytest.raises(StartRefused, match="EASEL_SECRET_KEY"):
        check_can_serve(shared, insecure_no_auth=False)
    with pytest.raises(ValueError, match="EASEL_SECRET_KEY"):
        server_secret(shared)  # built without the CLI's check: refused too
    assert not (tmp_path / "secret.key").exists()
    given = shared.model_copy(update={"secret_key": "one-secret-for-every-process"})
    check_can_serve(given, insecure_no_auth=False)
    assert server_secret(given) == b"one-secret-for-every-process"


def test_one_machine_on_sqlite_makes_and_keeps_its_own_secret(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path, port=free_port())
    check_can_serve(embedded, insecure_no_auth=False)
    first = server_secret(embedded)
    assert len(first) == 64 and server_secret(embedded) == first  # kept, not made anew
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
