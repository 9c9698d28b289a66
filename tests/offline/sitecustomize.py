"""Loaded by every Python process the tests start (conftest puts this folder on PYTHONPATH):
servers, workers, the CLI and the official SDKs in their own venvs.

A host name other than localhost is unknown at once, as on a machine without a resolver, so no
DNS query leaves the machine (a client library that looks up its vendor's name, a webhook URL
naming a public host) and no test waits on a resolver's timeout. Addresses written as numbers
are left alone: resolving them asks nobody.
"""

import ipaddress
import socket

_real_getaddrinfo = socket.getaddrinfo


def _asks_a_resolver(host: object) -> bool:
    if host is None:
        return False
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower().rstrip(".") in ("", "localhost"):
        return False
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return True
    return False


def _getaddrinfo_offline(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if _asks_a_resolver(host):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo_offline
