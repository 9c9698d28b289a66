"""CPU time of easel's short-lived outbound clients: one is made for each input image fetched
from a URL (`easel.services.delivery.outbound.fetch`) and each webhook notification. httpx makes
a TLS context for every client it builds, loading the CA bundle again; since 2026-12-06 they
share one per process (`outbound.tls_context`). Timed: building a client each way, and a whole
`fetch` of a small file from a loopback server (what a client's input URL costs here).

    .venv/bin/python -m bench.outbound_tls
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import threading
import time
from collections.abc import Callable

import httpx

from easel.services.delivery.outbound import fetch, tls_context


def cpu_ms(action: Callable[[], object], repeats: int) -> float:
    """Mean CPU time of `action`, in milliseconds (the process's, all threads)."""
    action()  # imports and first-use caches stay out of the figure
    started = time.process_time()
    for _ in range(repeats):
        action()
    return (time.process_time() - started) / repeats * 1000


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"x" * 4096
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/input.png"
    rows = {
        "AsyncClient() (its own TLS context)": lambda: httpx.AsyncClient(),
        "AsyncClient(verify=tls_context())": lambda: httpx.AsyncClient(verify=tls_context()),
        "fetch() of 4 KiB from loopback": lambda: asyncio.run(
            fetch(url, "image", 1 << 20, 10, allow_loopback=True)),
    }
    print(f"{'':40} CPU per call ({args.repeats} calls)")
    for name, action in rows.items():
        print(f"{name:40} {cpu_ms(action, args.repeats):8.2f} ms")
    server.shutdown()


if __name__ == "__main__":
    main()
