"""What this server runs, for operators and clients: each tier's backend, its licence, whether
its real weights are present or a stand-in serves it, and whether commercial-only refuses it."""

from __future__ import annotations

import logging
from typing import Any

from easel import __version__
from easel.catalog import Backend, Catalog
from easel.domain.generation import EngineStatus
from easel.services.jobs.planning import BackendResolver
from easel.services.metrics import TierState
from easel.services.port import BackendFacts


def backend_facts(backend: Backend, resolver: BackendResolver) -> BackendFacts:
    present = resolver.present(backend.source)
    refused = resolver.refusal(backend)
    serves_stand_in = not present and not resolver.strict and refused is None
    stand_in = resolver.resolve(backend) if serves_stand_in else None
    return BackendFacts(
        name=backend.name, source=backend.source, family=backend.family,
        license=backend.license, refused=refused, present=present,
        stand_in=stand_in.source if stand_in else None,
        stand_in_steps=stand_in.steps if stand_in else None,
        stand_in_trained=stand_in is not None and stand_in.family == "mini",
    )


def tier_states(catalog: Catalog, resolver: BackendResolver) -> list[TierState]:
    """What serves each tier, for /metrics."""
    states = []
    for tier in catalog.tiers.values():
        facts = backend_facts(tier.backend, resolver)
        refused = facts.refused is not None or (not facts.present and facts.stand_in is None)
        states.append(TierState(tier.name, tier.backend.source, facts.stand_in, refused))
    return states


def engine_info(status: EngineStatus | None) -> dict[str, Any] | None:
    """The in-process engine: None in an API-only process (its workers run elsewhere) or
    while it is being built."""
    if status is None:
        return None
    return {"device": status.device, "loaded_models": list(status.loaded),
            "memory_bytes": dict(status.memory),
            "loaded_loras": {source: list(names) for source, names in status.adapters}}


def server_info(catalog: Catalog, resolver: BackendResolver,
                engine: EngineStatus | None = None) -> dict[str, Any]:
    tiers = [
        {"tier": tier.name, "label": tier.label, "price_usd": tier.price_usd,
         "resolutions": list(tier.resolutions),
         **backend_facts(tier.backend, resolver).to_json()}
        for tier in catalog.tiers.values()
    ]
    return {
        "version": __version__,
        "engine": engine_info(engine),
        "stand_ins_serving": [t["tier"] for t in tiers if t["stand_in"] is not None],
        "commercial_only": resolver.commercial_only,
        "tiers": tiers,
    }


def warn_stand_ins(catalog: Catalog, resolver: BackendResolver, log: logging.Logger) -> None:
    """Say plainly which backends are refused, and which run on a stand-in instead of their
    real weights (and how to fetch them)."""
    for backend in sorted({m.backend for m in catalog.models.values()}, key=lambda b: b.source):
        facts = backend_facts(backend, resolver)
        if facts.refused is not None:
            log.warning("%s", facts.refused)
        elif not facts.present and facts.stand_in is not None:
            hint = resolver.absence(backend) or f"`easel pull {backend.name}` fetches them"
            log.warning("weights of %s are absent; serving the offline stand-in %s (%s)",
                        backend.source, facts.stand_in, hint,
                        extra={"backend": backend.source, "stand_in": facts.stand_in})
