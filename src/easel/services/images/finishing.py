"""What happens to an image between the engine and the store, on the worker's finishing
threads (one image each, several at once): the content check, the invisible watermark,
encoding, and the content credentials.

A withheld image stops at the check: it is never encoded, stored, uploaded nor delivered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from easel import __version__
from easel.domain.request import GenerationRequest
from easel.services.images.encoding import PNG_COMPRESS_LEVEL, encode
from easel.services.images.provenance import (
    ContentCredentials,
    CredentialFacts,
    Ingredient,
    Watermarker,
)
from easel.services.images.safety import UNCHECKED, ContentChecker, Verdict
from easel.services.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    verdict: Verdict
    data: bytes | None  # the file to store; None: withheld


@dataclass(frozen=True)
class Provenance:
    """What a finished image says about where it came from (its content credentials); an
    edit's `ingredients` are read only when credentials are signed (`wants_ingredients`)."""

    tier: str
    backend: str
    ingredients: tuple[Ingredient, ...] = ()


class ImageFinisher:
    def __init__(
        self,
        checker: ContentChecker,
        metrics: Metrics,
        watermarker: Watermarker | None = None,
        credentials: ContentCredentials | None = None,
        png_level: int = PNG_COMPRESS_LEVEL,
    ) -> None:
        self.checker = checker
        self.metrics = metrics
        self.watermarker = watermarker or Watermarker()
        self.credentials = credentials  # None: the operator configured no signing certificate
        self.png_level = png_level

    def finish(
        self, pixels: Any, seed: int, request: GenerationRequest, metadata: dict[str, object],
        provenance: Provenance,
    ) -> Finished:
        verdict = self._check(pixels, request)
        if verdict.withheld is not None:
            return Finished(verdict, None)
        if request.watermark and self.watermarker.fits(pixels):
            pixels = self.watermarker.embed(pixels)
        elif request.watermark:
            log.info("an image of %s pixels is too small to carry the watermark",
                     "x".join(map(str, reversed(pixels.shape[:2]))))
        data = encode(pixels, request.output_format, request.output_quality, metadata,
                      self.png_level)
        if self.credentials is not None:
            facts = CredentialFacts(model=request.model, tier=provenance.tier,
                                    backend=provenance.backend, easel_version=__version__,
                                    seed=seed,
                                    loras=tuple(lora.to_json() for lora in request.loras),
                                    operation=request.operation.value,
                                    ingredients=provenance.ingredients)
            data = self.credentials.sign(data, request.output_format.mime, facts)
        return Finished(verdict, data)

    @property
    def wants_ingredients(self) -> bool:
        """Whether an edit's input images are recorded (content credentials are signed)."""
        return self.credentials is not None

    def preview(self, pixels: Any, request: GenerationRequest) -> bytes | None:
        """A partial image as a stream shows it: checked and watermarked as the final image
        will be (None: the check would withhold it), encoded in the job's format, without
        metadata or content credentials (it is not the image the job delivers)."""
        if self._check(pixels, request).withheld is not None:
            return None
        if request.watermark and self.watermarker.fits(pixels):
            pixels = self.watermarker.embed(pixels)
        return encode(pixels, request.output_format, request.output_quality, {}, self.png_level)

    def _check(self, pixels: Any, request: GenerationRequest) -> Verdict:
        if not self.checker.needed(request.safety):
            return UNCHECKED
        started = time.perf_counter()
        verdict = self.checker.check(pixels, request.safety)
        self.metrics.safety_seconds.observe(time.perf_counter() - started)
        if verdict.withheld is not None:
            self.metrics.images_flagged.labels(verdict.withheld.value, "withheld").inc()
        elif verdict.nsfw:
            self.metrics.images_flagged.labels("nsfw", "flagged").inc()
        return verdict
