"""Runware's wire format: one pydantic model per task type, which both parses the tasks (each
problem one Runware error naming the parameter: missingX, invalidX, unsupportedX,
unsupportedParameter) and documents them in /openapi.json, so the two cannot drift; and the
error shape.

Only Runware's own wire rules live here (field types, enums, outputQuality 20..99, ttl >= 60).
Sizes, prompt limits, image counts and prices belong to the catalog and are checked there.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from easel.api.openapi import Open, model_schema
from easel.catalog import did_you_mean
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.lora import LoraChoice
from easel.domain.request import ImageFormat
from easel.domain.submission import ImageInput, ImagesIn, MaskRule, Outpaint

DOCS = "https://runware.ai/docs/en/image-inference/api-reference"

IMAGE_FIELDS = {"URL": "imageURL", "base64Data": "imageBase64Data", "dataURI": "imageDataURI"}
OUTPUT_FORMATS = {"JPG": ImageFormat.JPEG, "JPEG": ImageFormat.JPEG, "PNG": ImageFormat.PNG,
                  "WEBP": ImageFormat.WEBP}
MIN_TTL = 60
QUALITY_RANGE = (20, 99)


class RunwareError(EaselError):
    """One entry of Runware's `errors` array, with the HTTP status a REST reply should carry.
    An EaselError, so one raised for a whole request is rendered by the dialect's renderer."""

    def __init__(
        self,
        code: str,
        message: str,
        parameter: str | None = None,
        *,
        status: int = 400,
        task_type: str | None = None,
        task_uuid: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(ErrorKind.INVALID, message, parameter)
        self.retry_after = retry_after  # seconds, when the refusal says when to come back
        self.code = code
        self.status = status
        self.task_type = task_type
        self.task_uuid = task_uuid

    def for_task(self, task_type: str | None, task_uuid: str | None) -> RunwareError:
        self.task_type = self.task_type or task_type
        self.task_uuid = self.task_uuid or task_uuid
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter is not None:
            out["parameter"] = self.parameter
        if self.task_type is not None:
            out["taskType"] = self.task_type
        if self.task_uuid is not None:
            out["taskUUID"] = self.task_uuid
        out["documentation"] = DOCS
        return out


TASK_TYPE = "imageInference"  # the task that draws images


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


# -- field types: Runware's rules for one value, raised as the error types _error reads --------


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid", message)


def _unsupported(message: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported", message)


def _integral(value: Any) -> int:
    # JSON has one number type; 2.0 is accepted as 2, 2.5 and true are not integers.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"must be an integer, got {value!r}"[:200])
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"must be a number, got {value!r}"[:200])
    return float(value)


def _finite_json(value: Any) -> Any:
    """A free-form object (providerSettings, settings) as JSON can carry it: Python's parser
    reads NaN and Infinity, but an object holding one could be stored and never echoed back
    (getTaskDetails' reply would not be JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(f"holds {value!r}, which JSON cannot carry")
    for item in value.values() if isinstance(value, dict) else \
            value if isinstance(value, list) else ():
        _finite_json(item)
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(_finite_json)]


def _task_uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("must be a UUID string")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise _invalid(f"{value[:64]!r} is not a valid UUID") from None
    if str(parsed) != value.lower():
        raise _invalid("must be written as 8-4-4-4-12 hexadecimal digits")
    return value


def _output_types(value: Any) -> Any:
    values = value if isinstance(value, list) else [value]
    if not values or any(not isinstance(v, str) or v not in IMAGE_FIELDS for v in values):
        raise _unsupported(f"must be one of {', '.join(IMAGE_FIELDS)}, got {str(value)[:100]}")
    return value


def _output_format(value: Any) -> Any:
    if not isinstance(value, str) or value.upper() not in OUTPUT_FORMATS:
        raise _unsupported(f"must be JPG, PNG or WEBP, got {value!r}"[:200])
    return value.upper()


WireInt = Annotated[int, BeforeValidator(_integral)]
WireFloat = Annotated[float, BeforeValidator(_number)]
TaskUUID = Annotated[str, BeforeValidator(_task_uuid),
                     Field(description="UUID v4; the idempotency key", examples=[
                         "3f2c1a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f"])]
OutputType = Literal["URL", "base64Data", "dataURI"]


class _Task(BaseModel):
    # JSON null reads as an absent field, as every field here has a default or is required.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class Safety(_Task):
    """Runware's content check settings (docs/safety.md): checkContent and mode."""

    checkContent: StrictBool | None = None
    checkInputs: StrictBool | None = None
    tolerance: StrictBool | None = None
    mode: Literal["none", "fast", "full"] | None = None


class Lora(_Task):
    """One adapter (Runware's `lora` items): an allow-listed name or an AIR id the operator
    mapped to one (`easel lora add --air`), and its weight (-4..4; absent: the adapter's
    default, 1 unless the operator set another)."""

    model: StrictStr
    weight: WireFloat | None = None


class Inputs(_Task):
    """The `inputs` object of newer models: the same images under other names."""

    image: StrictStr | None = None
    seedImage: StrictStr | None = None
    mask: StrictStr | None = None
    maskImage: StrictStr | None = None
    referenceImages: list[Any] | None = None
    images: list[Any] | None = None
    references: list[Any] | None = None


class OutpaintMargins(_Task):
    """`outpaint`: extend seedImage by these many pixels each side (multiples of 64) and draw
    the new area; `blur` (0..32) pixels of the image along each new edge are redrawn too."""

    top: Annotated[WireInt, Field(ge=0)] = 0
    right: Annotated[WireInt, Field(ge=0)] = 0
    bottom: Annotated[WireInt, Field(ge=0)] = 0
    left: Annotated[WireInt, Field(ge=0)] = 0
    blur: Annotated[WireInt, Field(ge=0, le=32)] = 0

    @field_validator("top", "right", "bottom", "left")
    @classmethod
    def _steps_of_64(cls, margin: int) -> int:
        if margin % 64:
            raise _invalid(f"must be a multiple of 64, got {margin}")
        return margin

    @model_validator(mode="after")
    def _margins(self) -> OutpaintMargins:
        if not (self.top or self.right or self.bottom or self.left):
            raise _invalid("extends nothing: give top, right, bottom or left")
        return self


class _Delivered(_Task):
    """What every task that makes images takes for its output and its delivery."""

    outputType: Annotated[OutputType | list[OutputType], BeforeValidator(_output_types)] = "URL"
    outputFormat: Annotated[Literal["JPG", "JPEG", "PNG", "WEBP"],
                            BeforeValidator(_output_format),
                            Field(description="Any case")] = "JPG"
    outputQuality: Annotated[WireInt, Field(ge=QUALITY_RANGE[0], le=QUALITY_RANGE[1])] = 95
    deliveryMethod: Literal["sync", "async"] = "sync"
    ttl: Annotated[WireInt, Field(ge=MIN_TTL, description="Seconds an image URL lives")] | None \
        = None
    includeCost: StrictBool = False
    safety: Safety | None = None
    webhookURL: StrictStr | None = None
    uploadEndpoint: StrictStr | None = None

    @model_validator(mode="after")
    def _ttl_of_urls(self) -> _Delivered:
        if self.ttl is not None and "URL" not in self.output_types:
            raise RunwareError("invalidTtl", "ttl applies to URL outputs only (outputType URL)",
                               "ttl")
        return self

    @property
    def output_types(self) -> tuple[str, ...]:
        values = self.outputType if isinstance(self.outputType, list) else [self.outputType]
        return tuple(dict.fromkeys(values))


class ImageInferenceTask(_Delivered):
    taskType: Literal["imageInference"]
    taskUUID: TaskUUID
    model: StrictStr
    positivePrompt: StrictStr
    negativePrompt: StrictStr | None = None
    width: WireInt | None = Field(None, description="With height: one of the model's sizes")
    height: WireInt | None = None
    numberResults: WireInt = 1
    seed: WireInt | None = None
    checkNSFW: StrictBool | None = Field(None, description="Legacy: safety.checkContent")
    checkNsfw: StrictBool | None = Field(None, description="Legacy: safety.checkContent")
    providerSettings: FreeForm | None = Field(
        None, description="providerSettings.google.enhancePrompt rewrites the prompt")
    steps: WireInt | None = None
    CFGScale: WireFloat | None = None
    scheduler: StrictStr | None = None
    lora: list[Lora] | None = Field(None, description="LoRA adapters this server allow-lists")
    # Images in (docs/runware.md): each a UUID of an upload or of an image of the caller's
    # tasks, a data URI, base64 or a public URL.
    seedImage: StrictStr | None = Field(None, description="Draw from this image")
    maskImage: StrictStr | None = Field(None, description="White is repainted (needs seedImage)")
    strength: Annotated[WireFloat, Field(gt=0, le=1)] | None = Field(
        None, description="How far from seedImage (0..1]; default 0.8")
    inputs: Inputs | None = None
    maskMargin: WireInt | None = None
    referenceImages: list[Any] | None = None
    outpaint: OutpaintMargins | None = Field(
        None, description="Extend seedImage: top, right, bottom, left (multiples of 64), blur")

    @model_validator(mode="after")
    def _together(self) -> ImageInferenceTask:
        if (self.width is None) != (self.height is None):
            name = "height" if self.height is None else "width"
            raise RunwareError(f"missing{_cap(name)}", f"{name} is required", name)
        return self


class _Poll(_Task):
    # A poll reads its taskUUID; other fields are left alone, as Runware's API does.
    model_config = ConfigDict(extra="allow")

    taskUUID: TaskUUID


class GetResponseTask(_Poll):
    taskType: Literal["getResponse"]


class GetTaskDetailsTask(_Poll):
    taskType: Literal["getTaskDetails"]


SearchSort = Literal["_score", "-_score", "popularity", "-popularity", "name", "-name",
                     "addedUnixTimestamp", "-addedUnixTimestamp", "updatedDateUnixTimestamp",
                     "-updatedDateUnixTimestamp"]


class ModelSearchTask(_Task):
    """Runware's model search (runware-sdk `model_search`, legacy `modelSearch`): the models
    this server serves, filtered and paged."""

    taskType: Literal["modelSearch"]
    taskUUID: TaskUUID | None = None
    search: StrictStr | None = None
    tags: list[StrictStr] | None = None
    category: StrictStr | None = None
    type: StrictStr | None = None
    architecture: StrictStr | None = None
    conditioning: StrictStr | None = None
    capabilities: list[StrictStr] | None = None
    visibility: Literal["public", "private", "all", "favorite", "owned"] | None = None
    source: Literal["official", "community"] | None = None
    sort: SearchSort | None = None
    limit: WireInt = Field(20, ge=1, le=100)
    offset: WireInt = Field(0, ge=0)


class AuthenticationTask(_Task):
    model_config = ConfigDict(extra="allow")

    taskType: Literal["authentication"]
    apiKey: str
    connectionSessionUUID: str | None = None


class PingTask(_Task):
    model_config = ConfigDict(extra="allow")

    taskType: Literal["ping"]
    ping: bool | None = None


class ImageUploadTask(_Task):
    """Runware's imageUpload: an image kept to be named by its imageUUID in later tasks."""

    taskType: Literal["imageUpload"]
    taskUUID: TaskUUID
    image: StrictStr = Field(description="A data URI, base64 or a public URL")


UPSCALE_TASK_TYPES = ("upscale", "imageUpscale")  # today's name, and the legacy SDK's
IMAGE_TASK_TYPES = (TASK_TYPE, *UPSCALE_TASK_TYPES)  # the tasks that make images


class UpscaleInputs(_Task):
    image: StrictStr | None = None


class UpscaleTask(_Delivered):
    """Runware's `upscale` (runware-sdk, today's docs) and `imageUpscale` (runware 0.5.24):
    `inputImage` or `inputs.image` enlarged `upscaleFactor` times each side."""

    taskType: Literal["upscale", "imageUpscale"]
    taskUUID: TaskUUID
    model: StrictStr | None = Field(None, description="An upscaler's AIR; absent: the first")
    inputImage: StrictStr | None = Field(None, description="The image to enlarge")
    inputs: UpscaleInputs | None = None
    upscaleFactor: WireInt = Field(2, description="2, 3 or 4")
    targetMegapixels: WireInt | None = None
    settings: FreeForm | None = None


TASKS: tuple[type[BaseModel], ...] = (ImageInferenceTask, GetResponseTask, GetTaskDetailsTask,
                                      ModelSearchTask, AuthenticationTask, PingTask,
                                      ImageUploadTask, UpscaleTask)


class Envelope(Open):
    data: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] | None = None


