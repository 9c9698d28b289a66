"""API keys beyond the routes (those are in tests/edge/test_keys_and_limits.py): a server that
would listen beyond loopback with no keys refuses to start, and an environment key's identity
does not hang on its place in the list."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.server_harness import free_port


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easel.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60)


def test_serving_beyond_loopback_needs_keys_or_an_explicit_flag(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "easel.cli", "serve", "--host", "0.0.0.0", "--port",
               str(port), "--data-dir", str(tmp_path)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--insecure-no-auth" in refused.stderr
    proc = subprocess.Popen([*command, "--insecure-no-auth", "--no-worker"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # it runs when told to
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)


def test_every_page_may_call_only_with_keys(tmp_path: Path) -> None:
    """EASEL_CORS_ORIGINS=* with no keys would let any site a user visits spend the machine:
    refused before serving (the check itself, called directly)."""
    import pytest

    from easel.runtime.serve import StartRefused, check_can_serve
    from easel.settings import Settings

    anyone = Settings(data_dir=tmp_path / "a", cors_origins=["*"], port=free_port())
    with pytest.raises(StartRefused, match="EASEL_CORS_ORIGINS"):
        check_can_serve(anyone, insecure_no_auth=False)
    check_can_serve(Settings(data_dir=tmp_path / "b", cors_origins=["*"], api_keys=["k"],
                             port=free_port()), insecure_no_auth=False)
    named = Settings(data_dir=tmp_path / "c", cors_origins=["https://app.example/"],
                     port=free_port())
    check_can_serve(named, insecure_no_auth=False)  # a named site is the operator's choice
    assert named.cors_origins == ["https://app.example"]
    with pytest.raises(ValueError, match="not an origin"):
        Settings(data_dir=tmp_path / "d", cors_origins=["https://app.example/page"])


def test_an_environment_keys_identity_does_not_depend_on_its_place(tmp_path: Path) -> None:
    """Removing or reordering EASEL_API_KEYS must not hand one key's jobs (or its WaveSpeed
    webhook secret) to the key that takes its place in the list."""
    from easel.services.access.keys import KeyRing
    from easel.store import JobStore, KeyStore

    store = KeyStore(JobStore(f"sqlite:///{tmp_path / 'k.db'}").engine)
    before = KeyRing(["key-a", "key-b"], store)
    after = KeyRing(["key-b"], store)  # key-a removed: key-b is first now
    assert before.principal("key-b") == after.principal("key-b")
    assert before.principal("key-a") != after.principal("key-b")
    assert after.principal("key-a") is None
