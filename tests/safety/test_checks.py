"""The safety and provenance parts on real inputs: NudeNet on real pictures (the scores are the
ones docs/safety.md records), the watermark through JPEG and a resize, C2PA credentials read back
by the library's own reader, the block list, and the prompt rewrite against a chat server on
loopback."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from easel.catalog import Catalog
from easel.domain.safety import (
    EnhancementState,
    OnFlagged,
    PersonGeneration,
    SafetyInput,
    SafetyLevel,
    Withheld,
)
from easel.services.prompts import PromptBlockList, PromptEnhancer
from easel.services.provenance import (
    AI_SOURCE_TYPE,
    GENERATION_LABEL,
    ContentCredentials,
    CredentialFacts,
    Watermarker,
    make_test_certificate,
    read_credentials,
    read_watermark,
)
from easel.services.safety import ContentChecker, NudeNetDetector
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


# -- the watermark ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marked() -> np.ndarray:
    return Watermarker().embed(pixels("astronaut", 512, 512))


def test_watermark_survives_jpeg_80_and_a_half_size_copy(marked: np.ndarray) -> None:
    original = pixels("astronaut", 512, 512)
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - original) ** 2))
    assert psnr > 30  # invisible
    sizes = [(512, 512), (384, 512), (512, 384)]
    image = Image.fromarray(marked)
    assert read_watermark(image, sizes).found
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=80)
    assert read_watermark(Image.open(io.BytesIO(jpeg.getvalue())), sizes).found
    half = image.resize((256, 256), Image.Resampling.LANCZOS)
    reading = read_watermark(half, sizes)
    assert reading.found and reading.at_size == (512, 512)  # read after scaling back
    assert not read_watermark(Image.fromarray(original), sizes).found


# -- content credentials ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> ContentCredentials:
    chain, key = make_test_certificate(tmp_path_factory.mktemp("c2pa"))
    return ContentCredentials.from_files(chain, key)


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                           ("WEBP", "image/webp")])
def test_c2pa_credentials_read_back_valid(credentials: ContentCredentials, fmt: str,
                                          mime: str) -> None:
    plain = io.BytesIO()
    Image.fromarray(pixels("coffee", 128, 128)).save(plain, fmt)
    facts = CredentialFacts("imagen-4.0-generate-001", "standard", "Tongyi-MAI/Z-Image-Turbo",
                            "9.9.9", seed=42)
    signed = credentials.sign(plain.getvalue(), mime, facts)
    store = read_credentials(signed, mime)
    assert store is not None and store["validation_state"] == "Valid"
    manifest = store["manifests"][store["active_manifest"]]
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert assertions[GENERATION_LABEL] == {"model": "imagen-4.0-generate-001",
                                            "tier": "standard", "easel_version": "9.9.9",
                                            "backend": "Tongyi-MAI/Z-Image-Turbo", "seed": 42}
    action = next(a for label, data in assertions.items() if label.startswith("c2pa.actions")
                  for a in data["actions"])
    assert (action["action"], action["digitalSourceType"]) == ("c2pa.created", AI_SOURCE_TYPE)
    assert Image.open(io.BytesIO(signed)).size == (128, 128)  # still the same picture
    assert read_credentials(plain.getvalue(), mime) is None


def test_c2pa_key_that_does_not_match_fails_at_start(tmp_path: Path) -> None:
    chain, _key = make_test_certificate(tmp_path / "a")
    _chain, other = make_test_certificate(tmp_path / "b")
    with pytest.raises(ValueError, match="cannot sign"):
        ContentCredentials.from_files(chain, other)


# -- the block list -----------------------------------------------------------------------------


def test_block_list_terms_phrases_and_patterns(tmp_path: Path) -> None:
    listing = tmp_path / "blocked.txt"
    listing.write_text("# the operator's list\n\nred  panda\nre:sec(ret|ure) plans?\n")
    blocked = PromptBlockList.from_sources(["gore"], [r"\bkill\w*"], listing)
    assert blocked.match("some GORE here") == "gore"
    assert blocked.match("gorey details") is None  # whole words only
    assert blocked.match("a Red   Panda eating") == "red  panda"
    assert blocked.match("ＧＯＲＥ, full width") == "gore"  # NFKC before matching
    assert blocked.match("the secure plan") == "re:sec(ret|ure) plans?"
    assert blocked.match("Killing time") == r"re:\bkill\w*"
    assert blocked.match("a quiet lake") is None
    assert not PromptBlockList.empty()
    with pytest.raises(ValueError, match="not a valid regular expression"):
        PromptBlockList([], ["(unclosed"])


# -- prompt enhancement against a chat server on loopback ---------------------------------------


def enhance(chat: ChatServer, behaviour: str, url: str | None = None,
            timeout: float = 5.0) -> Any:
    chat.behaviour = behaviour
    enhancer = PromptEnhancer(url or chat.url, "tiny-llm", api_key="sk-local", timeout=timeout)

    async def run() -> Any:
        try:
            return await enhancer.enhance("a red fox")
        finally:
            await enhancer.aclose()

    return asyncio.run(run())


def test_enhancer_rewrites_through_the_chat_endpoint(chat: ChatServer) -> None:
    result = enhance(chat, "rewrite")
    assert result.status is EnhancementState.REWRITTEN
    assert result.prompt == "A detailed photograph of a red fox, golden hour light"
    sent = chat.requests[-1]
    assert sent["auth"] == "Bearer sk-local" and sent["body"]["model"] == "tiny-llm"
    assert [m["role"] for m in sent["body"]["messages"]] == ["system", "user"]
    assert enhance(chat, "think").prompt == "a red fox, in watercolour"  # reasoning stripped


@pytest.mark.parametrize("behaviour", ["fail", "garbage", "empty"])
def test_enhancer_falls_back_to_the_original(chat: ChatServer, behaviour: str) -> None:
    result = enhance(chat, behaviour)
    assert (result.status, result.prompt) == (EnhancementState.FALLBACK, "a red fox")
    assert result.detail


def test_enhancer_timeout_and_closed_port_fall_back(chat: ChatServer) -> None:
    started = time.monotonic()
    slow = enhance(chat, "slow", timeout=0.5)
    assert slow.status is EnhancementState.FALLBACK and "0.5s" in (slow.detail or "")
    assert time.monotonic() - started < 2.5  # it did not wait for the 3 s answer
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}/v1"
    refused = enhance(chat, "rewrite", url=closed)
    assert refused.status is EnhancementState.FALLBACK and refused.prompt == "a red fox"


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
