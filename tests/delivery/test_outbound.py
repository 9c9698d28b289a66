"""The SSRF guard and the webhook signatures, against real sockets and the reference library."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import httpx
import pytest

from easel.domain.errors import EaselError
from easel.services.delivery.outbound import check_url, embedded_ipv4, refusal, send
from easel.services.delivery.signing import new_secret, signed_headers, verify

REFUSED = [
    "127.0.0.1",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.1.1",
    "169.254.169.254",
    "fd00:ec2::254",
    "100.64.0.1",
    "0.0.0.0",
    "::",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "224.0.0.1",
    "192.0.2.1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is None


def test_mapped_and_nat64_forms_unwrap_to_their_ipv4() -> None:
    assert str(embedded_ipv4(ipaddress.ip_address("::ffff:169.254.169.254"))) == "169.254.169.254"
    assert str(embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))) == "169.254.169.254"


def test_loopback_only_with_the_explicit_setting() -> None:
    loop = ipaddress.ip_address("127.0.0.1")
    assert refusal(loop, allow_loopback=True) is None
    # The setting opens loopback, nothing else, and not through a mapped metadata address.
    assert refusal(ipaddress.ip_address("169.254.169.254"), allow_loopback=True) is not None
    assert refusal(ipaddress.ip_address("::ffff:10.0.0.1"), allow_loopback=True) is not None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        (42, "http(s) URL"),
    ],
)
def test_check_url_names_the_parameter(url: object, words: str) -> None:
    with pytest.raises(EaselError) as info:
        asyncio.run(check_url(url, "webhookURL"))
    assert info.value.parameter == "webhookURL"
    assert words in info.value.message


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.seen.append((self.path, dict(self.headers), body))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


def test_send_connects_to_the_checked_address_and_never_follows_redirects(receiver: str) -> None:
    async def go() -> list[int]:
        statuses = []
        async with httpx.AsyncClient() as client:
            for path in ("/hook", "/redirect"):
                checked = await check_url(receiver + path, "webhookURL", allow_loopback=True)
                assert str(checked.address) == "127.0.0.1"
                response = await send(client, "POST", checked, b"{}", {"X-A": "1"}, 5.0)
                statuses.append(response.status_code)
        return statuses

    _Recorder.seen.clear()
    assert asyncio.run(go()) == [204, 302]
    assert [path for path, _, _ in _Recorder.seen] == ["/hook", "/redirect"]  # no third request
    assert _Recorder.seen[0][1]["Host"] == receiver.removeprefix("http://")


def test_signatures_verify_with_the_reference_library_and_fail_when_tampered() -> None:
    secret = new_secret()
    body = json.dumps({"data": [{"taskUUID": "t"}]}).encode()
    headers = signed_headers(secret, "msg_1", body)
    assert verify(secret, body, headers) == {"data": [{"taskUUID": "t"}]}
    with pytest.raises(ValueError, match="invalid webhook signature"):
        verify(secret, body + b" ", headers)
    with pytest.raises(ValueError):
        verify(new_secret(), body, headers)
    stale = signed_headers(secret, "msg_1", body, now=datetime.now(tz=UTC) - timedelta(hours=1))
    with pytest.raises(ValueError):
        verify(secret, body, stale)


def test_the_same_delivery_id_signs_identically_at_the_same_time() -> None:
    secret, body, when = new_secret(), b'{"a":1}', datetime.now(tz=UTC)
    assert signed_headers(secret, "id", body, when) == signed_headers(secret, "id", body, when)
    assert "webhook-signature" not in signed_headers(None, "id", body, when)
