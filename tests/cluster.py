"""`easel worker` processes for tests and benchmarks of many processes (tests/faults,
bench/scale_out.py), each with its own data dir, as on a machine of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Workers:
    """`easel worker` processes, each with its own data dir."""

    def __init__(self, root: Path, env: dict[str, Any], command: list[str] | None = None) -> None:
        self.root, self.env = root, env
        # what runs after `python`: `easel worker`, or tests/serve.py's with a test engine
        self.command = command or ["-m", "easel.cli", "worker"]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        data = self.root / f"worker{n}"
        data.mkdir(parents=True)
        env = {**os.environ, **{k: str(v) for k, v in self.env.items()},
               "EASEL_DATA_DIR": str(data)}
        with open(self.root / f"worker{n}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, *self.command], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [p.read_text() for p in self.root.glob("worker*.log")]
            if len(logs) == len(self.procs) and all("ready: worker" in t for t in logs):
                return
            time.sleep(0.2)
        raise TimeoutError(self.logs())

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.root.glob("worker*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
