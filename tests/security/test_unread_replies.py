"""Replies nobody reads (issue #30), against a real server over loopback: raw sockets ask for a
WaveSpeed result with base64 output (one 1024x1024 PNG of random pixels: about 4 MiB of base64)
and never read it. The server's memory stays within the caller's bound on replies in flight
(the rest are refused with 429 before they are built), another caller is answered meanwhile,
and the stalled connections are cut off at the stall deadline, which frees their bytes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import psutil
from bench.attacks import PeakRSS, unread_poll, unread_request, wavespeed_base64_job

from tests.server_harness import Server

MIB = 1024 * 1024
ATTACKER, VICTIM = "attacker-key", "victim-key"
SOCKETS = 40  # 40 x 4 MiB unread: +170 MiB and more on a server without the bound
PER_CALLER = 10 * MIB  # two of those replies
STALL_SECONDS = 2


def status_of(sock: socket.socket) -> int:
    """The status of the reply on `sock`, from its first bytes (the rest stays unread)."""
    sock.settimeout(60)
    head = sock.recv(12)
    return int(head.split()[1])


def open_ports(pid: int) -> set[int]:
    """The client ports of the server's open connections."""
    return {c.raddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr}


def wait_closed(pid: int, ports: set[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while open_ports(pid) & ports:
        assert time.monotonic() < deadline, "the server kept stalled connections open"
        time.sleep(0.1)


def read_all(sock: socket.socket) -> int:
    """Bytes left to read until the server's close (a reset counts as the end)."""
    got = 0
    try:
        while chunk := sock.recv(1 << 16):
            got += len(chunk)
    except ConnectionResetError:
        pass
    return got


def test_replies_nobody_reads_are_bounded_and_cut_off(make_server: Callable[..., Server]) -> None:
    srv = make_server(small=False, EASEL_API_KEYS=f"{ATTACKER},{VICTIM}",
                      EASEL_RATE_LIMIT_BURST=100000, EASEL_REPLY_BYTES_PER_CALLER=PER_CALLER,
                      EASEL_REPLY_STALL_SECONDS=STALL_SECONDS).start()
    assert srv.proc is not None
    attacked, own = wavespeed_base64_job(srv, ATTACKER), wavespeed_base64_job(srv, VICTIM)
    with PeakRSS(srv.proc.pid) as rss:
        sockets = [unread_poll(srv.port, attacked, ATTACKER) for _ in range(SOCKETS)]
        # Another caller's own large reply is answered, whole, while they wait.
        victim = httpx.get(f"{srv.url}/api/v3/predictions/{own}/result", timeout=60,
                           headers={"Authorization": f"Bearer {VICTIM}"})
        assert victim.status_code == 200 and len(victim.json()["data"]["outputs"][0]) > 4e6
        statuses = [status_of(sock) for sock in sockets]  # every request has been answered
    assert rss.peak - rss.base < 80 * MIB, rss.report("unread replies")
    # Two replies fit the caller's bound; the others were refused before they were built.
    assert sorted(statuses) == [200] * 2 + [429] * (SOCKETS - 2)
    stalled = [sock for sock, status in zip(sockets, statuses, strict=True) if status == 200]
    wait_closed(srv.proc.pid, {sock.getsockname()[1] for sock in stalled})
    for sock in stalled:  # cut off: far less than the 4 MiB reply ever arrives
        assert read_all(sock) < 1 * MIB
    for sock in sockets:
        sock.close()
    # Their bytes were freed with them: the attacker's next poll is sent.
    again = httpx.get(f"{srv.url}/api/v3/predictions/{attacked}/result", timeout=60,
                      headers={"Authorization": f"Bearer {ATTACKER}"})
    assert again.status_code == 200 and len(again.json()["data"]["outputs"][0]) > 4e6


def test_image_downloads_nobody_reads_hold_one_chunk_each(
    make_server: Callable[..., Server],
) -> None:
    """An image download is streamed from the store: one who never reads holds a chunk of it
    (64 KiB), not the file (3 MiB), and is cut off at the stall deadline."""
    srv = make_server(small=False, EASEL_RATE_LIMIT_BURST=100000,
                      EASEL_REPLY_STALL_SECONDS=STALL_SECONDS).start()
    assert srv.proc is not None
    done = httpx.post(f"{srv.url}/api/v3/google/imagen4-fast", timeout=120, json={
        "prompt": "a fox", "output_format": "png", "enable_sync_mode": True}).json()["data"]
    path = httpx.URL(done["outputs"][0]).path
    with PeakRSS(srv.proc.pid) as rss:
        sockets = [unread_request(srv.port, path) for _ in range(SOCKETS * 2)]
        assert [status_of(sock) for sock in sockets] == [200] * len(sockets)
        assert httpx.get(srv.url + path, timeout=60).status_code == 200  # others are served
    assert rss.peak - rss.base < 60 * MIB, rss.report("unread image downloads")
    wait_closed(srv.proc.pid, {sock.getsockname()[1] for sock in sockets})
    for sock in sockets:
        sock.close()
