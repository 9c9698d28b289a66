"""Who is calling, asked in one place for every dialect: the key comes wherever a client sends
it (`Authorization: Bearer`, Google's `x-goog-api-key` or `?key=`, or, for Runware, an
authentication task in the body) and the core says who holds it. Without a live key the request
is refused with Unauthenticated, which the app's handler asks the request's dialect to render in
its provider's words. The Caller is then passed on explicitly, in the Submission."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from easel.domain.errors import Unauthenticated
from easel.domain.submission import Caller
from easel.services.port import Port

BEARER, API_KEY, BODY = "bearer", "api_key", "body"  # how a key came (Unauthenticated.credential)


def port_of(conn: HTTPConnection) -> Port:
    """The core as the app was built over it (HTTP requests and WebSockets alike)."""
    port: Port = conn.app.state.port
    return port


def bearer_token(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def presented_key(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """The key a request's headers or query carry, and how it came: Google's API key (header,
    then `?key=`) before a bearer token."""
    api_key = conn.headers.get("x-goog-api-key") or conn.query_params.get("key")
    if api_key:
        return api_key, API_KEY
    token = bearer_token(conn.headers.get("authorization"))
    return (token, BEARER) if token else (None, None)


def identify(conn: HTTPConnection, key: str | None, credential: str | None) -> Caller:
    """The caller holding `key`; with no keys configured, anyone on the socket, by address.
    Unauthenticated when a key is needed and `key` is not a live one; Throttled when keys
    cannot be checked now (fail closed)."""
    address = conn.client.host if conn.client else "unknown"
    caller = port_of(conn).caller(key, address)
    if caller is None:
        raise Unauthenticated(credential if key else None)
    conn.state.caller = caller  # for a renderer that acts for the caller (a refusal webhook)
    return caller


def authenticated(request: Request) -> Caller:
    """The dependency every keyed route takes (sync: a key check may read the database, so
    FastAPI runs it off the event loop)."""
    return identify(request, *presented_key(request))


Authenticated = Annotated[Caller, Depends(authenticated)]
CorePort = Annotated[Port, Depends(port_of)]
