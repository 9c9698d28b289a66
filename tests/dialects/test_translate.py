"""Pure translation tests: wire -> GenerationRequest, errors -> wire shapes (no server)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.requests import Request

from easel.api.dialects import common
from easel.api.dialects.common import ErrorRenderer
from easel.api.dialects.google import routes as google_routes
from easel.api.dialects.google import translate as google_translate
from easel.api.dialects.openai import routes as openai_routes
from easel.api.dialects.openai import translate as openai_translate
from easel.api.dialects.wavespeed import translate as wavespeed_translate
from easel.catalog import Catalog, Model
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job, JobImage, JobStatus
from easel.domain.request import GenerationRequest, ImageFormat
from easel.domain.safety import OnFlagged, PersonGeneration, SafetyInput, SafetyLevel
from easel.domain.submission import Caller, Submission
from easel.services.delivery.outbound import parse
from easel.services.jobs.planning import resolve

NOW = datetime(2026, 8, 25, 0, 49, 21, 479000, tzinfo=UTC)
CALLER = Caller("test")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def raises(fn: Any, *args: Any) -> EaselError:
    with pytest.raises(EaselError) as info:
        fn(*args)
    return info.value


def decided(catalog: Catalog, submission: Submission) -> tuple[Model, GenerationRequest]:
    """What the core decides about a dialect's Submission (JobService.submit's checks, without
    the store): the catalog's rules, then the syntax of every outbound URL."""
    model, request = resolve(submission.generation, catalog, submission.names)
    if submission.delivery.webhook is not None:
        parse(submission.delivery.webhook, submission.names("webhook"))
    return model, request


def openai(catalog: Catalog, body: dict[str, Any]) -> tuple[openai_translate.ImagesRequest, Model,
                                                            GenerationRequest]:
    wire = openai_translate.to_submission(body, CALLER)
    return (wire, *decided(catalog, wire.submission))


def wavespeed(catalog: Catalog, model: str, body: dict[str, Any]) -> tuple[
        wavespeed_translate.WaveSpeedCall, GenerationRequest]:
    call = wavespeed_translate.to_submission(model, body, None, CALLER)
    return call, decided(catalog, call.submission)[1]


def google(catalog: Catalog, model: str, body: dict[str, Any], count: int) -> tuple[
        google_translate.PredictCall, GenerationRequest]:
    call = google_translate.to_submission(model, body, count, CALLER)
    return call, decided(catalog, call.submission)[1]


# -- common -------------------------------------------------------------------------------------


def test_json_body_errors_name_the_body() -> None:
    assert raises(common.parse_json_object, b"").kind is ErrorKind.MISSING
    assert raises(common.parse_json_object, b"{oops").parameter == "body"
    assert raises(common.parse_json_object, b"[1]").parameter == "body"


def test_iso_ms() -> None:
    assert common.iso_ms(NOW) == "2026-08-25T00:49:21.479Z"


# -- OpenAI size rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "standard", "fast"),
    [
        ("1024x1024", "1024x1024", "1024x1024"),
        ("1536x1024", "1280x896", "1280x896"),
        ("1024x1536", "896x1280", "896x1280"),
        ("1792x1024", "1408x768", "1408x768"),
        ("1024x1792", "768x1408", "768x1408"),
        ("256x256", "1024x1024", "1024x1024"),
        ("2048x2048", "2048x2048", "1024x1024"),
        ("2816x1536", "2816x1536", "1408x768"),
    ],
)
def test_openai_size_maps_to_nearest_imagen_size(
    catalog: Catalog, size: str, standard: str, fast: str
) -> None:
    w, h = map(int, size.split("x"))
    assert str(catalog.model("imagen-4.0-generate-001").nearest_size(w, h)) == standard
    assert str(catalog.model("imagen-4.0-fast-generate-001").nearest_size(w, h)) == fast


def test_openai_generic_model_tier_from_quality(catalog: Catalog) -> None:
    tiers = {q: openai(catalog, {"model": "imagen-4", "prompt": "x", "quality": q})[1]
             .tier.name for q in ("low", "medium", "high", "auto", "hd", "standard")}
    assert tiers == {"low": "fast", "medium": "standard", "high": "ultra", "auto": "standard",
                     "hd": "ultra", "standard": "standard"}
    assert openai(catalog, {"prompt": "x"})[1].tier.name == "standard"


