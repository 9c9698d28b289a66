"""The operator's floor under every content check (EASEL_CONTENT_CHECK_FLOOR): a caller who
switches the check off in its dialect (Runware checkContent false, WaveSpeed
enable_safety_checker false, AIML and Google block_none, easel's own block_none) still gets its
images checked; with `flag` a flagged image is marked (or withheld where the dialect withholds),
with `withhold` it is withheld in every dialect, and the reply says so in the dialect's shape.
The real detector on a real picture (tests/safety/pictures.py's torso, which it flags)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from easel.domain.job import Job
from easel.domain.safety import Withheld
from tests.edge.conftest import KEY, Edge
from tests.serve import PictureEngine
from tests.wire import WIRES, Call, Wire

TORSO = "[picture:torso] a figure"
# Each dialect's way to switch the check off, in the generation's own fields.
CHECK_OFF: dict[str, dict[str, Any]] = {
    "runware": {"safety": {"checkContent": False}, "checkNSFW": False},
    "wavespeed": {"enable_safety_checker": False},
    "openai": {"safety_setting": "block_none"},
    "google": {"safetySetting": "block_none"},
    "google-vertex": {"safetySetting": "block_none"},
    "easel": {"safety_setting": "block_none"},
}


def torso_call(wire: Wire) -> Call:
    """The torso, its check switched off by the caller."""
    call = wire.generate(KEY, **CHECK_OFF[wire.name])
    body = call.json
    if wire.name == "runware":
        body[0]["positivePrompt"] = TORSO
    elif wire.name.startswith("google"):
        body["instances"][0]["prompt"] = TORSO
    else:
        body["prompt"] = TORSO
    return call


def generate(edge: Edge, wire: Wire) -> tuple[Any, Job]:
    """The torso's reply and the job it made."""
    reply = edge.send(torso_call(wire))
    ((job_id,),) = edge.db("SELECT id FROM jobs")
    return reply, edge.wait(job_id)


@pytest.fixture(params=WIRES, ids=lambda wire: wire.name)
def wire(request: pytest.FixtureRequest) -> Wire:
    chosen: Wire = request.param
    return chosen


def test_without_a_floor_the_caller_may_switch_the_check_off(
    make_edge: Callable[..., Edge], wire: Wire
) -> None:
    edge = make_edge(PictureEngine())
    _, job = generate(edge, wire)
    assert [(i.scores, i.nsfw, i.withheld) for i in job.images] == [(None, False, None)]


def test_the_flag_floor_checks_every_image_whatever_the_caller_asks(
    make_edge: Callable[..., Edge], wire: Wire
) -> None:
    edge = make_edge(PictureEngine(), content_check_floor="flag")
    reply, job = generate(edge, wire)
    (image,) = job.images
    assert image.scores is not None and image.nsfw  # checked, and flagged
    withholds = wire.name in ("openai", "google", "google-vertex")  # as those providers do
    assert image.withheld is (Withheld.NSFW if withholds else None)
    if wire.name == "runware":
        assert [item["NSFWContent"] for item in reply.json()["data"]] == [True]
    elif wire.name == "wavespeed":
        assert reply.json()["data"]["has_nsfw_contents"] == [True]
    elif withholds:
        assert_withheld_whole(wire, reply)
    else:
        shown = edge.send(wire.poll(KEY, job.id)).json()
        assert shown["safety"]["level"] == "block_medium_and_above"  # what ran, said
        assert [(o["nsfw"], o["withheld"]) for o in shown["outputs"]] == [(True, None)]


def test_the_withhold_floor_withholds_flagged_images_in_every_dialect(
    make_edge: Callable[..., Edge], wire: Wire
) -> None:
    edge = make_edge(PictureEngine(), content_check_floor="withhold")
    reply, job = generate(edge, wire)
    assert [(i.nsfw, i.withheld) for i in job.images] == [(True, Withheld.NSFW)]
    if wire.name == "runware":
        for answer in (reply, edge.send(wire.poll(KEY, job.client_id))):  # sync, then polled
            error = wire.error(answer)
            assert (error.code, error.parameter) == ("contentPolicyViolation", "positivePrompt")
            assert "withheld" in error.message
    elif wire.name == "wavespeed":
        polled = edge.send(wire.poll(KEY, wire.job_id(reply)))
        for data in (reply.json()["data"], polled.json()["data"]):
            assert (data["status"], data["code"], data["outputs"]) == ("failed", 1200, [])
            assert "withheld" in data["error"]
    elif wire.name == "openai" or wire.name.startswith("google"):
        assert_withheld_whole(wire, reply)
    else:
        shown = edge.send(wire.poll(KEY, job.id)).json()
        assert shown["safety"]["on_flagged"] == "withhold"
        assert [o["withheld"] for o in shown["outputs"]] == ["nsfw"]


def test_a_floor_of_checks_that_never_run_is_refused() -> None:
    from easel.settings import Settings

    with pytest.raises(ValueError, match="needs content_checks"):
        Settings(content_checks=False, content_check_floor="flag")


def test_the_floor_never_makes_a_check_less_strict() -> None:
    from easel.domain.safety import CheckFloor, OnFlagged, SafetyInput, SafetyLevel

    strict = SafetyInput(SafetyLevel.BLOCK_LOW_AND_ABOVE, OnFlagged.WITHHOLD)
    assert strict.raised_to(CheckFloor.FLAG) == strict
    lenient = SafetyInput(SafetyLevel.BLOCK_ONLY_HIGH, OnFlagged.FLAG)
    assert lenient.raised_to(CheckFloor.FLAG) == SafetyInput(
        SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, OnFlagged.FLAG)
    assert lenient.raised_to(CheckFloor.OFF) == lenient


def assert_withheld_whole(wire: Wire, reply: Any) -> None:
    """OpenAI refuses a request whose every image was withheld; Google answers no predictions."""
    if wire.name == "openai":
        assert wire.error(reply).code == "content_policy_violation"
    else:
        assert reply.json().get("predictions", []) == []