def tasks_schema() -> dict[str, Any]:
    """The request body as /openapi.json documents it: an array of any of the task models."""
    return {"type": "array", "minItems": 1, "items": {"anyOf": [model_schema(t) for t in TASKS]}}


# -- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """What a task that makes images asks of its images and their delivery (_Delivered)."""

    types: tuple[str, ...]
    format: ImageFormat
    quality: int
    delivery_method: str
    ttl: int | None
    include_cost: bool
    safety: dict[str, Any]
    webhook_url: str | None
    upload_endpoint: str | None


def _output(wire: _Delivered, safety: dict[str, Any]) -> Output:
    return Output(types=wire.output_types, format=OUTPUT_FORMATS[wire.outputFormat],
                  quality=wire.outputQuality, delivery_method=wire.deliveryMethod, ttl=wire.ttl,
                  include_cost=wire.includeCost, safety=safety, webhook_url=wire.webhookURL,
                  upload_endpoint=wire.uploadEndpoint)


def _safety(wire: _Delivered) -> dict[str, Any]:
    return wire.safety.model_dump(exclude_none=True) if wire.safety is not None else {}


@dataclass(frozen=True)
class ImageInference:
    task_uuid: str
    model: str
    positive_prompt: str
    negative_prompt: str | None
    width: int | None
    height: int | None
    number_results: int
    seed: int | None
    output: Output
    provider_settings: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    cfg_scale: float | None = None
    scheduler: str | None = None
    loras: tuple[LoraChoice, ...] = ()
    images_in: ImagesIn | None = None


