"""API keys: created by the CLI, stored only as hashes, checked by every dialect, revocable;
and a server that would listen beyond loopback with no keys refuses to start."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.server_harness import Server, free_port, inference


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easel.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60)


def calls(srv: Server, key: str | None) -> dict[str, int]:
    """One request per dialect (and per way of sending a key); their statuses."""
    bearer = {"Authorization": f"Bearer {key}"} if key else {}
    auth_task = [{"taskType": "authentication", "apiKey": key}] if key else []
    google = {"x-goog-api-key": key} if key else {}
    return {
        "runware-bearer": httpx.post(srv.url + "/v1", json=[inference()], headers=bearer,
                                     timeout=60).status_code,
        "runware-task": httpx.post(srv.url + "/v1", json=[*auth_task, inference()],
                                   timeout=60).status_code,
        "wavespeed": httpx.post(srv.url + "/api/v3/google/imagen4-fast", json={"prompt": "x"},
                                headers=bearer, timeout=60).status_code,
        "openai": httpx.post(srv.url + "/v1/images/generations",
                             json={"prompt": "x", "model": "imagen-4.0-fast-generate-001"},
                             headers=bearer, timeout=60).status_code,
        "google": httpx.post(srv.url + "/v1beta/models/imagen-4.0-fast-generate-001:predict",
                             json={"instances": [{"prompt": "x"}]}, headers=google,
                             timeout=60).status_code,
    }


# What each dialect answers a missing or wrong key with: 401, but Google's 400 API_KEY_INVALID.
REFUSED = {"runware-bearer": 401, "runware-task": 401, "wavespeed": 401, "openai": 401,
           "google": 400}


def test_keys_from_the_store_guard_every_dialect(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    srv.data_dir.mkdir(parents=True)
    created = cli(srv.data_dir, "keys", "create", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("easel_")
    srv.start()
    assert calls(srv, None) == REFUSED
    assert calls(srv, key[:-1] + ("A" if key[-1] != "A" else "B")) == REFUSED
    assert set(calls(srv, key).values()) == {200}

    dump = b"".join(p.read_bytes() for p in srv.data_dir.glob("easel.db*"))
    assert key.encode() not in dump and key.split("_", 2)[2].encode() not in dump

    listed = cli(srv.data_dir, "keys", "list").stdout
    key_id = key.split("_")[1]
    assert key_id in listed and "active" in listed and key not in listed
    assert cli(srv.data_dir, "keys", "revoke", key_id).returncode == 0
    time.sleep(1.2)
    assert calls(srv, key) == REFUSED
    assert "revoked" in cli(srv.data_dir, "keys", "list").stdout


def test_serving_beyond_loopback_needs_keys_or_an_explicit_flag(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "easel.cli", "serve", "--host", "0.0.0.0", "--port",
               str(free_port()), "--data-dir", str(tmp_path)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--insecure-no-auth" in refused.stderr
    proc = subprocess.Popen([*command, "--insecure-no-auth"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert proc.poll() is None  # it runs when told to
    finally:
        proc.terminate()
        proc.wait(30)


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
