"""Runware's official Python SDKs, unchanged, against a live easel (only the URL differs).

Both packages import as `runware`, so each lives in its own virtual environment under .venvs/
(created on first use from PyPI) and runs as a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server_harness import Server

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).parent / "clients"
VENVS = {"runware-legacy": "runware==0.5.24", "runware-sdk": "runware-sdk==1.8.0"}


def _venv(name: str) -> Path:
    python = ROOT / ".venvs" / name / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(python.parents[1])], check=True)
    if subprocess.run([str(python), "-c", "import runware"], capture_output=True).returncode:
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", VENVS[name]],
                             capture_output=True, text=True)
        if pip.returncode:
            pytest.skip(f"cannot install {VENVS[name]}: {pip.stderr[-500:]}")
    return python


@pytest.fixture(scope="session")
def legacy() -> Path:
    return _venv("runware-legacy")


@pytest.fixture(scope="session")
def sdk() -> Path:
    return _venv("runware-sdk")


def _run(python: Path, script: str, args: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([str(python), str(CLIENTS / script), json.dumps(args)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _check_images(images: list[dict[str, Any]], count: int) -> None:
    assert len(images) == count
    assert len({i["imageUUID"] for i in images}) == count  # no duplicates
    for image in images:
        assert httpx.get(image["imageURL"]).status_code == 200


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_legacy_websocket_sdk(server: Server, legacy: Path, mode: str) -> None:
    out = _run(legacy, "legacy_ws.py",
               {"url": server.ws_url, "mode": mode, "numberResults": 2, "seed": 5})
    _check_images(out["images"], 2)
    assert [i["seed"] for i in out["images"]] == [5, 6]
    assert all(i["cost"] == 0.02 for i in out["images"])
    if mode == "async":
        assert out["ack"].get("imageUUID") is None and out["ack"]["taskUUID"]


def test_legacy_sdk_base64(server: Server, legacy: Path) -> None:
    out = _run(legacy, "legacy_ws.py", {"url": server.ws_url, "outputType": "base64Data"})
    assert out["images"][0]["imageBase64Data"]


@pytest.mark.parametrize(("transport", "delivery"), [
    ("rest", "async"), ("rest", "sync"), ("websocket", "async"), ("websocket", "sync"),
])
def test_new_sdk(server: Server, sdk: Path, transport: str, delivery: str) -> None:
    url = server.url + "/v1" if transport == "rest" else server.ws_url
    task: dict[str, Any] = {"numberResults": 2, "seed": 9}
    if delivery == "sync":
        task["deliveryMethod"] = "sync"  # the SDK's default is async with polling
    out = _run(sdk, "sdk.py", {"transport": transport, "url": url, "task": task})
    _check_images(out["images"], 2)
    assert sorted(i["seed"] for i in out["images"]) == [9, 10]


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_new_sdk_sees_validation_errors(server: Server, sdk: Path, transport: str) -> None:
    url = server.url + "/v1" if transport == "rest" else server.ws_url
    out = _run(sdk, "sdk.py", {"transport": transport, "url": url, "task": {"width": 65}})
    assert out["error"]["parameter"] == "width"
    assert "not a size" in out["error"]["message"]
