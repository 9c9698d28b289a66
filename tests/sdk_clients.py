"""The official SDKs' client scripts, run in long-lived interpreters of their venvs.

A test drives an SDK through a script (tests/dialects/clients, tests/runware/clients) that takes
a JSON spec as its argument and prints its result. Started as a fresh process per call, most of
each call's CPU was the interpreter's start and the SDK's import (a third to two thirds of a
second, some 250 calls a run on two cores). Here each SDK venv keeps interpreters
(tests/sdk_runner.py) that run one script at a time, as `python script spec` would, with the SDK
imported once: every call still goes through the SDK, its own client object, over real HTTP.
Calls at the same time get interpreters of their own.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

RUNNER = Path(__file__).with_name("sdk_runner.py")


class Interpreter:
    """One runner process of one venv, and the lines it has answered."""

    def __init__(self, python: Path) -> None:
        # What the SDKs print outside a call; closed with the interpreter.
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python), str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        self.replies: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.replies.put(line)
        self.replies.put("")  # the process ended

    def run(self, script: Path, argv: list[str], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"script": str(script), "argv": argv}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise subprocess.TimeoutExpired([str(script), *argv], timeout) from None
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"the runner of {script.name} ended: "
                               f"{self.log.read().decode(errors='replace')[-3000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


_idle: dict[Path, list[Interpreter]] = {}
_lock = threading.Lock()


def _take(python: Path) -> Interpreter:
    with _lock:
        waiting = _idle.setdefault(python, [])
        if waiting:
            return waiting.pop()
    return Interpreter(python)


def _give_back(python: Path, interpreter: Interpreter) -> None:
    with _lock:
        _idle.setdefault(python, []).append(interpreter)


def run_script(python: Path, script: Path, spec: dict[str, Any],
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """What `python script json(spec)` would return (its exit status, output and errors), run
    in an interpreter of that venv that has run other scripts before."""
    interpreter = _take(python)
    argv = [json.dumps(spec)]
    try:
        reply = interpreter.run(script, argv, timeout)
    except BaseException:
        interpreter.close()
        raise
    _give_back(python, interpreter)
    return subprocess.CompletedProcess([str(python), str(script), *argv], reply["code"],
                                       reply["stdout"], reply["stderr"])


@atexit.register
def _close_all() -> None:
    with _lock:
        for interpreters in _idle.values():
            for interpreter in interpreters:
                interpreter.close()
        _idle.clear()
