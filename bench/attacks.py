"""Attacks on a real server (issues: hardening, #30), before and after the fixes.

- polling: one Runware REST body of N `getResponse` tasks for one completed task with
  base64 output (the reply used to hold N copies of the images);
- big receiver reply: a webhook receiver that answers 200 with a huge body (the server used to
  read it whole into memory);
- unread replies: N raw sockets each send a WaveSpeed result poll of a job with base64 output
  (one 1024x1024 PNG of random pixels: about 4 MiB of base64) and never read the reply (each
  used to stay whole in the server's memory); meanwhile a second caller polls its own job;
- queue monopoly: one key queues N tasks of 20 images at once, then another key sends a
  one-image request (bench/fair_share.py: this and the cancel loop, with their options).

The memory attacks print the server's peak RSS (psutil, sampled every 50 ms), the monopoly one
the victim's latency. Loopback only. The attacks given as options run; with none, all four with
their defaults.

    .venv/bin/python -m bench.attacks --polls 400 --reply-mib 1024
    .venv/bin/python -m bench.attacks --unread 300
    .venv/bin/python -m bench.attacks --monopoly 100
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

from bench.fair_share import fair_server, monopoly, on_fresh_server


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


ATTACKER, VICTIM = "attacker-key", "victim-key"


def wavespeed_base64_job(server: Server, key: str) -> str:
    """A finished WaveSpeed job of one 1024x1024 PNG with base64 output: its prediction id."""
    reply = httpx.post(server.url + "/api/v3/google/imagen4-fast", timeout=120,
                       headers={"Authorization": f"Bearer {key}"},
                       json={"prompt": "a fox", "aspect_ratio": "1:1", "output_format": "png",
                             "enable_base64_output": True, "enable_sync_mode": True})
    data = reply.raise_for_status().json()["data"]
    assert data["status"] == "completed", data
    return str(data["id"])


def unread_request(port: int, path: str, key: str | None = None) -> socket.socket:
    """A raw socket that sends `GET path` and never reads a byte of the reply."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel buffers little
    sock.connect(("127.0.0.1", port))
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode())
    return sock


def unread_poll(port: int, prediction: str, key: str) -> socket.socket:
    """A raw socket that asks for the prediction's result and never reads it."""
    return unread_request(port, f"/api/v3/predictions/{prediction}/result", key)


def wait_until_idle(pid: int, timeout: float = 300) -> None:
    """Until the server has used no CPU for half a second: every request it took is handled."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    used = sum(process.cpu_times()[:2])
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(process.cpu_times()[:2])
        if now - used < 0.01:
            return
        used = now


def unread_attack(server: Server, sockets: int) -> str:
    attacked, own = wavespeed_base64_job(server, ATTACKER), wavespeed_base64_job(server, VICTIM)
    pid = server.proc.pid  # type: ignore[union-attr]
    with PeakRSS(pid) as rss:
        opened = [unread_poll(server.port, attacked, ATTACKER) for _ in range(sockets)]
        started = time.perf_counter()
        victim = httpx.get(f"{server.url}/api/v3/predictions/{own}/result", timeout=600,
                           headers={"Authorization": f"Bearer {VICTIM}"})
        waited = time.perf_counter() - started
        wait_until_idle(pid)
        held = psutil.Process(pid).memory_info().rss
    print(f"  victim's poll: HTTP {victim.status_code}, {len(victim.content) / 1e6:.1f} MB in "
          f"{waited * 1000:.0f} ms; RSS with the sockets still open: {held / (1 << 20):.0f} MiB")
    for sock in opened:
        sock.close()
    return rss.report(f"unread replies ({sockets} sockets, a 4 MiB base64 reply each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, help="getResponse tasks in one body (400)")
    parser.add_argument("--reply-mib", type=int, help="the receiver's reply (1024 MiB)")
    parser.add_argument("--unread", type=int, help="sockets that never read (300)")
    parser.add_argument("--monopoly", type=int,
                        help="20-image tasks one key queues at once before another key's "
                             "one-image request (100; bench/fair_share.py has the cancel loop)")
    args = parser.parse_args()
    chosen = {name for name in ("polls", "reply_mib", "unread", "monopoly")
              if getattr(args, name)}
    defaults = {"polls": 400, "reply_mib": 1024, "unread": 300, "monopoly": 100}
    wanted = {name: getattr(args, name) or defaults[name] for name in chosen or defaults}
    data = Path(tempfile.mkdtemp(prefix="easel-attacks-"))
    attacks: list[tuple[str, Callable[[Server], str]]] = [
        ("polls", lambda srv: polling_attack(srv, wanted["polls"])),
        ("reply_mib", lambda srv: big_reply_attack(srv, wanted["reply_mib"] << 20)),
        ("unread", lambda srv: unread_attack(srv, wanted["unread"])),
        ("monopoly", lambda srv: monopoly(srv, wanted["monopoly"], 20)),
    ]
    for name, attack in attacks:  # a fresh server each: one attack's memory hides the next's
        if name not in wanted:
            continue
        keys = {"EASEL_API_KEYS": f"{ATTACKER},{VICTIM}"} if name == "unread" else {}
        server = fair_server(data / name, 0.05) if name == "monopoly" else Server(
            data / name, small=name == "reply_mib", EASEL_ALLOW_LOOPBACK_URLS=1,
            EASEL_RATE_LIMIT_BURST=100000, **keys)
        print(on_fresh_server(server, attack), flush=True)


if __name__ == "__main__":
    main()