def parse_image_inference(task: dict[str, Any]) -> ImageInference:
    wire = _validated(ImageInferenceTask, task)
    assert isinstance(wire, ImageInferenceTask)
    safety = _safety(wire)
    if wire.checkNSFW or wire.checkNsfw:
        safety.setdefault("checkContent", True)
    return ImageInference(
        task_uuid=wire.taskUUID, model=wire.model, positive_prompt=wire.positivePrompt,
        negative_prompt=wire.negativePrompt, width=wire.width, height=wire.height,
        number_results=wire.numberResults, seed=wire.seed, output=_output(wire, safety),
        provider_settings=wire.providerSettings or {},
        steps=wire.steps, cfg_scale=wire.CFGScale, scheduler=wire.scheduler,
        loras=tuple(LoraChoice(lora.model, lora.weight) for lora in wire.lora or ()),
        images_in=images_in(wire),
    )


def images_in(wire: ImageInferenceTask) -> ImagesIn | None:
    """seedImage (or inputs.image / inputs.seedImage), maskImage (or inputs.mask /
    inputs.maskImage) and strength; what easel does not draw yet is refused by name."""
    inputs = wire.inputs or Inputs()
    for name, value in (("maskMargin", wire.maskMargin), ("inputs.images", inputs.images),
                        ("inputs.references", inputs.references)):
        if value is not None:
            raise RunwareError(f"unsupported{_cap(name.rpartition('.')[2])}",
                               f"{name} is not served yet: {NOT_YET[name.rpartition('.')[2]]}",
                               name)
    seed = _one_of(("seedImage", wire.seedImage), ("inputs.image", inputs.image),
                   ("inputs.seedImage", inputs.seedImage))
    mask = _one_of(("maskImage", wire.maskImage), ("inputs.mask", inputs.mask),
                   ("inputs.maskImage", inputs.maskImage))
    shown = _references(wire, inputs)
    if wire.outpaint is not None:
        return _outpainting(wire, seed, mask, shown)
    if shown:  # an edit by instruction: the model is shown the images (and seedImage first)
        first, *more = ((seed,) if seed is not None else ()) + shown
        return ImagesIn(first, mask, wire.strength, MaskRule.WHITE, instruction=True,
                        references=tuple(more), check_inputs=_checks_inputs(wire))
    if seed is None:
        needing = [name for name, given in (("maskImage", mask is not None),
                                            ("strength", wire.strength is not None)) if given]
        if needing:
            raise RunwareError("missingSeedImage", f"{needing[0]} needs seedImage, the image "
                               "to draw from", "seedImage")
        return None
    return ImagesIn(seed, mask, wire.strength, MaskRule.WHITE,
                    check_inputs=_checks_inputs(wire))


