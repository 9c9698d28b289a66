"""What this server runs, for operators and clients: each tier's backend, its licence, whether
its real weights are present or a stand-in serves it, and whether commercial-only refuses it."""

from __future__ import annotations

from typing import Any

from easel import __version__
from easel.catalog import Backend, Catalog
from easel.domain.generation import EngineStatus
from easel.services.jobs.planning import BackendResolver
from easel.services.metrics import TierState


def backend_info(backend: Backend, resolver: BackendResolver) -> dict[str, Any]:
    present = resolver.present(backend.source)
    serves_stand_in = not present and not resolver.strict and resolver.refusal(backend) is None
    return {
        "backend": backend.name, "source": backend.source, "family": backend.family,
        "license": {"id": backend.license.id, "name": backend.license.name,
                    "url": backend.license.url, "commercial": backend.license.commercial,
                    "terms": backend.license.terms},
        "refused": resolver.refusal(backend),
        "weights": "present" if present else "absent",
        "stand_in": resolver.stand_in(backend) if serves_stand_in else None,
    }


def tier_states(catalog: Catalog, resolver: BackendResolver) -> list[TierState]:
    """What serves each tier, for /metrics."""
    states = []
    for tier in catalog.tiers.values():
        facts = backend_info(tier.backend, resolver)
        refused = facts["refused"] is not None or (facts["weights"] == "absent"
                                                   and facts["stand_in"] is None)
        states.append(TierState(tier.name, tier.backend.source, facts["stand_in"], refused))
    return states


def engine_info(status: EngineStatus | None) -> dict[str, Any] | None:
    """The in-process engine: None in an API-only process (its workers run elsewhere) or
    while it is being built."""
    if status is None:
        return None
    return {"device": status.device, "loaded_models": list(status.loaded),
            "memory_bytes": dict(status.memory)}


def server_info(catalog: Catalog, resolver: BackendResolver,
                engine: EngineStatus | None = None) -> dict[str, Any]:
    tiers = [
        {"tier": tier.name, "label": tier.label, "price_usd": tier.price_usd,
         "resolutions": list(tier.resolutions), **backend_info(tier.backend, resolver)}
        for tier in catalog.tiers.values()
    ]
    return {
        "version": __version__,
        "engine": engine_info(engine),
        "stand_ins_serving": [t["tier"] for t in tiers if t["stand_in"] is not None],
        "commercial_only": resolver.commercial_only,
        "tiers": tiers,
    }
