"""Google Imagen `:predict` <-> core (protocols.md §5, §7). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easel.api.dialects.common import ErrorTable, ImageSource, b64, ordered_images, validate_wire
from easel.api.dialects.google import edits
from easel.api.dialects.google.schemas import Parameters, PredictRequest
from easel.catalog import Catalog, Model
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job, JobImage
from easel.domain.request import ImageFormat
from easel.domain.safety import (
    EnhancementState,
    OnFlagged,
    PersonGeneration,
    SafetyInput,
    SafetyLevel,
    Withheld,
)
from easel.domain.submission import (
    Caller,
    GenerationInput,
    ModelChoice,
    Submission,
    WireNames,
    size_asked,
)
from easel.services.port import BackendFacts

DIALECT = "google"
PROVIDER = "google"
GEMINI_SERVICE = "generativelanguage.googleapis.com"
VERTEX_SERVICE = "aiplatform.googleapis.com"
API_KEY_INVALID = "API key not valid. Please pass a valid API key."
# Images per request when sampleCount is absent: the Gemini API documents 4, Vertex 1.
DEFAULT_COUNT_GEMINI = 4
DEFAULT_COUNT_VERTEX = 1
DEFAULT_JPEG_QUALITY = 75
FORMATS = {"image/png": ImageFormat.PNG, "image/jpeg": ImageFormat.JPEG}
LANGUAGES_HONOURED = ("auto", "en")
NAMES = WireNames({
    "prompt": "instances[0].prompt", "negative_prompt": "parameters.negativePrompt",
    "num_images": "parameters.sampleCount", "aspect_ratio": "parameters.aspectRatio",
    "resolution": "parameters.sampleImageSize", "seed": "parameters.seed",
    "output_quality": "parameters.outputOptions.compressionQuality",
    "guidance_scale": "parameters.guidanceScale",
    "image": "instances[0].image",  # the upscale model's (an edit names its reference image)
})

RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    # A body Google will not read is its INVALID_ARGUMENT ("Request payload size exceeds the
    # limit", "Invalid JSON payload received"): not RESOURCE_EXHAUSTED, which says "retry
    # later", when the same body will always be refused.
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

ERRORS = ErrorTable(
    {kind: kind.value for kind in ErrorKind},  # the RPC status string carries the meaning
    {ErrorKind.CANCELLED: 499, ErrorKind.CONTENT_BLOCKED: 400},
)


@dataclass(frozen=True)
class PredictCall:
    """A translated :predict call: the Submission and the fields easel accepted but ignores."""

    submission: Submission
    ignored: list[str] = field(default_factory=list)


def split_model_action(model_action: str) -> tuple[str, str]:
    """`imagen-4.0-generate-001:predict` -> (model, action); `models/` prefix tolerated."""
    model, sep, action = model_action.rpartition(":")
    if not sep:
        raise EaselError(ErrorKind.NOT_FOUND, f"no method on {model_action!r}; use "
                         f"{model_action}:predict", "model")
    return model.removeprefix("models/"), action


def to_submission(
    model_id: str, body: dict[str, Any], default_count: int, caller: Caller
) -> PredictCall:
    wire = validate_wire(PredictRequest, body)
    p = wire.parameters
    options = p.outputOptions
    fmt = FORMATS[options.mimeType] if options else ImageFormat.PNG
    quality = DEFAULT_JPEG_QUALITY
    if options is not None and options.compressionQuality is not None:
        quality = max(1, options.compressionQuality)  # 0 and 1 encode alike
    upscale = edits.upscaling(wire)
    # An upscale draws nothing: a seed has nothing to reproduce (named as ignored below).
    watermark = watermark_of(p) if upscale is None else p.addWatermark is not False
    drawn_from = upscale or edits.images_in(wire)
    # Google spells resolutions "1K"/"2K"; the catalog's are lower case. An edit with no
    # aspect ratio asked for keeps its image's shape.
    size = size_asked(p.aspectRatio, p.sampleImageSize.lower(), from_image=drawn_from is not None,
                      ratio_sent="aspectRatio" in p.model_fields_set,
                      # An upscale's size is its factor's: sampleImageSize is named ignored.
                      resolution_sent=upscale is None and "sampleImageSize" in p.model_fields_set)
    generation = GenerationInput(
        model=ModelChoice(model_id, provider=PROVIDER),
        prompt=edits.edit_prompt(wire) if upscale is None else "",
        size=size,
        # An upscale makes one image.
        num_images=p.sampleCount if p.sampleCount is not None else (
            1 if upscale is not None else default_count),
        negative_prompt=(p.negativePrompt or None) if upscale is None else None,
        seed=p.seed if upscale is None else None,
        output_format=fmt,
        output_quality=quality,
        guidance_scale=p.guidanceScale if upscale is None else None,
        safety=SafetyInput(SafetyLevel(p.safetySetting or "block_medium_and_above"),
                           OnFlagged.WITHHOLD,
                           PersonGeneration(p.personGeneration or "allow_adult")),
        watermark=watermark,
        # Imagen rewrites prompts by default; an upscale has none.
        enhance_prompt=p.enhancePrompt is not False and upscale is None,
        images_in=drawn_from,
    )
    echo = {"includeRaiReason": bool(p.includeRaiReason),
            "includeSafetyAttributes": bool(p.includeSafetyAttributes)}
    names = NAMES
    if drawn_from is not None:
        names = NAMES.with_(image=drawn_from.image.parameter, **(
            {"mask": drawn_from.mask.parameter} if drawn_from.mask is not None else {}))
    ignored = ignored_fields(wire, fmt)
    if upscale is not None:
        ignored += edits.ignored_by_upscale(wire)
    return PredictCall(Submission(DIALECT, caller, generation, names=names, echo=echo), ignored)


def watermark_of(p: Parameters) -> bool:
    """addWatermark defaults to on; a seed is honoured only with it off, as Vertex rules."""
    watermark = p.addWatermark is not False
    if watermark and p.seed is not None:
        raise invalid("parameters.seed", "Seed is not supported when watermark is enabled; set "
                                         "parameters.addWatermark to false to use a seed")
    return watermark


def served_models(catalog: Catalog) -> list[Model]:
    """The catalog's Google model ids, as models.list shows them."""
    return sorted(catalog.models_for(PROVIDER), key=lambda m: m.id)