def _outpainting(wire: ImageInferenceTask, seed: ImageInput | None, mask: ImageInput | None,
                 shown: tuple[ImageInput, ...]) -> ImagesIn:
    """seedImage extended by the margins, the new area drawn afresh (strength 1 unless the
    client sends one): easel makes the mask, so none may be sent, nor references."""
    margins = wire.outpaint
    assert margins is not None
    if seed is None:
        raise RunwareError("missingSeedImage", "outpaint needs seedImage, the image to extend",
                           "seedImage")
    for given in (mask, *shown):
        if given is not None:
            raise RunwareError("unsupportedParameter", f"{given.parameter}: outpaint makes its "
                               "own mask (the new area) and extends one image; send seedImage "
                               "and outpaint alone", given.parameter)
    outpaint = Outpaint(margins.top, margins.right, margins.bottom, margins.left, margins.blur)
    return ImagesIn(seed, None, wire.strength, MaskRule.WHITE, default_strength=1.0,
                    check_inputs=_checks_inputs(wire), outpaint=outpaint)


def _checks_inputs(wire: ImageInferenceTask) -> bool:
    """Runware checks input images when safety.checkInputs asks (it flags, never withholds,
    its outputs)."""
    return bool(wire.safety is not None and wire.safety.checkInputs)