def test_openai_quality_conflicting_with_model_tier_is_refused(catalog: Catalog) -> None:
    err = raises(openai, catalog,
                 {"model": "imagen-4.0-fast-generate-001", "prompt": "x", "quality": "high"})
    assert err.parameter == "quality"


def test_openai_aiml_fields(catalog: Catalog) -> None:
    sub, _model, r = openai(catalog, {
        "model": "google/imagen-4.0-ultra-generate-001", "prompt": "a fox", "num_images": 2,
        "aspect_ratio": "16:9", "convert_base64_to_url": False, "seed": 4294967295,
        "negative_prompt": "blur", "enhance_prompt": True, "add_watermark": True,
        "person_generation": "allow_adult", "safety_setting": "block_only_high",
    })
    assert (r.width, r.height, r.num_images, r.seed) == (1408, 768, 2, 4294967295)
    assert sub.b64_json and r.negative_prompt == "blur"
    assert sub.ignored == []  # every AIML field now does what AIML says
    assert (r.enhance_prompt, r.watermark) == (True, True)
    assert r.safety == SafetyInput(SafetyLevel.BLOCK_ONLY_HIGH, OnFlagged.WITHHOLD,
                                   PersonGeneration.ALLOW_ADULT)
    plain = openai(catalog, {"prompt": "a fox"})[2]
    assert (plain.enhance_prompt, plain.watermark) == (True, False)  # AIML's defaults
    assert plain.safety.level is SafetyLevel.BLOCK_MEDIUM_AND_ABOVE
    low = openai(catalog, {"prompt": "a fox", "moderation": "low"})[2]
    assert low.safety.level is SafetyLevel.BLOCK_ONLY_HIGH
    assert raises(openai, catalog, {"prompt": "x", "moderation": "low",
                                    "safety_setting": "block_none"}).parameter == "moderation"


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"model": "google/imagen4/preview", "prompt": "x" * 401}, "prompt"),
        ({"model": "imagen-4", "prompt": "x", "n": 5}, "n"),
        ({"model": "imagen-4", "prompt": "x", "n": 2, "num_images": 3}, "num_images"),
        ({"model": "imagen-4", "prompt": "x", "size": "big"}, "size"),
        ({"model": "imagen-4", "prompt": "x", "size": "1024x1024", "aspect_ratio": "1:1"},
         "aspect_ratio"),
        ({"model": "imagen-4", "prompt": "x", "response_format": "url",
          "convert_base64_to_url": False}, "convert_base64_to_url"),
        ({"model": "imagen-4", "prompt": "x", "output_format": "gif"}, "output_format"),
        ({"model": "imagen-4", "prompt": "x", "output_compression": 101}, "output_compression"),
        ({"model": "imagen-4", "prompt": "x", "background": "transparent"}, "background"),
        ({"model": "imagen-4", "prompt": "x", "seed": -1}, "seed"),
        ({"model": "imagen-4", "prompt": "x", "frobnicate": 1}, "frobnicate"),
        ({"model": "imagen-4", "prompt": "x", "n": "2"}, "n"),
        ({"model": "imagen-4"}, "prompt"),
        ({"model": "nope", "prompt": "x"}, "model"),
    ],
)
def test_openai_refusals_name_the_parameter(
    catalog: Catalog, body: dict[str, Any], parameter: str
) -> None:
    assert raises(openai, catalog, body).parameter == parameter


def rendered(render: ErrorRenderer, err: EaselError, path: str) -> tuple[int, Any]:
    """A dialect's renderer on a request to `path`: the status and the JSON body."""
    request = Request({"type": "http", "method": "POST", "path": path, "headers": [],
                       "query_string": b""})
    response = render(err, request)
    return response.status_code, json.loads(bytes(response.body))


def test_openai_error_body_has_both_shapes() -> None:
    err = EaselError(ErrorKind.INVALID, "n must be 1..4", "n")
    status, body = rendered(openai_routes.render_error, err, oa_path())
    assert status == 400
    assert body["error"] == {"message": "n must be 1..4", "type": "invalid_request_error",
                             "param": "n", "code": "invalid_value"}
    assert body["statusCode"] == 400 and body["path"] == oa_path() and body["requestId"]
    assert body["message"] == "n must be 1..4" and body["timestamp"].endswith("Z")
    unknown = EaselError(ErrorKind.UNKNOWN_MODEL, "x")
    assert rendered(openai_routes.render_error, unknown, oa_path())[0] == 404


