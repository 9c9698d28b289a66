"""Outbound HTTP to user-supplied URLs (webhooks, uploadEndpoint), guarded against SSRF.

Every URL is resolved once; every address it resolves to must be public (or loopback, only when
the operator allows it, as the tests do). The request then connects to the address that was
checked, with the original Host header and TLS server name, so a DNS answer that changes between
the check and the connection (rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from easel.domain.errors import EaselError, ErrorKind, UrlRefused, invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints, named explicitly although the ranges below already cover them.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
# Refused whatever this interpreter's `ipaddress` tables say (CPython 3.11.7 calls 192.0.0.0/24
# global, CVE-2024-4032, and has no notion of cloud host endpoints). Checked first, on the
# address and on the IPv4 address embedded in it.
DENY: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "a 'this network' address"),
    (ipaddress.ip_network("10.0.0.0/8"), "a private address"),
    (ipaddress.ip_network("100.64.0.0/10"), "a shared (CGNAT) address"),
    (ipaddress.ip_network("127.0.0.0/8"), "a loopback address"),
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address"),
    (ipaddress.ip_network("168.63.129.16/32"), "a cloud host endpoint (Azure WireServer)"),
    (ipaddress.ip_network("172.16.0.0/12"), "a private address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol assignment"),
    (ipaddress.ip_network("192.0.2.0/24"), "a documentation address"),
    (ipaddress.ip_network("192.168.0.0/16"), "a private address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.ip_network("224.0.0.0/4"), "a multicast address"),
    (ipaddress.ip_network("240.0.0.0/4"), "a reserved address"),
    (ipaddress.ip_network("::/128"), "an unspecified address"),
    (ipaddress.ip_network("::1/128"), "a loopback address"),
    (ipaddress.ip_network("fc00::/7"), "a unique-local address"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
    (ipaddress.ip_network("fec0::/10"), "a site-local address"),
    (ipaddress.ip_network("ff00::/8"), "a multicast address"),
)
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d (deprecated)
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
# Names refused before any lookup: they mean "this machine" or "the cloud's metadata service"
# wherever easel runs, whatever the local resolver answers today.
METADATA_HOSTS = ("metadata.google.internal", "metadata")
METADATA_SUFFIXES = (".internal",)
LOCAL_HOSTS = ("localhost",)
LOCAL_SUFFIXES = (".localhost",)


class Unresolvable(EaselError):
    """The host does not resolve now; at submission that is not yet a refusal (DNS may heal)."""

    def __init__(self, parameter: str, host: str) -> None:
        super().__init__(ErrorKind.INVALID, f"{parameter} host {host!r} does not resolve",
                         parameter)


@dataclass(frozen=True)
class CheckedURL:
    url: str
    host: str
    port: int
    address: IPAddress  # what the request will connect to

    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return urlunsplit((parts.scheme, f"{host}:{self.port}", parts.path or "/", parts.query, ""))


def is_loopback_host(host: str) -> bool:
    """Whether a host name or literal address names this machine (no DNS lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address hidden in IPv4-mapped, NAT64 and 6to4 forms; else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if any(address in net for net in (NAT64, NAT64_LOCAL, IPV4_COMPATIBLE,
                                          IPV4_TRANSLATED)) and int(address) > 1:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def refusal(address: IPAddress, allow_loopback: bool) -> str | None:
    """Why this address may not be reached, or None when it may."""
    inner = embedded_ipv4(address)
    for candidate in dict.fromkeys((inner, address)):  # the unwrapped IPv4 first: the real target
        if allow_loopback and any(candidate in net for net in LOOPBACK_NETWORKS
                                  if net.version == candidate.version):
            continue
        if candidate in METADATA:
            return "a cloud metadata address"
        for network, why in DENY:
            if network.version == candidate.version and candidate in network:
                return why
        if candidate.is_loopback:
            if allow_loopback:
                continue
            return "a loopback address"
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_private or not candidate.is_global:
            # is_global is False for 100.64.0.0/10 (CGNAT), documentation and reserved ranges.
            return "a private or non-public address"
    return None


MAX_URL = 2048


def parse(url: object, parameter: str) -> tuple[str, str, int]:
    """The one syntax check of outbound URLs: absolute http(s), a host, no credentials."""
    if not isinstance(url, str) or not url:
        raise invalid(parameter, f"{parameter} must be an http(s) URL")
    if len(url) > MAX_URL:
        raise invalid(parameter, f"{parameter} must be an http(s) URL of at most {MAX_URL} "
                                 "characters")
    parts = urlsplit(url)
    if not parts.scheme:
        raise invalid(parameter, f"{parameter} has no scheme: it must be an absolute http(s) "
                                 "URL (https://...)")
    if parts.scheme not in ("http", "https"):
        raise invalid(parameter, f"{parameter} must use http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise invalid(parameter, f"{parameter} has no host")
    if parts.username or parts.password:
        raise invalid(parameter, f"{parameter} must not carry credentials in the URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise invalid(parameter, f"{parameter} has an invalid port") from None
    return parts.scheme, parts.hostname, port


async def check_url(url: object, parameter: str, allow_loopback: bool = False) -> CheckedURL:
    """Resolve and vet a URL; raise an EaselError naming `parameter` when it is refused."""
    _scheme, host, port = parse(url, parameter)
    _refuse_name(host, parameter, allow_loopback)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        addresses = await _resolve(host, port, parameter)
    for address in addresses:
        why = refusal(address, allow_loopback)
        if why:
            raise UrlRefused(parameter, f"{parameter} resolves to {why} ({address}); refused")
    assert isinstance(url, str)
    return CheckedURL(url, host, port, addresses[0])


def _refuse_name(host: str, parameter: str, allow_loopback: bool) -> None:
    name = host.rstrip(".").lower()
    if name in METADATA_HOSTS or name.endswith(METADATA_SUFFIXES):
        raise UrlRefused(parameter, f"{parameter} names a cloud metadata host ({name}); refused")
    if not allow_loopback and (name in LOCAL_HOSTS or name.endswith(LOCAL_SUFFIXES)):
        raise UrlRefused(parameter, f"{parameter} names a loopback host ({name}); refused")


async def _resolve(host: str, port: int, parameter: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Unresolvable(parameter, host) from None
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in seen:
            seen.append(address)
    return seen


async def check_at_submission(
    url: object, parameter: str, allow_loopback: bool = False
) -> None:
    """Refuse what is known to be refused now; a name that does not resolve yet is checked again
    (and refused then) when the delivery is sent."""
    try:
        await check_url(url, parameter, allow_loopback)
    except Unresolvable:
        return


async def send(
    client: httpx.AsyncClient,
    method: str,
    checked: CheckedURL,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
) -> httpx.Response:
    """One request to the checked address, never following redirects."""
    extensions = {"sni_hostname": checked.host} if checked.url.startswith("https") else {}
    default_port = 443 if checked.url.startswith("https") else 80
    host_header = checked.host if checked.port == default_port else f"{checked.host}:{checked.port}"
    request = client.build_request(
        method,
        checked.pinned_url(),
        content=content,
        headers={**headers, "Host": host_header},
        timeout=timeout,
        extensions=extensions,
    )
    # Streamed: the receiver's body is never read (a reply of gigabytes costs nothing).
    return await client.send(request, follow_redirects=False, stream=True)


MAX_REDIRECTS = 5


@functools.cache
def tls_context(trust_env: bool = True) -> ssl.SSLContext:
    """The TLS settings of easel's short-lived outbound clients, made once per process: httpx
    makes a context for every client, loading the CA bundle again (some 20 ms of CPU), and a
    client is made for each input fetched from a URL and each webhook notification."""
    return httpx.create_ssl_context(trust_env=trust_env)


async def fetch(url: str, parameter: str, max_bytes: int, timeout: float,
                allow_loopback: bool = False) -> bytes:
    """GET a file from a URL a client or operator gave: every hop (redirects included) checked
    and pinned as deliveries are, the body capped at `max_bytes` while it streams, the whole
    fetch capped at `timeout` seconds. Raises an EaselError naming `parameter`."""
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(
            verify=tls_context()) as client:
            for _ in range(MAX_REDIRECTS + 1):
                checked = await check_url(url, parameter, allow_loopback)
                response = await send(client, "GET", checked, b"", {}, timeout)
                try:
                    if response.is_redirect and "location" in response.headers:
                        # Relative to the URL as named: the response's own URL is the pinned
                        # address, which would lose the host name (virtual hosts, TLS names).
                        url = str(httpx.URL(url).join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise invalid(parameter, f"{parameter}: the server answered "
                                                 f"{response.status_code}")
                    return await _capped_body(response, parameter, max_bytes)
                finally:
                    await response.aclose()
            raise invalid(parameter, f"{parameter}: more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise invalid(parameter, f"{parameter}: the download took longer than {timeout:g} s")\
            from None
    except httpx.HTTPError as exc:
        raise invalid(parameter, f"{parameter}: the download failed ({type(exc).__name__})")\
            from None


async def _capped_body(response: httpx.Response, parameter: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise invalid(parameter, f"{parameter}: the file is {int(declared):,} bytes, over the "
                                 f"limit of {max_bytes:,}")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise invalid(parameter, f"{parameter}: the file is over the limit of "
                                     f"{max_bytes:,} bytes")
    return bytes(body)