NOT_YET = {
    "maskMargin": "send the mask alone (the whole image is inpainted at once)",
    "images": "send the images as referenceImages",
    "references": "send the images as referenceImages",
}


def _references(wire: ImageInferenceTask, inputs: Inputs) -> tuple[ImageInput, ...]:
    """referenceImages (or inputs.referenceImages): strings, or {image: ...} objects."""
    listed, name = wire.referenceImages, "referenceImages"
    if inputs.referenceImages is not None:
        if listed is not None:
            raise RunwareError("conflictingReferenceImages", "give referenceImages or "
                               "inputs.referenceImages, not both", "inputs.referenceImages")
        listed, name = inputs.referenceImages, "inputs.referenceImages"
    shown = []
    for i, item in enumerate(listed or ()):
        value = item.get("image") if isinstance(item, dict) else item
        if not isinstance(value, str):
            raise RunwareError(f"invalid{_cap(name.rpartition('.')[2])}", f"{name}[{i}] must be "
                               "an image (a UUID, data URI, base64 or URL) or {\"image\": ...}",
                               f"{name}[{i}]")
        shown.append(ImageInput(f"{name}[{i}]", text=value))
    return tuple(shown)


def _one_of(*named: tuple[str, str | None]) -> ImageInput | None:
    given = [(name, value) for name, value in named if value is not None]
    if len(given) > 1:
        raise RunwareError(f"conflicting{_cap(given[1][0].rpartition('.')[2])}",
                           f"give one of {', '.join(n for n, _ in named)}, not "
                           f"{' and '.join(n for n, _ in given)}", given[1][0])
    return None if not given else ImageInput(given[0][0], text=given[0][1])


@dataclass(frozen=True)
class Upscaling:
    """An upscale task as the core takes it, with Runware's own output settings."""

    task_type: str  # as sent: its results carry it back
    task_uuid: str
    model: str | None
    image: ImageInput
    factor: int
    output: Output


def parse_upscale(task: dict[str, Any]) -> Upscaling:
    wire = _validated(UpscaleTask, task)
    assert isinstance(wire, UpscaleTask)
    for name, value, why in (
            ("targetMegapixels", wire.targetMegapixels, "ask for an upscaleFactor (2, 3 or 4)"),
            ("settings", wire.settings, "the upscaler served here is not generative and takes "
                                        "no settings")):
        if value is not None:
            raise RunwareError(f"unsupported{_cap(name)}", f"{name} is not served: {why}", name)
    image = _one_of(("inputImage", wire.inputImage),
                    ("inputs.image", (wire.inputs or UpscaleInputs()).image))
    if image is None:
        raise RunwareError("missingInputImage", "inputImage (or inputs.image) is required: the "
                           "image to upscale", "inputImage")
    return Upscaling(
        task_type=wire.taskType, task_uuid=wire.taskUUID, model=wire.model, image=image,
        factor=wire.upscaleFactor, output=_output(wire, _safety(wire)))


