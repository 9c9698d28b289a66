"""The content check on real pictures: NudeNet's scores (the ones docs/safety.md records), the
levels and the people rule as the catalog's thresholds apply them. The watermark and C2PA are
tested in tests/provenance, the block list and the prompt rewrite in tests/prompts."""

from __future__ import annotations

import json

import pytest

from easel.catalog import Catalog
from easel.domain.safety import (
    OnFlagged,
    PersonGeneration,
    SafetyInput,
    SafetyLevel,
    Withheld,
)
from easel.services.images.safety import ContentChecker, NudeNetDetector
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
