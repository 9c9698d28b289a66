"""Fixtures for the dialect suites: a live server with an API key, and the official SDKs, each
in its own virtualenv under .venvs/<name> (created once, reused across runs)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.server_harness import Server, make_server

__all__ = ["make_server"]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).parent / "clients"
KEY = "test-key"

# name -> pip requirement: the versions protocols.md §8 was written against, and the newest
# release of each (checked 2026-12-01: wavespeed 2.0.5, runware-sdk 1.8.0 and openai are
# already the newest; google-genai 3.6.1 is the newest, and generates only in Vertex mode).
SDKS = {
    "wavespeed": "wavespeed==2.0.5",
    "openai": "openai>=1.99",
    "google-genai": "google-genai==1.30.0",
    "google-genai-3": "google-genai==3.6.1",
    "runware-sdk": "runware-sdk==1.8.0",
}


def sdk_python(name: str) -> Path:
    """The interpreter of the SDK's own venv, created (and the SDK installed) when absent.
    A file lock makes parallel test workers create each venv once."""
    venv = ROOT / ".venvs" / name
    python = venv / "bin" / "python"
    marker = venv / ".easel-ready"
    with venv_lock(name):
        if not marker.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", SDKS[name]], check=True,
                           timeout=600)
            marker.write_text(SDKS[name])
    return python


@contextmanager
def venv_lock(name: str) -> Iterator[None]:
    (ROOT / ".venvs").mkdir(exist_ok=True)
    with open(ROOT / ".venvs" / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def sdks() -> dict[str, Path]:
    return {name: sdk_python(name) for name in SDKS}


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the dialect suites: small sizes, one API key."""
    srv = Server(tmp_path_factory.mktemp("easel-dialects"), EASEL_API_KEYS=KEY).start()
    yield srv
    srv.stop()


def run_client(python: Path, script: str, spec: dict[str, Any], timeout: float = 180) -> Any:
    """Run clients/<script> in an SDK venv; it prints one JSON line as its last output."""
    proc = subprocess.run(
        [str(python), str(CLIENTS / script), json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])
