"""The guarded download of a file a client or operator names by URL (`easel lora add URL`;
images in, later): every hop checked, the body capped as it streams, the whole fetch timed.
A real loopback server; private addresses are refused before any socket opens."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from easel.domain.errors import EaselError
from easel.services.delivery.outbound import fetch

FILE = b"\x10\x00\x00\x00\x00\x00\x00\x00{" + b"x" * 1000


class Files:
    def __init__(self) -> None:
        self.release = threading.Event()  # lets a stalled answer end when the test does
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def files() -> Iterator[Files]:
    state = Files()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            routes = {
                "/ink.safetensors": lambda: self._send(200, FILE),
                "/moved": lambda: self._redirect(f"{state.url}/ink.safetensors"),
                "/to-private": lambda: self._redirect("http://10.1.2.3/ink.safetensors"),
                "/to-metadata": lambda: self._redirect("http://169.254.169.254/latest"),
                "/loop": lambda: self._redirect(f"{state.url}/loop"),
                "/declared-big": lambda: self._send(200, b"", length=10**9),
                "/streamed-big": self._stream_big,
                "/stall": self._stall,
            }
            routes.get(self.path, lambda: self._send(404, b"no"))()

        def _send(self, status: int, body: bytes, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _stream_big(self) -> None:  # no length: the cap must hold while it streams
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            for _ in range(64):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

        def _stall(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"z" * 10)
            self.wfile.flush()
            state.release.wait(30)

        def log_message(self, *args: Any) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    state.server.shutdown()
    state.server.server_close()


async def test_a_file_is_fetched_through_redirects(files: Files) -> None:
    assert await fetch(f"{files.url}/moved", "SOURCE", 10_000, 10, allow_loopback=True) == FILE


@pytest.mark.parametrize(("path", "words"), [
    ("/to-private", "resolves to a private"),
    ("/to-metadata", "refused"),
    ("/loop", "more than 5 redirects"),
    ("/declared-big", "over the limit of 10,000"),
    ("/streamed-big", "over the limit of 10,000 bytes"),
    ("/missing", "answered 404"),
])
async def test_each_refusal_names_the_parameter(files: Files, path: str, words: str) -> None:
    with pytest.raises(EaselError) as info:
        await fetch(files.url + path, "SOURCE", 10_000, 10, allow_loopback=True)
    assert info.value.parameter == "SOURCE"
    assert words in info.value.message


async def test_a_server_that_stalls_is_given_up_on_at_the_deadline(files: Files) -> None:
    with pytest.raises(EaselError) as info:
        await fetch(f"{files.url}/stall", "SOURCE", 10_000, 0.5, allow_loopback=True)
    assert "took longer than 0.5 s" in info.value.message


@pytest.mark.parametrize("url", ["http://10.0.0.8/ink.safetensors",
                                 "http://[fd00::1]/ink.safetensors",
                                 "http://127.0.0.1:9/ink.safetensors"])
async def test_a_private_or_loopback_address_is_refused_without_connecting(url: str) -> None:
    with pytest.raises(EaselError) as info:
        await fetch(url, "SOURCE", 10_000, 10)
    assert "refused" in info.value.message


@pytest.fixture
def named_host() -> Iterator[str]:
    """A server that answers only requests addressed to it by name (a virtual host, as CDNs
    serve files), on the address `localhost` resolves to first here: its URL."""
    family, _, _, _, address = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            expected = f"localhost:{self.server.server_address[1]}"
            if self.path == "/relative":
                status, headers, body = 302, {"Location": "/ink.safetensors"}, b""
            elif self.path == "/ink.safetensors" and self.headers["Host"] == expected:
                status, headers, body = 200, {}, FILE
            else:
                status, headers, body = 421, {}, b"misdirected"
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = family

    server = Server(address[:2], Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_relative_redirect_stays_on_the_host_named(named_host: str) -> None:
    # The hop is pinned to the checked address; the next one is relative to the URL as named.
    assert await fetch(f"{named_host}/relative", "SOURCE", 10_000, 10,
                       allow_loopback=True) == FILE