def stand_in_words(facts: BackendFacts) -> str:
    """A stand-in as a reader should take it: easel's tiny pipelines are untrained (plumbing
    only); easel-mini is trained, for simple scenes."""
    if not facts.stand_in_trained:
        return f"the untrained stand-in {facts.stand_in} (for plumbing tests: its images are noise)"
    return (f"the offline stand-in {facts.stand_in} (easel-mini, a small trained model for "
            "simple scenes)")


def model_resource(model: Model, vertex: bool, facts: BackendFacts | None = None
                   ) -> dict[str, Any]:
    """One model as models.get returns it: the Gemini API's Model, or Vertex's PublisherModel.
    `facts`: what serves its backend here (a stand-in while its weights are absent)."""
    description = describe(model, facts)
    if vertex:
        return {"name": f"publishers/google/models/{model.id}", "versionId": "001",
                "displayName": model.tier.label, "description": description,
                "launchStage": "GA", "openSourceCategory": "PROPRIETARY"}
    return {"name": f"models/{model.id}", "version": "001", "displayName": model.tier.label,
            "description": description, "inputTokenLimit": 480,
            "supportedGenerationMethods": ["predict"]}


def describe(model: Model, facts: BackendFacts | None = None) -> str:
    """What serves a model id here, in words (models.list's description)."""
    backend = model.backend
    description = (f"{model.tier.label}, served by easel on {backend.source} "
                   f"({backend.family} family)")
    if facts is not None and facts.stand_in is not None:
        description += f"; its weights are absent here, so {stand_in_words(facts)} serves it"
    return description


def api_key_invalid_body(service: str) -> dict[str, Any]:
    """What Google answers for a bad or missing API key: 400 INVALID_ARGUMENT, ErrorInfo
    reason API_KEY_INVALID (google-genai raises ClientError 400 with that message)."""
    return {"error": {
        "code": 400, "message": API_KEY_INVALID, "status": "INVALID_ARGUMENT",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": service}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": API_KEY_INVALID},
        ],
    }}


