"""What this server runs, for operators and clients: each tier's backend, its licence, whether
its real weights are present or a stand-in serves it, and whether commercial-only refuses it."""

from __future__ import annotations

from typing import Any

from easel import __version__
from easel.catalog import Backend, Catalog
from easel.services.generation import BackendResolver


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


def server_info(catalog: Catalog, resolver: BackendResolver) -> dict[str, Any]:
    return {
        "version": __version__,
        "commercial_only": resolver.commercial_only,
        "tiers": [
            {"tier": tier.name, "label": tier.label, "price_usd": tier.price_usd,
             "resolutions": list(tier.resolutions), **backend_info(tier.backend, resolver)}
            for tier in catalog.tiers.values()
        ],
    }
