"""A loopback webhook/upload receiver for tests and the soak: records every request and answers
from a per-path script (statuses in order, the last repeated), or with a delay to force timeouts."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass
class Receiver:
    port: int = 0
    scripts: dict[str, list[int]] = field(default_factory=dict)
    hang: dict[str, float] = field(default_factory=dict)
    fail_ratio: float = 0.0  # paths without a script: this share of answers are 500
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?")[0]
                status = receiver.answer(path)
                delay = receiver.hang.get(path)
                if delay:
                    time.sleep(delay)
                with receiver.lock:
                    receiver.hits.append(Hit(self.command, path, dict(self.headers.items()),
                                             body, time.monotonic(), status))
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/target")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def answer(self, path: str) -> int:
        with self.lock:
            script = self.scripts.get(path)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        if self.fail_ratio and random.random() < self.fail_ratio:
            return 500
        return 200

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [hit for hit in self.hits if hit.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.at(path)
            if len(hits) >= count:
                return hits
            time.sleep(0.05)
        raise TimeoutError(f"{path}: {len(self.at(path))} of {count} requests")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
