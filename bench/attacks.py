"""Server memory under two attacks (issue: hardening), before and after the fixes.

- polling: one Runware REST body of N `getResponse` tasks for one completed task with
  base64 output (the reply used to hold N copies of the images);
- big receiver reply: a webhook receiver that answers 200 with a huge body (the server used to
  read it whole into memory).

Each prints the server's peak RSS (psutil, sampled every 50 ms) during the attack. Loopback only.

    .venv/bin/python -m bench.attacks --polls 400 --reply-mib 1024
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from tests.server_harness import Server


class PeakRSS:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, name: str) -> str:
        mib = 1024 * 1024
        return (f"{name}: RSS {self.base / mib:.0f} MiB before, peak {self.peak / mib:.0f} MiB "
                f"(+{(self.peak - self.base) / mib:.0f} MiB)")


def big_reply_receiver(size: int) -> tuple[int, Callable[[], int]]:
    """A loopback HTTP server answering every request with 200 and `size` bytes of body."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent = {"requests": 0}

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            sent["requests"] += 1
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            chunk = b"x" * (1 << 20)
            try:
                for _ in range(size // len(chunk)):
                    conn.sendall(chunk)
            except OSError:
                return  # the server hung up early: what a careful client does

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], lambda: sent["requests"]


def polling_attack(server: Server, polls: int) -> str:
    task_id = str(uuid.uuid4())
    done = server.post([{"taskType": "imageInference", "taskUUID": task_id, "model": "google:2@3",
                         "positivePrompt": "a fox", "width": 1024, "height": 1024,
                         "numberResults": 4, "outputType": "base64Data"}])
    done.raise_for_status()
    body = [{"taskType": "getResponse", "taskUUID": task_id}] * polls
    with PeakRSS(server.proc.pid) as rss:  # type: ignore[union-attr]
        reply = httpx.post(server.url + "/v1", json=body, timeout=600)
    print(f"  reply: HTTP {reply.status_code}, {len(reply.content) / 1e6:.1f} MB")
    return rss.report(f"polling attack ({polls} getResponse tasks)")


def big_reply_attack(server: Server, size: int) -> str:
    """On a server of 64x64 images, warmed by one job first: what remains is the reply's."""
    port, requests = big_reply_receiver(size)
    server.post([{"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                  "model": "google:2@3", "positivePrompt": "warm-up", "width": 64,
                  "height": 64}]).raise_for_status()
    with PeakRSS(server.proc.pid) as rss:  # type: ignore[union-attr]
        server.post([{"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                      "model": "google:2@3", "positivePrompt": "a fox", "width": 64,
                      "height": 64, "webhookURL": f"http://127.0.0.1:{port}/hook"}])
        deadline = time.monotonic() + 120
        while requests() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(20)  # the delivery reads (or not) the receiver's reply
    return rss.report(f"webhook receiver answering {size >> 20} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=400)
    parser.add_argument("--reply-mib", type=int, default=1024)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="easel-attacks-"))
    attacks: list[tuple[str, Callable[[Server], str]]] = [
        ("polling", lambda srv: polling_attack(srv, args.polls)),
        ("reply", lambda srv: big_reply_attack(srv, args.reply_mib << 20)),
    ]
    for name, attack in attacks:  # a fresh server each: one attack's memory hides the next's
        server = Server(data / name, small=name == "reply", EASEL_ALLOW_LOOPBACK_URLS=1,
                        EASEL_RATE_LIMIT_BURST=100000)
        server.start()
        try:
            print(attack(server), flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