UNREGISTERED_CALLER = ("Method doesn't allow unregistered callers (callers without established "
                       "identity). Please use API Key or other form of API consumer identity to "
                       "call this API.")


def unregistered_caller_body() -> dict[str, Any]:
    """No credential at all on the Gemini API: Google's 403 PERMISSION_DENIED (google-genai
    refuses a keyless call locally; raw REST clients get this)."""
    return {"error": {"code": 403, "message": UNREGISTERED_CALLER, "status": "PERMISSION_DENIED"}}


def unauthenticated_body() -> dict[str, Any]:
    """A bad OAuth bearer token on a Vertex path: 401 UNAUTHENTICATED, as Vertex answers it."""
    message = ("Request had invalid authentication credentials. Expected OAuth 2 access token, "
               "login cookie or other valid authentication credential.")
    return {"error": {
        "code": 401, "message": message, "status": "UNAUTHENTICATED",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED", "domain": "googleapis.com",
                     "metadata": {"service": VERTEX_SERVICE}}],
    }}


def ignored_fields(wire: PredictRequest, fmt: ImageFormat) -> list[str]:
    """Accepted fields easel cannot act on; the reply names them in a header."""
    p = wire.parameters
    ignored = [] if wire.labels is None else ["labels"]
    if p.language is not None and p.language.lower() not in LANGUAGES_HONOURED:
        ignored.append("language")
    if (
        p.outputOptions is not None
        and p.outputOptions.compressionQuality is not None
        and fmt is ImageFormat.PNG
    ):
        ignored.append("outputOptions.compressionQuality")
    if p.baseSteps is not None or (p.editConfig is not None and p.editConfig.baseSteps is not None):
        ignored.append("editConfig.baseSteps")  # Imagen's own step count; the tier has its own
    upscale = p.upscaleConfig
    for name in ("enhanceInputImage", "imagePreservationFactor"):
        if upscale is not None and getattr(upscale, name) is not None:
            ignored.append(f"upscaleConfig.{name}")  # tunes Imagen's generative upscaler
    return ignored


async def render(job: Job, images: ImageSource) -> dict[str, Any]:
    """predictions[]: one per delivered image. A withheld image is left out, or with
    includeRaiReason shows as a prediction carrying only its raiFilteredReason, as Google
    filters. `prompt` is the rewritten prompt when enhancePrompt rewrote it."""
    mime = job.request.output_format.mime
    with_reason = bool(job.echo.get("includeRaiReason"))
    with_attributes = bool(job.echo.get("includeSafetyAttributes"))
    rewritten = job.request.enhancement is EnhancementState.REWRITTEN
    predictions: list[dict[str, Any]] = []
    for image in ordered_images(job):
        if image.withheld is not None:
            if with_reason:
                predictions.append({"raiFilteredReason": rai_reason(image)})
            continue
        prediction: dict[str, Any] = {"bytesBase64Encoded": b64(await images.image_bytes(image)),
                                      "mimeType": image.mime or mime}
        if rewritten:
            prediction["prompt"] = job.request.prompt
        if with_attributes and image.scores is not None:
            prediction["safetyAttributes"] = safety_attributes(image.scores)
        predictions.append(prediction)
    return {"predictions": predictions}


def rai_reason(image: JobImage) -> str:
    if image.withheld is Withheld.PERSON:
        return ("This image was filtered because it shows a person and personGeneration is "
                "dont_allow. Try rephrasing the prompt, or allow people.")
    return ("This image was filtered by the safety setting (sexual content). You will not be "
            "charged for filtered images. Try rephrasing the prompt.")


def safety_attributes(scores: dict[str, float]) -> dict[str, Any]:
    """The detector's scores in Google's safetyAttributes shape."""
    return {"categories": ["Sexual", "Person"],
            "scores": [scores.get("nsfw", 0.0), scores.get("person", 0.0)]}


def error_body(status: int, message: str, parameter: str | None = None) -> dict[str, Any]:
    """A Google RPC error; a named parameter also rides in a BadRequest field violation."""
    error: dict[str, Any] = {
        "code": status, "message": message, "status": RPC_STATUS.get(status, "UNKNOWN")
    }
    if parameter and status == 400:
        error["details"] = [{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": parameter, "description": message}],
        }]
    return {"error": error}
