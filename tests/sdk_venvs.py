"""The official client SDKs the tests drive, each in its own virtualenv under .venvs/<name>
(they cannot share one: both Runware packages import as `runware`). Created on first use, under
a file lock so parallel test workers create each once; `prebuild` starts the missing ones at
the beginning of a run, side by side, so tests seldom wait for pip."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> pip requirement: the newest release of each client and the last of each older major
# line (checked 2026-12-04 on PyPI: openai 3.63.0 newest, 2.54.0 and 1.109.1 the last 2.x and
# 1.x; google-genai 3.6.1 newest, which generates only in Vertex mode, 2.34.0 and 1.75.0;
# wavespeed 2.0.5 and 1.0.14; runware-sdk 1.8.0 and runware 0.5.24 have one line each).
SDKS = {
    "wavespeed": "wavespeed==2.0.5",
    "wavespeed-1": "wavespeed==1.0.14",
    "openai": "openai>=3",  # the newest (3.x, on httpx2)
    "openai-2": "openai==2.54.0",
    "openai-1": "openai==1.109.1",  # the last 1.x (on httpx), still common with AIML
    "google-genai": "google-genai==1.75.0",
    "google-genai-2": "google-genai==2.34.0",
    "google-genai-3": "google-genai==3.6.1",
    "runware-sdk": "runware-sdk==1.8.0",
    "runware-legacy": "runware==0.5.24",
}


@contextmanager
def venv_lock(name: str) -> Iterator[None]:
    (ROOT / ".venvs").mkdir(exist_ok=True)
    with open(ROOT / ".venvs" / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sdk_python(name: str) -> Path:
    """The interpreter of the SDK's own venv, created (and the SDK installed) when absent; a
    failed install raises with pip's output."""
    venv = ROOT / ".venvs" / name
    python = venv / "bin" / "python"
    marker = venv / ".easel-ready"
    with venv_lock(name):
        if not _ready(name):
            pip = _install(venv, SDKS[name])
            if pip.returncode:
                raise RuntimeError(f"cannot install {SDKS[name]}: {pip.stderr[-2000:]}")
            marker.write_text(SDKS[name])
    return python


def _ready(name: str) -> bool:
    """The venv holds what SDKS asks for now (a changed pin makes it again)."""
    marker = ROOT / ".venvs" / name / ".easel-ready"
    return marker.exists() and marker.read_text() == SDKS[name]


def _install(venv: Path, requirement: str) -> subprocess.CompletedProcess[str]:
    """A fresh venv with `requirement` in it: through uv (a dev dependency) when present, which
    spends a tenth of pip's CPU time (the suite runs on two cores), else through pip."""
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                               requirement], capture_output=True, text=True, timeout=900)
    subprocess.run([str(uv), "venv", "-q", "--clear", "--python", sys.executable, str(venv)],
                   check=True, capture_output=True)
    links = [arg for path in os.environ.get("PIP_FIND_LINKS", "").split()
             for arg in ("--find-links", path)]  # wheels this machine keeps on disk, as pip
    # Bytecode at install, as pip does (with PYTHONDONTWRITEBYTECODE nothing else writes it).
    return subprocess.run([str(uv), "pip", "install", "-q", "--compile-bytecode", "--python",
                           str(venv / "bin" / "python"), *links, requirement],
                          capture_output=True, text=True, timeout=900)


def prebuild() -> list[threading.Thread]:
    """Start creating every missing SDK venv, in parallel threads (installs wait on the network
    and the disk more than on the CPU)."""
    missing = [n for n in SDKS if not _ready(n)]
    threads = [threading.Thread(target=_quietly, args=(n,), daemon=True) for n in missing]
    for thread in threads:
        thread.start()
    return threads


def _quietly(name: str) -> None:
    with contextlib.suppress(Exception):  # the test that needs it tries again and reports
        sdk_python(name)
