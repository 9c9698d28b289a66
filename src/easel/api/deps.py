"""FastAPI dependencies shared by every dialect."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import HTTPConnection

from easel.runtime.process import Services

__all__ = ["Services", "get_services"]


def get_services(request: Request) -> Services:
    return services_of(request)


def services_of(conn: HTTPConnection) -> Services:
    """Works for HTTP requests and WebSockets alike."""
    services: Services = conn.app.state.services
    return services