def oa_path() -> str:
    return "/v1/images/generations"


def test_openai_idempotency_key_gives_a_stable_job_id() -> None:
    job_id_for = openai_translate.job_id_for
    assert job_id_for("abc") == job_id_for("abc") != job_id_for("abd")
    assert openai_translate.job_id_for(None) is None


# -- WaveSpeed ----------------------------------------------------------------------------------


def test_wavespeed_defaults_are_echoed(catalog: Catalog) -> None:
    sub, request = wavespeed(catalog, "google/imagen4", {"prompt": "a cat"})
    assert sub.input == {"prompt": "a cat", "negative_prompt": "", "aspect_ratio": "1:1",
                         "resolution": "1k", "num_images": 1, "seed": -1, "output_format": "jpeg",
                         "enable_base64_output": False, "enable_sync_mode": False,
                         "enable_safety_checker": True}
    assert request.seed is None and (request.width, request.height) == (1024, 1024)


def test_wavespeed_2k_and_webhook(catalog: Catalog) -> None:
    sub, request = wavespeed(catalog, "google/imagen4", {
        "prompt": "a cat", "aspect_ratio": "9:16", "resolution": "2k", "seed": 7,
        "webhook_url": "https://example.com/hook"})
    assert (request.width, request.height, request.seed) == (1536, 2816, 7)
    assert sub.submission.delivery.webhook == "https://example.com/hook"


@pytest.mark.parametrize(
    ("model", "body", "parameter", "kind"),
    [
        ("google/imagen4-fast", {"prompt": "x", "resolution": "2k"}, "resolution",
         ErrorKind.INVALID),
        ("google/imagen4", {"prompt": "x", "aspect_ratio": "2:1"}, "aspect_ratio",
         ErrorKind.INVALID),
        ("google/imagen4", {"prompt": "x", "num_images": 5}, "num_images", ErrorKind.INVALID),
        ("google/imagen4", {"prompt": "x", "seed": 10000000000}, "seed", ErrorKind.INVALID),
        ("google/imagen4", {"prompt": "x", "seed": -2}, "seed", ErrorKind.INVALID),
        ("google/imagen4", {}, "prompt", ErrorKind.MISSING),
        ("google/imagen4", {"prompt": "x", "webhook_url": "ftp://x"}, "webhook_url",
         ErrorKind.INVALID),
        ("google/imagen4", {"prompt": "x", "size": "1024*1024"}, "size", ErrorKind.UNSUPPORTED),
    ],
)
def test_wavespeed_refusals(
    catalog: Catalog, model: str, body: dict[str, Any], parameter: str, kind: ErrorKind
) -> None:
    err = raises(wavespeed, catalog, model, body)
    assert (err.parameter, err.kind) == (parameter, kind)
    assert wavespeed_translate.is_refused_as_task(err)


def _seal(secret: bytes) -> wavespeed_translate.RefusalSeal:
    return wavespeed_translate.RefusalSeal(hashlib.sha256(secret).digest())


def test_wavespeed_refusal_round_trips_through_its_id() -> None:
    err = EaselError(ErrorKind.MISSING, "prompt is required", "prompt")
    data = wavespeed_translate.refusal_data("google/imagen4", err, NOW, "http://h:1",
                                            _seal(b"secret"))
    assert data["status"] == "failed" and data["code"] == 1400
    again = wavespeed_translate.decode_refusal(data["id"], "http://h:1", _seal(b"secret"))
    assert again == data
    assert data["urls"]["get"] == f"http://h:1/api/v3/predictions/{data['id']}/result"
    assert wavespeed_translate.decode_refusal("rf-garbage!", "http://h:1", _seal(b"secret")) is None
    assert wavespeed_translate.decode_refusal("plain-id", "http://h:1", _seal(b"secret")) is None
    forged = wavespeed_translate.decode_refusal(data["id"], "http://h:1", _seal(b"another secret"))
    assert forged is None
    # Sealed, not just signed: the prompt an id carries cannot be read from it.
    sent = {"prompt": "a secret plan for a heron", "num_images": 9}
    err = EaselError(ErrorKind.INVALID, "num_images must be 1..4", "num_images")
    data = wavespeed_translate.refusal_data("google/imagen4", err, NOW, "http://h:1",
                                            _seal(b"secret"), sent)
    assert data["input"]["prompt"] == sent["prompt"]
    sealed = base64.urlsafe_b64decode(data["id"][3:] + "=" * (-len(data["id"][3:]) % 4))
    for start in (0, wavespeed_translate.RefusalSeal.NONCE):
        with pytest.raises(zlib.error):
            zlib.decompress(sealed[start:])
    # Another caller's seal (the server derives one per key) reads nothing from it.
    assert wavespeed_translate.decode_refusal(data["id"], "http://h:1", _seal(b"b")) is None


