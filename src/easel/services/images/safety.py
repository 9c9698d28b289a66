"""The content check of the outputs: one offline detector behind a small interface, and the
decision what becomes of each image (delivered, flagged, or withheld), from the job's
SafetyInput and the catalog's thresholds.

It runs on the CPU in the worker's finishing threads, after decoding and before encoding, so it
overlaps the next batch's denoising and never holds the GPU (docs/safety.md has its cost).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from easel.catalog import SafetyThresholds
from easel.domain.safety import OnFlagged, SafetyInput, Withheld

# NudeNet's classes that mean exposed nudity. The covered classes, faces, feet, armpits and a
# bare belly or male chest do not count as nudity; every class means a person is in view.
NSFW_CLASSES = frozenset({
    "FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED", "ANUS_EXPOSED",
})


# NudeNet reads flat, skin-less shapes (a red kite on blue, a blue heart in a night sky) as
# exposed nudity now and then: 1 image in 1,000 of easel-mini's benign ones reached the default
# threshold, 12 the strictest (bench/safety_false_positives.py). Exposed skin is skin-coloured,
# so an exposed-nudity box counts only when enough of it is: hue within skin's (red to yellow,
# any darkness a photograph shows), or the box has no colour to judge by (black and white).
SKIN_SHARE = 0.30  # of a box's pixels, for its exposed-nudity class to count
ACHROMATIC = 0.12  # a box's mean saturation below this: colour cannot tell, so it counts


def skin_share(pixels: np.ndarray, box: Sequence[int]) -> float:
    """The share of skin-toned pixels in `box` (x, y, width, height); 1.0 for a box without
    colour (a grey or sepia photograph, where hue says nothing)."""
    x, y, width, height = (int(v) for v in box)
    crop = pixels[max(0, y):max(0, y + height), max(0, x):max(0, x + width)]
    if crop.size == 0:
        return 0.0
    step = max(1, min(crop.shape[:2]) // 128)  # a few thousand pixels are plenty
    rgb = crop[::step, ::step].reshape(-1, 3).astype(np.float32) / 255
    high, low = rgb.max(axis=1), rgb.min(axis=1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    if float(saturation.mean()) < ACHROMATIC:
        return 1.0
    hue = _hue_degrees(rgb, high, high - low)
    skin = (((hue <= 50) | (hue >= 340)) & (saturation >= 0.10) & (saturation <= 0.80)
            & (high >= 0.08))
    return float(skin.mean())


def _hue_degrees(rgb: np.ndarray, high: np.ndarray, spread: np.ndarray) -> np.ndarray:
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    spread = np.maximum(spread, 1e-6)
    hue = np.where(high == r, ((g - b) / spread) % 6,
                   np.where(high == g, (b - r) / spread + 2, (r - g) / spread + 4))
    return np.asarray(hue * 60.0)


@dataclass(frozen=True)
class ContentScores:
    """What the detector saw in one image: the highest nsfw and person scores (0..1) and every
    class it found with its best score."""

    nsfw: float
    person: float
    labels: dict[str, float]

    def to_json(self) -> dict[str, float]:
        return {"nsfw": round(self.nsfw, 4), "person": round(self.person, 4)}


class ContentDetector(Protocol):
    def scores(self, pixels: Any) -> ContentScores:
        """Scores of one HxWx3 uint8 RGB image."""
        ...


class NudeNetDetector:
    """NudeNet 3.4's detector (the 320n ONNX model inside its wheel: nothing is downloaded),
    on onnxruntime's CPU provider. Loaded on first use, once per process: the API's check of
    input images and the worker's of output images share one session."""

    _shared: Any = None
    _lock = threading.Lock()

    def _loaded(self) -> Any:
        with NudeNetDetector._lock:
            if NudeNetDetector._shared is None:
                NudeNetDetector._shared = _detector_without_spinning()
            return NudeNetDetector._shared

    def scores(self, pixels: Any) -> ContentScores:
        image = np.asarray(pixels, dtype=np.uint8)
        # NudeNet converts RGBA to its BGR itself; a 3-channel array would be read as BGR.
        rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
        labels: dict[str, float] = {}
        nsfw = 0.0
        for found in self._loaded().detect(rgba):
            name, score = str(found["class"]), float(found["score"])
            labels[name] = max(score, labels.get(name, 0.0))
            if name in NSFW_CLASSES and skin_share(image, found["box"]) >= SKIN_SHARE:
                nsfw = max(nsfw, score)
        return ContentScores(nsfw, max(labels.values(), default=0.0), labels)


def _detector_without_spinning() -> Any:
    """NudeNet's detector on a session whose idle threads sleep. onnxruntime keeps them
    spinning after each run by default: on a 2-core VM with 1K images 50 ms apart, 71 ms of
    CPU per check instead of 41, for 15 ms more wall time (bench/safety.py), CPU that the
    other finishing threads need. NudeNet 3.4 takes no session options, so its four-line
    constructor is done here (and it ignores `providers`: this session names the CPU's)."""
    import onnxruntime  # and OpenCV, with nudenet: only when the check is used
    from nudenet import NudeDetector, nudenet

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    detector = NudeDetector.__new__(NudeDetector)
    detector.onnx_session = onnxruntime.InferenceSession(
        str(Path(nudenet.__file__).with_name("320n.onnx")), sess_options=options,
        providers=["CPUExecutionProvider"])
    detector.input_width = detector.input_height = 320
    detector.input_name = detector.onnx_session.get_inputs()[0].name
    return detector


@dataclass(frozen=True)
class Verdict:
    """What becomes of one image. `scores` None: nothing was checked."""

    nsfw: bool = False
    withheld: Withheld | None = None
    scores: ContentScores | None = None


UNCHECKED = Verdict()


class ContentChecker:
    """Applies a job's safety settings to its images. With no detector (the operator turned
    the checks off) every image is delivered unchecked."""

    def __init__(self, detector: ContentDetector | None, thresholds: SafetyThresholds) -> None:
        self.detector = detector
        self.thresholds = thresholds

    def needed(self, safety: SafetyInput) -> bool:
        return self.detector is not None and (safety.checks_content or safety.checks_people)

    def check(self, pixels: Any, safety: SafetyInput) -> Verdict:
        if self.detector is None or not self.needed(safety):
            return UNCHECKED
        scores = self.detector.scores(pixels)
        limit = self.thresholds.nsfw_threshold(safety.level)
        nsfw = limit is not None and scores.nsfw >= limit
        withheld = None
        if nsfw and safety.on_flagged is OnFlagged.WITHHOLD:
            withheld = Withheld.NSFW
        elif safety.checks_people and scores.person >= self.thresholds.person:
            withheld = Withheld.PERSON
        return Verdict(nsfw, withheld, scores)
