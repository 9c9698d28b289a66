"""The content check on real pictures: NudeNet's scores (the ones docs/safety.md records), the
levels and the people rule as the catalog's thresholds apply them. The watermark and C2PA are
tested in tests/provenance, the block list and the prompt rewrite in tests/prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from easel.catalog import Catalog
from easel.domain.safety import (
    OnFlagged,
    PersonGeneration,
    SafetyInput,
    SafetyLevel,
    Withheld,
)
from easel.services.images.safety import ContentChecker, NudeNetDetector, skin_share
from tests.safety.chat import ChatServer
from tests.safety.pictures import pixels

SIZE = 256


@pytest.fixture(scope="module")
def detector() -> NudeNetDetector:
    return NudeNetDetector()


@pytest.fixture(scope="module")
def checker(detector: NudeNetDetector) -> ContentChecker:
    return ContentChecker(detector, Catalog.load().safety)


# -- the detector -------------------------------------------------------------------------------


def test_detector_scores_real_pictures(detector: NudeNetDetector) -> None:
    scores = {name: detector.scores(pixels(name, SIZE, SIZE))
              for name in ("torso", "astronaut", "camera", "coffee", "chelsea")}
    print({name: s.to_json() for name, s in scores.items()})  # recorded in docs/safety.md
    assert scores["torso"].nsfw >= 0.7  # trips even block_only_high
    for name in ("astronaut", "camera", "coffee", "chelsea"):
        assert scores[name].nsfw < 0.25, name  # nothing any level flags
    assert scores["astronaut"].person >= 0.5  # a face: a person
    assert scores["coffee"].person == scores["chelsea"].person == 0.0


def test_the_detector_is_nudenets_own_with_idle_threads_that_sleep(
    detector: NudeNetDetector,
) -> None:
    from nudenet import NudeDetector

    ours = detector._loaded()
    options = ours.onnx_session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    theirs = NudeDetector()
    for name in ("torso", "astronaut"):
        image = pixels(name, SIZE, SIZE)
        rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
        found, expected = ours.detect(rgba), theirs.detect(rgba)
        assert [(d["class"], d["box"]) for d in found] == [(d["class"], d["box"])
                                                          for d in expected], name
        assert np.allclose([d["score"] for d in found], [d["score"] for d in expected],
                           atol=1e-6), name


def test_skin_share_of_a_box() -> None:
    """Flat shapes of no skin colour share nothing with skin; the rendered torso is mostly
    skin; a black-and-white photograph cannot be judged by colour, so its boxes count."""
    import numpy as np

    kite = np.zeros((200, 200, 3), np.uint8)
    kite[..., 2] = 230  # a blue sky
    kite[50:150, 60:140] = (230, 20, 20)  # a red kite
    assert skin_share(kite, (40, 40, 120, 120)) == 0.0
    torso = pixels("torso", SIZE, SIZE)
    assert skin_share(torso, (64, 64, 128, 128)) > 0.8
    grey = np.repeat(pixels("camera", SIZE, SIZE).mean(axis=2, keepdims=True), 3, axis=2)
    assert skin_share(grey.astype(np.uint8), (0, 0, SIZE, SIZE)) == 1.0
    assert skin_share(kite, (500, 500, 10, 10)) == 0.0  # a box outside the image


def test_a_skinless_shape_read_as_nudity_does_not_count(detector: NudeNetDetector) -> None:
    """easel-mini's red kite on blue (seed 7, 768x1408), which NudeNet alone scores as an
    exposed breast at the default level: not nudity here. The torso still is."""
    import torch

    from easel.mini.pipeline import EaselMiniPipeline
    from easel.mini.weights import mini_weights_dir

    pipe = EaselMiniPipeline.from_pretrained(mini_weights_dir())
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red kite in the sky", width=768, height=1408,
                 generator=torch.Generator().manual_seed(7)).images[0]
    kite = (image.clip(0, 1) * 255).round().astype("uint8")
    scores = detector.scores(kite)
    assert scores.nsfw < 0.25, scores
    print(scores.labels)  # NudeNet's own classes (FEMALE_BREAST_EXPOSED 0.54 on this machine)
    assert detector.scores(pixels("torso", SIZE, SIZE)).nsfw >= 0.7


def test_levels_flag_by_the_catalog_thresholds(checker: ContentChecker) -> None:
    torso, cat = pixels("torso", SIZE, SIZE), pixels("chelsea", SIZE, SIZE)
    for level in (SafetyLevel.BLOCK_LOW_AND_ABOVE, SafetyLevel.BLOCK_MEDIUM_AND_ABOVE,
                  SafetyLevel.BLOCK_ONLY_HIGH):
        flag = checker.check(torso, SafetyInput(level, OnFlagged.FLAG))
        assert flag.nsfw and flag.withheld is None and flag.scores is not None
        hold = checker.check(torso, SafetyInput(level, OnFlagged.WITHHOLD))
        assert hold.withheld is Withheld.NSFW
        assert not checker.check(cat, SafetyInput(level, OnFlagged.WITHHOLD)).nsfw
    unchecked = checker.check(torso, SafetyInput(SafetyLevel.BLOCK_NONE))
    assert not unchecked.nsfw and unchecked.scores is None  # block_none runs nothing


def test_dont_allow_withholds_people_only(checker: ContentChecker) -> None:
    no_people = SafetyInput(SafetyLevel.BLOCK_NONE, OnFlagged.WITHHOLD,
                            PersonGeneration.DONT_ALLOW)
    assert checker.check(pixels("astronaut", SIZE, SIZE), no_people).withheld is Withheld.PERSON
    assert checker.check(pixels("chelsea", SIZE, SIZE), no_people).withheld is None
    adults = SafetyInput(SafetyLevel.BLOCK_NONE, OnFlagged.WITHHOLD,
                         PersonGeneration.ALLOW_ADULT)
    assert checker.check(pixels("astronaut", SIZE, SIZE), adults).withheld is None


def test_checks_off_deliver_everything_unchecked() -> None:
    off = ContentChecker(None, Catalog.load().safety)
    verdict = off.check(pixels("torso", SIZE, SIZE),
                        SafetyInput(SafetyLevel.BLOCK_LOW_AND_ABOVE, OnFlagged.WITHHOLD))
    assert not verdict.nsfw and verdict.withheld is None and verdict.scores is None


# -- the chat endpoint the server tests rewrite prompts through -------------------------------


def test_chat_server_speaks_the_protocol_the_official_client_speaks(chat: ChatServer) -> None:
    """The official openai client (its own venv) gets a completion from the test server, so the
    rewrite tests above talk to a real OpenAI-compatible endpoint."""
    import subprocess

    from tests.sdk_venvs import sdk_python

    chat.behaviour = "rewrite"
    script = ("import json, sys; from openai import OpenAI; c = OpenAI(base_url=sys.argv[1], "
              "api_key='k', max_retries=0); r = c.chat.completions.create(model='m', "
              "messages=[{'role': 'user', 'content': 'a cat'}]); "
              "print(json.dumps(r.choices[0].message.content))")
    out = subprocess.run([str(sdk_python("openai")), "-c", script, chat.url],
                         capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == "A detailed photograph of a cat, golden hour light"