def _job(status: JobStatus, **kw: Any) -> Job:
    request = GenerationRequest("google/imagen4", "a cat", 1024, 1024, num_images=2,
                                output_format=ImageFormat.PNG)
    images = tuple(JobImage(f"img{i}", i, 10 + i, ready=True, mime="image/png") for i in (1, 0))
    return Job("j1", "wavespeed", request, status, images, NOW, **kw)


class FakeImages:
    def image_url(self, job: Job, image: JobImage) -> str:
        return f"http://h/images/{image.image_id}.png"

    async def image_bytes(self, image: JobImage) -> bytes:
        return image.image_id.encode()


async def test_wavespeed_job_rendering() -> None:
    job = _job(JobStatus.COMPLETED, started_at=NOW, finished_at=NOW.replace(second=23))
    outs = await wavespeed_translate.outputs(job, FakeImages())
    data = wavespeed_translate.job_data(job, "http://h", outs)
    assert data["outputs"] == ["http://h/images/img0.png", "http://h/images/img1.png"]
    assert data["status"] == "completed" and data["has_nsfw_contents"] == [False, False]
    assert data["timings"]["inference"] == 2000 and data["code"] == 0
    dashed = "0c0e6a52-5d8b-4d42-8f0e-5a1c3f7b9e21"
    shown = wavespeed_translate.job_data(dataclasses.replace(job, id=dashed), "http://h",
                                         outs)["id"]
    assert shown == dashed.replace("-", "") and wavespeed_translate.job_id_of(shown) == dashed
    assert data["created_at"] == "2026-08-25T00:49:21.479Z"
    queued = wavespeed_translate.job_data(_job(JobStatus.QUEUED), "http://h", [])
    assert queued["status"] == "created" and queued["outputs"] == []
    failed_job = _job(JobStatus.FAILED, error=ErrorKind.INFERENCE, error_message="NaN")
    failed = wavespeed_translate.job_data(failed_job, "http://h", [])
    assert (failed["status"], failed["code"], failed["error"]) == ("failed", 1403, "NaN")
    timeout = wavespeed_translate.sync_timeout_data(queued, 2.0)
    assert timeout["code"] == 5004 and "Sync mode timed out" in timeout["error"]


async def test_wavespeed_base64_outputs_are_bare_base64() -> None:
    job = _job(JobStatus.COMPLETED, echo={"wavespeed_input": {"enable_base64_output": True}})
    outs = await wavespeed_translate.outputs(job, FakeImages())
    assert outs[0] == "aW1nMA=="  # WaveSpeed: decode the entire string as is


# -- Google -------------------------------------------------------------------------------------


def test_google_request(catalog: Catalog) -> None:
    body = {"instances": [{"prompt": "a cat"}], "parameters": {
        "sampleCount": 2, "aspectRatio": "3:4", "sampleImageSize": "2K", "seed": 9,
        "personGeneration": "DONT_ALLOW", "safetySetting": "BLOCK_ONLY_HIGH",
        "outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 60},
        "addWatermark": False, "enhancePrompt": False, "language": "ja"}}
    sub, r = google(catalog, "imagen-4.0-generate-001", body, 4)
    assert (r.width, r.height, r.num_images, r.seed) == (1792, 2560, 2, 9)
    assert (r.output_format, r.output_quality) == (ImageFormat.JPEG, 60)
    assert r.safety == SafetyInput(SafetyLevel.BLOCK_ONLY_HIGH, OnFlagged.WITHHOLD,
                                   PersonGeneration.DONT_ALLOW)
    assert (r.watermark, r.enhance_prompt) == (False, False)
    assert set(sub.ignored) == {"language"}
    plain = google(catalog, "imagen-4.0-generate-001", {"instances": [{"prompt": "x"}]}, 4)[1]
    assert (plain.num_images, plain.output_format) == (4, ImageFormat.PNG)
    # Google's defaults: watermark on, prompt rewritten, medium filter, adults allowed.
    assert (plain.watermark, plain.enhance_prompt) == (True, True)
    assert plain.safety == SafetyInput(SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, OnFlagged.WITHHOLD,
                                       PersonGeneration.ALLOW_ADULT)


