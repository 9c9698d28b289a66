"""Serving one process: the checks before it listens, what it says when it starts, and uvicorn
until SIGTERM or Ctrl-C (the batch in flight finishes during the grace period; held requests
are answered before it ends; exit 0)."""

from __future__ import annotations

import logging
import os
import signal
import socket
from types import FrameType

import uvicorn

from easel.logs import visible
from easel.runtime.build import (
    EngineFactory,
    Server,
    build_key_store,
    build_server,
    make_resolver,
    start_problem,
)
from easel.runtime.http import http_protocol
from easel.services.access.keys import env_principal, key_principal
from easel.services.access.secrets import missing_shared_secret
from easel.services.delivery.outbound import is_loopback_host
from easel.services.weights.facts import backend_facts, warn_stand_ins
from easel.settings import Settings

log = logging.getLogger("easel.cli")


class StartRefused(Exception):
    """Why the server will not start (one line, naming what to change)."""


def check_can_serve(settings: Settings, insecure_no_auth: bool) -> None:
    """Refuses, before anything says it is serving: a process sharing its job store with other
    machines but no secret with them (services/access/secrets.py), listening beyond loopback
    with no API keys (unless asked for plainly), every web page allowed to call with no API
    keys (any site a user visits could spend this machine), and an address that is taken."""
    refused = missing_shared_secret(settings) or start_problem(settings)
    if refused is not None:
        raise StartRefused(refused)
    host = settings.host
    beyond_loopback, any_page = not is_loopback_host(host), "*" in settings.cors_origins
    # The key store is read once, and only when the answer matters.
    keyless = (beyond_loopback or any_page) and not insecure_no_auth and not _has_keys(settings)
    if beyond_loopback and keyless:
        raise StartRefused(
            f"--host {host} would expose easel beyond this machine with no API keys; create "
            "one (`easel keys create`), set EASEL_API_KEYS, or pass --insecure-no-auth")
    if any_page and keyless:
        raise StartRefused(
            "EASEL_CORS_ORIGINS=* would let any web page a user opens call easel with no API "
            "keys; create one (`easel keys create`), set EASEL_API_KEYS, name the origins, or "
            "pass --insecure-no-auth")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, settings.port))
    except OSError as exc:
        raise StartRefused(f"cannot listen on {host}:{settings.port}: "
                           f"{exc.strerror or exc}") from None


def _has_keys(settings: Settings) -> bool:
    return bool(settings.api_keys) or build_key_store(settings).active_count() > 0


def serve(settings: Settings, engine_factory: EngineFactory | None = None) -> None:
    """Build the server from `settings` (the diffusers engine unless another is given), say
    what serves each tier, and serve."""
    server = build_server(settings, engine_factory)
    announce(server)
    run_server(server, settings)


def keys_line(settings: Settings) -> str:
    """Whether requests need a key, and why, as the start log says it."""
    try:
        keys = build_key_store(settings)  # made if absent, as the lifespan would make it
        active, created = keys.active_count(), keys.any_created()
    except Exception:  # the store is down at start: the server fails closed until it is back
        return "API keys: the key store cannot be read now; requests are refused until it can"
    if settings.api_keys or created:
        sources = [f"{len(settings.api_keys)} in EASEL_API_KEYS"] if settings.api_keys else []
        sources.append(f"{active} active from `easel keys`")
        closed = "" if settings.api_keys or active else \
            " (every key is revoked: every request is refused until `easel keys create`)"
        return f"API keys: required ({', '.join(sources)}){closed}"
    return (f"API keys: not required (none configured): anyone who can reach "
            f"{settings.host}:{settings.port} may call; `easel keys create` makes keys "
            "required")


def unknown_weight_owners(settings: Settings) -> list[str]:
    """The owners EASEL_CALLER_WEIGHTS names that no key has (a typo, a revoked key, or an
    EASEL_API_KEYS key given as itself instead of its owner)."""
    if not settings.caller_weights:
        return []
    known = {env_principal(key) for key in settings.api_keys}
    try:
        known |= {key_principal(info.id) for info in build_key_store(settings).list()}
    except Exception:  # the store is down at start: nothing to say about it now
        return []
    return sorted(owner for owner in settings.caller_weights
                  if owner not in known and not owner.startswith("ip:"))


def announce(server: Server) -> None:
    """Where the playground is, which tiers run on their real weights and which on a stand-in
    (and why), as warnings an operator sees at once."""
    runtime = server.runtime
    catalog, resolver = runtime.catalog, make_resolver(runtime.settings, runtime.catalog)
    warn_stand_ins(catalog, resolver, log)
    log.info("playground at %s/ (API reference at /docs)", runtime.settings.base_url)
    log.info("%s", keys_line(runtime.settings))
    for owner in unknown_weight_owners(runtime.settings):
        log.warning("EASEL_CALLER_WEIGHTS names %s, which is no key's owner here: it has no "
                    "effect (`easel keys list` shows each key's owner)", visible(owner))
    for tier in catalog.tiers.values():
        facts = backend_facts(tier.backend, resolver)  # what /easel/info says of it
        if facts.refused is not None:
            state = "refused (licence)"
        elif facts.present:
            state = "real weights"
        elif facts.stand_in is None:
            state = "weights absent (strict: its jobs are refused)"
        else:
            state = f"stand-in {facts.stand_in} (weights absent)"
        log.info("tier %s: %s, %s", tier.name, tier.backend.name, state,
                 extra={"tier": tier.name, "backend": tier.backend.source, "state": state})


def run_server(server: Server, settings: Settings) -> None:
    """Serve with uvicorn until SIGTERM or Ctrl-C, then drain and exit."""
    # Frames above max_body_bytes get a clear error from the dialect; only far larger ones are
    # cut off by the WebSocket layer itself.
    config = uvicorn.Config(
        server.app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # easel's logging (easel.logs) is configured already
        access_log=False,  # easel.access writes it, with query strings masked
        ws_max_size=max(16 * 1024 * 1024, settings.max_body_bytes * 2),
        ws_ping_interval=settings.ws_ping_interval or None,  # finds half-open connections
        http=http_protocol(settings.header_timeout, settings.keep_alive_timeout,
                           stall_seconds=settings.reply_stall_seconds),
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )
    uvicorn_server = _graceful(config, server)
    # uvicorn re-raises the signal it caught once it has shut down; with the default handler
    # that would end a clean SIGTERM shutdown with status -15 instead of 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn_server.run()
    in_process = server.runtime.worker
    if in_process is not None and in_process.alive():
        # An engine call outlived the grace period; its jobs are already handed back. Leaving
        # through interpreter shutdown would abort inside torch's threads, so leave at once.
        logging.shutdown()
        os._exit(0)


def _graceful(config: uvicorn.Config, server: Server) -> uvicorn.Server:
    """uvicorn's Server, told to stop the worker's claims the moment a signal arrives (not only
    once open connections have drained)."""

    class Graceful(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            server.runtime.begin_shutdown()
            super().handle_exit(sig, frame)

    return Graceful(config)
