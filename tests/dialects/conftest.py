"""Fixtures for the dialect suites: a live server with an API key, and the official SDKs, each
in its own virtualenv under .venvs/<name> (created once, reused across runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sdk_clients import run_script
from tests.sdk_venvs import sdk_python
from tests.server_harness import Server, make_server

__all__ = ["make_server"]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).parent / "clients"
KEY = "test-key"

# The SDKs the dialect suites drive (tests/sdk_venvs.py has every SDK venv).
DIALECT_SDKS = ("wavespeed", "wavespeed-1", "openai", "openai-2", "openai-1", "google-genai",
                "google-genai-2", "google-genai-3", "runware-sdk")


@pytest.fixture(scope="session")
def sdks() -> dict[str, Path]:
    return {name: sdk_python(name) for name in DIALECT_SDKS}


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the dialect suites: small sizes, one API key."""
    srv = Server(tmp_path_factory.mktemp("easel-dialects"), EASEL_API_KEYS=KEY).start()
    yield srv
    srv.stop()


def run_client(python: Path, script: str, spec: dict[str, Any], timeout: float = 180) -> Any:
    """Run clients/<script> in an SDK venv (tests/sdk_clients.py); it prints one JSON line as
    its last output."""
    proc = run_script(python, CLIENTS / script, spec, timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])