def test_google_seed_needs_the_watermark_off(catalog: Catalog) -> None:
    """Vertex: "Seed is not supported when watermark is enabled" (addWatermark defaults on)."""
    body = {"instances": [{"prompt": "a cat"}], "parameters": {"seed": 9}}
    err = raises(google, catalog, "imagen-4.0-generate-001", body, 1)
    assert err.parameter == "parameters.seed" and "watermark" in err.message


@pytest.mark.parametrize(
    ("model", "body", "parameter", "kind"),
    [
        ("imagen-4.0-fast-generate-001", {"instances": [{"prompt": "x"}],
                                          "parameters": {"sampleImageSize": "2K"}},
         "parameters.sampleImageSize", ErrorKind.INVALID),
        ("imagen-4.0-generate-001", {"instances": [{"prompt": "x"}],
                                     "parameters": {"aspectRatio": "2:1"}},
         "parameters.aspectRatio", ErrorKind.INVALID),
        ("imagen-4.0-generate-001", {"instances": [{"prompt": "x"}],
                                     "parameters": {"sampleCount": 5}},
         "parameters.sampleCount", ErrorKind.INVALID),
        ("imagen-4.0-generate-001", {"instances": [{"prompt": ""}]}, "instances[0].prompt",
         ErrorKind.MISSING),
        ("imagen-4.0-generate-001", {"instances": []}, "instances", ErrorKind.INVALID),
        ("imagen-4.0-fast-generate-001", {"instances": [{"prompt": "x"}],
                                          "parameters": {"guidanceScale": 3}},
         "parameters.guidanceScale", ErrorKind.UNSUPPORTED),  # FLUX.2 klein: distilled
        ("imagen-4.0-ultra-generate-001", {"instances": [{"prompt": "x"}],
                                           "parameters": {"guidanceScale": 25}},
         "parameters.guidanceScale", ErrorKind.INVALID),
        ("imagen-4.0-generate-001", {"instances": [{"prompt": "x"}],
                                     "parameters": {"storageUri": "gs://b"}},
         "parameters.storageUri", ErrorKind.UNSUPPORTED),
        ("imagen-4.0-generate-001", {"instances": [{"prompt": "x"}],
                                     "parameters": {"outputOptions": {"mimeType": "image/gif"}}},
         "parameters.outputOptions.mimeType", ErrorKind.INVALID),
        ("imagen-9", {"instances": [{"prompt": "x"}]}, "model", ErrorKind.UNKNOWN_MODEL),
    ],
)
def test_google_refusals(
    catalog: Catalog, model: str, body: dict[str, Any], parameter: str, kind: ErrorKind
) -> None:
    err = raises(google, catalog, model, body, 1)
    assert (err.parameter, err.kind) == (parameter, kind)


def test_google_error_shape() -> None:
    path = "/v1beta/models/imagen-4.0-generate-001:predict"
    bad = EaselError(ErrorKind.INVALID, "bad", "parameters.seed")
    status, body = rendered(google_routes.render_error, bad, path)
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT" and body["error"]["code"] == 400
    assert body["error"]["details"][0]["fieldViolations"][0]["field"] == "parameters.seed"
    unknown = EaselError(ErrorKind.UNKNOWN_MODEL, "x")
    assert rendered(google_routes.render_error, unknown, path)[1]["error"]["status"] == \
        "NOT_FOUND"
    assert google_translate.split_model_action("models/imagen-4.0-generate-001:predict") == (
        "imagen-4.0-generate-001", "predict")