def parse_image_upload(task: dict[str, Any]) -> ImageUploadTask:
    wire = _validated(ImageUploadTask, task)
    assert isinstance(wire, ImageUploadTask)
    return wire


def parse_model_search(task: dict[str, Any]) -> ModelSearchTask:
    wire = _validated(ModelSearchTask, task)
    assert isinstance(wire, ModelSearchTask)
    return wire


def task_uuid(task: dict[str, Any]) -> str:
    """The taskUUID of a getResponse or getTaskDetails task."""
    model = GetTaskDetailsTask if task.get("taskType") == "getTaskDetails" else GetResponseTask
    wire = _validated(model, task)
    assert isinstance(wire, _Poll)
    return wire.taskUUID


def _validated(model: type[BaseModel], task: dict[str, Any]) -> BaseModel:
    try:
        return model.model_validate(task)
    except ValidationError as exc:
        raise _error(exc, str(task.get("taskType"))[:64], tuple(model.model_fields)) from None


def _error(exc: ValidationError, task_type: str = TASK_TYPE,
           known: tuple[str, ...] = ()) -> RunwareError:
    """The one problem a client is told about, as Runware words it: a bad taskUUID first (the
    task cannot even be named), then a field easel does not know, then the rest in order."""
    errors = exc.errors()
    first = min(range(len(errors)), key=lambda i: (_rank(errors[i]), i))
    return _runware_error(errors[first], task_type, known)


def _rank(error: Any) -> tuple[int, str]:
    name = str(error["loc"][0]) if error["loc"] else ""
    if name == "taskUUID":
        return 0, ""
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        return 1, name
    return 2, ""


def _runware_error(error: Any, task_type: str, known: tuple[str, ...] = ()) -> RunwareError:
    loc = [str(part) for part in error["loc"]]
    name = loc[0] if loc else "task"
    etype = error["type"]
    # Nested: named as a whole, like Runware.
    if len(loc) > 1 and name in ("safety", "lora", "outpaint"):
        code, where = f"invalid{_cap(name)}", ".".join(loc)
        if etype == "extra_forbidden":
            return RunwareError(code, f"{where.rpartition('.')[0]} has no field {loc[-1]!r}",
                                name)
        return RunwareError(code, _message(where, error), name)
    if etype == "missing":
        return RunwareError(f"missing{_cap(name)}", f"{name} is required", name)
    if etype == "extra_forbidden":
        models = " for these models" if task_type == TASK_TYPE else ""
        return RunwareError("unsupportedParameter", f"{task_type} does not support {name!r}"
                            f"{models}{did_you_mean(name, known)}", name)
    prefix = "unsupported" if etype in ("unsupported", "literal_error") else "invalid"
    return RunwareError(f"{prefix}{_cap(name)}", _message(name, error), name)


def _message(name: str, error: Any) -> str:
    """What is wrong with one value, in the words the hand-written rules use."""
    etype, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    if etype in ("invalid", "unsupported"):
        return f"{name} {error['msg']}"
    if etype == "literal_error":
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{name} must be one of {allowed}, got {got!r}"[:300]
    if etype == "greater_than_equal":
        return f"{name} must be at least {ctx.get('ge')}, got {got!r}"
    if etype == "less_than_equal":
        return f"{name} must be at most {ctx.get('le')}, got {got!r}"
    if etype.startswith("bool"):
        return f"{name} must be true or false, got {got!r}"[:200]
    if etype.startswith("string"):
        return f"{name} must be a string, got {type(got).__name__}"
    if etype in ("dict_type", "model_type", "model_attributes_type"):
        return f"{name} must be an object"
    return f"{name}: {error['msg']}, got {str(got)[:80]!r}"
