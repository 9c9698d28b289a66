"""The Gemini image API (`generateContent`) <-> core: text to image on the Gemini image model
ids (docs/gemini.md). Pure functions; the routes are google/routes.py's.

What a request means here:
- the prompt is the text of the conversation's last user turn, after the system instruction's
  text (an image model has no separate channel for it);
- images in the conversation ask for an edit by instruction: those of the last user turn, or,
  when it has none, the conversation's latest image (the one a chat's model turn returned, as
  the SDK resends it), up to 14; the Fast model is shown them all (FLUX.2 reference editing),
  the others redraw one (image-to-image), and no aspect ratio asked for keeps its shape;
- `candidateCount` images, one a candidate; `imageConfig.aspectRatio` and `imageSize` pick the
  size from the model's table (catalog.toml); `seed`; the sexually-explicit safety setting and
  `personGeneration` set easel's content check, which withholds as Google does;
- the sampling fields of text models (temperature, topP, ...) are taken and named in the reply's
  x-easel-ignored-fields header.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from easel.api.dialects.common import ImageSource, b64, iso_ms, ordered_images, validate_wire
from easel.api.dialects.google.gemini_schemas import (
    Content,
    GenerateContentRequest,
    GenerationConfig,
    ImageConfig,
    Part,
)
from easel.catalog import Catalog, Model
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.generation import Operation
from easel.domain.job import Job, JobImage
from easel.domain.request import ImageFormat
from easel.domain.safety import OnFlagged, PersonGeneration, SafetyInput, SafetyLevel, Withheld
from easel.domain.submission import (
    Caller,
    GenerationInput,
    ImageInput,
    ImagesIn,
    ModelChoice,
    Submission,
    WireNames,
    size_asked,
)

DIALECT = "google"
PROVIDER = "gemini"
GENERATE = "generateContent"
STREAM = "streamGenerateContent"
DEFAULT_JPEG_QUALITY = 75
CHARACTERS_PER_TOKEN = 4  # Google's rule of thumb for text tokens, as its docs state it
NAMES = WireNames({
    "prompt": "contents", "num_images": "generationConfig.candidateCount",
    "aspect_ratio": "generationConfig.imageConfig.aspectRatio",
    "resolution": "generationConfig.imageConfig.imageSize",
    "seed": "generationConfig.seed",
    "output_quality": "generationConfig.imageConfig.imageOutputOptions.compressionQuality",
    "model": "model",
})
FORMATS = {"image/png": ImageFormat.PNG, "image/jpeg": ImageFormat.JPEG}
THRESHOLDS = {
    "BLOCK_LOW_AND_ABOVE": SafetyLevel.BLOCK_LOW_AND_ABOVE,
    "BLOCK_MEDIUM_AND_ABOVE": SafetyLevel.BLOCK_MEDIUM_AND_ABOVE,
    "BLOCK_ONLY_HIGH": SafetyLevel.BLOCK_ONLY_HIGH,
    "BLOCK_NONE": SafetyLevel.BLOCK_NONE,
    "OFF": SafetyLevel.BLOCK_NONE,
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED": SafetyLevel.BLOCK_MEDIUM_AND_ABOVE,
}
# The categories easel's detector judges (nudity); the others have no check here to set.
SEXUAL = ("HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT")
CATEGORIES = (*SEXUAL, "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
              "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY",
              "HARM_CATEGORY_IMAGE_HATE", "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
              "HARM_CATEGORY_IMAGE_HARASSMENT", "HARM_CATEGORY_JAILBREAK",
              "HARM_CATEGORY_UNSPECIFIED")
STRICTNESS = [SafetyLevel.BLOCK_LOW_AND_ABOVE, SafetyLevel.BLOCK_MEDIUM_AND_ABOVE,
              SafetyLevel.BLOCK_ONLY_HIGH, SafetyLevel.BLOCK_NONE]
PEOPLE = {"ALLOW_ALL": PersonGeneration.ALLOW_ALL, "ALLOW_ADULT": PersonGeneration.ALLOW_ADULT,
          "ALLOW_NONE": PersonGeneration.DONT_ALLOW}
IGNORED = ("temperature", "top_p", "top_k", "max_output_tokens", "stop_sequences",
           "presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class GeminiCall:
    """A translated generateContent call: the Submission, whether the reply carries a text
    part, whether progress may be streamed as thoughts, the fields taken but ignored, and
    whether it came on a Vertex AI path (whose replies say when they were made)."""

    submission: Submission
    model: Model
    with_text: bool
    thoughts: bool
    ignored: list[str] = field(default_factory=list)
    vertex: bool = False


def to_submission(model: Model, body: dict[str, Any], caller: Caller, vertex: bool = False
                  ) -> GeminiCall:
    wire = validate_wire(GenerateContentRequest, body)
    config = wire.generation_config or GenerationConfig()
    image = config.image_config or ImageConfig()
    modalities = _modalities(config)
    fmt, quality = _output_format(image)
    edited = images_in(wire)
    resolution = _resolution(model, image)
    generation = GenerationInput(
        model=ModelChoice(model.id, provider=PROVIDER),
        prompt=prompt_of(wire),
        size=size_asked(image.aspect_ratio or "1:1", resolution, from_image=edited is not None,
                        ratio_sent=image.aspect_ratio is not None,
                        resolution_sent=image.image_size is not None),
        num_images=1 if config.candidate_count is None else config.candidate_count,
        seed=config.seed,
        output_format=fmt,
        output_quality=quality,
        safety=SafetyInput(_safety_level(wire), OnFlagged.WITHHOLD,
                           PEOPLE[image.person_generation or "ALLOW_ALL"]),
        images_in=edited,
    )
    thinking = config.thinking_config
    names = NAMES if edited is None else NAMES.with_(image=edited.image.parameter)
    return GeminiCall(
        Submission(DIALECT, caller, generation, names=names), model,
        with_text="TEXT" in modalities,
        thoughts=bool(thinking and thinking.include_thoughts),
        ignored=[_camel(name) for name in IGNORED if getattr(config, name) is not None]
        + (["labels"] if wire.labels is not None else []),
        vertex=vertex)


def _resolution(model: Model, image: ImageConfig) -> str:
    """The catalog's resolution for `imageSize`, refused in Google's spelling (1K, 2K) when
    the model does not draw it here."""
    size = image.image_size or "1K"
    offered = [resolution.upper() for resolution in model.resolutions]
    if size not in offered:
        raise invalid(NAMES("resolution"), f"imageSize {size[:20]!r} is not served for "
                                           f"{model.id} here; it draws {', '.join(offered)}")
    return size.lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return "generationConfig." + head + "".join(word.title() for word in rest)


def _modalities(config: GenerationConfig) -> list[str]:
    """TEXT and IMAGE when not given (what Google's image models answer with)."""
    if config.response_modalities is None:
        return ["TEXT", "IMAGE"]
    if "IMAGE" not in config.response_modalities:
        raise invalid("generationConfig.responseModalities",
                      "generationConfig.responseModalities must include IMAGE: this model "
                      "answers with images (and optionally TEXT)")
    return list(config.response_modalities)


def _output_format(image: ImageConfig) -> tuple[ImageFormat, int]:
    options = image.image_output_options
    mime = (options.mime_type if options else None) or "image/png"
    if mime not in FORMATS:
        raise invalid("generationConfig.imageConfig.imageOutputOptions.mimeType",
                      f"imageOutputOptions.mimeType must be image/png or image/jpeg, got "
                      f"{mime[:60]!r}")
    quality = DEFAULT_JPEG_QUALITY
    if options is not None and options.compression_quality is not None:
        quality = max(1, options.compression_quality)
    return FORMATS[mime], quality


MAX_IMAGES = 14  # images one request may carry (Gemini 3's documented limit)


def images_in(wire: GenerateContentRequest) -> ImagesIn | None:
    """The images to edit: the last user turn's, else the conversation's latest one (a chat's
    earlier answer); None when there is none (text to image)."""
    found = [[_image(part, f"contents[{i}].parts[{j}]")
              for j, part in enumerate(content.parts) if _is_image(part)]
             for i, content in enumerate(wire.contents)]
    shown = found[-1] or next(([turn[-1]] for turn in reversed(found) if turn), [])
    if not shown:
        return None
    if len(shown) > MAX_IMAGES:
        raise invalid(shown[MAX_IMAGES].parameter, f"at most {MAX_IMAGES} images a turn, got "
                                                   f"{len(shown)}")
    return ImagesIn(shown[0], instruction=True, references=tuple(shown[1:]))


def _is_image(part: Part) -> bool:
    return part.inline_data is not None or part.file_data is not None


def _image(part: Part, where: str) -> ImageInput:
    if part.inline_data is not None:
        return ImageInput(f"{where}.inlineData.data", text=part.inline_data.data)
    assert part.file_data is not None
    uri = part.file_data.file_uri
    if not uri.lower().startswith(("http://", "https://")) or "/v1beta/files/" in uri or \
            "/v1/files/" in uri:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{where}.fileData.fileUri {uri[:100]!r}: easel "
                         "reads no Cloud Storage or Files API uploads; send the image inline "
                         "(inlineData) or a public https URL", f"{where}.fileData.fileUri")
    return ImageInput(f"{where}.fileData.fileUri", text=uri)


def prompt_of(wire: GenerateContentRequest) -> str:
    """The system instruction's text, then the last user turn's."""
    last = len(wire.contents) - 1
    if wire.contents[last].role == "model":
        raise invalid(f"contents[{last}].role", "the conversation must end with a user turn")
    system = _text_of(wire.system_instruction) if wire.system_instruction else ""
    prompt = _text_of(wire.contents[last])
    if not prompt.strip():
        raise EaselError(ErrorKind.MISSING, f"contents[{last}] has no text to draw from",
                         f"contents[{last}].parts")
    return f"{system}\n\n{prompt}" if system.strip() else prompt


def _text_of(content: Content) -> str:
    return "\n".join(part.text for part in content.parts
                     if part.text is not None and not part.thought)


def _safety_level(wire: GenerateContentRequest) -> SafetyLevel:
    """The strictest threshold given for the sexually-explicit categories (the ones easel's
    detector judges); Google's default, medium and above, when none is."""
    levels = []
    for i, setting in enumerate(wire.safety_settings or []):
        if setting.category not in CATEGORIES:
            raise invalid(f"safetySettings[{i}].category",
                          f"safetySettings[{i}].category {setting.category[:60]!r} is not a "
                          "harm category")
        if setting.threshold not in THRESHOLDS:
            raise invalid(f"safetySettings[{i}].threshold",
                          f"safetySettings[{i}].threshold must be one of "
                          f"{', '.join(THRESHOLDS)}, got {setting.threshold[:60]!r}")
        if setting.category in SEXUAL:
            levels.append(THRESHOLDS[setting.threshold])
    return min(levels, key=STRICTNESS.index) if levels else SafetyLevel.BLOCK_MEDIUM_AND_ABOVE


# -- replies ---------------------------------------------------------------------------------


def prompt_tokens(prompt: str) -> int:
    return max(1, math.ceil(len(prompt) / CHARACTERS_PER_TOKEN))


def image_tokens(model: Model) -> int:
    return model.image_tokens or 1290


def answer_text(job: Job, model: Model, image: JobImage) -> str:
    """What a candidate's TEXT part says: what was done, plainly (no invented reasoning)."""
    request = job.request
    how = {Operation.REFERENCE: "edited from the image(s) you sent, as your prompt asks",
           Operation.IMAGE: f"redrawn from the image you sent at strength {request.strength}",
           Operation.INPAINT: "repainted where the mask says"}.get(request.operation,
                                                                   "drawn from your prompt")
    return (f"Here is the image: {request.width}x{request.height}, {how} by {job.backend} on "
            f"easel's {model.tier.name} tier, seed {image.seed}.")


async def candidates(job: Job, model: Model, images: ImageSource,
                     with_text: bool) -> list[dict[str, Any]]:
    """One candidate per image, in order: its text part when TEXT was asked for, and the image
    as inline data; a withheld image's candidate has no content and says why."""
    out = []
    for image in ordered_images(job):
        if image.withheld is not None:
            out.append({"finishReason": "IMAGE_SAFETY", "finishMessage": _withheld(image),
                        "index": image.index})
            continue
        parts: list[dict[str, Any]] = []
        if with_text:
            parts.append({"text": answer_text(job, model, image)})
        data = await images.image_bytes(image)
        parts.append({"inlineData": {"mimeType": image.mime or job.request.output_format.mime,
                                     "data": b64(data)}})
        out.append({"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                    "index": image.index})
    return out


def _withheld(image: JobImage) -> str:
    if image.withheld is Withheld.PERSON:
        return "The image was withheld: it shows a person and personGeneration is ALLOW_NONE."
    return "The image was withheld by the safety setting (sexually explicit content)."


def usage(job: Job, model: Model, with_text: bool) -> dict[str, Any]:
    """Google's usage metadata, counted as Google documents it: text at about four characters
    a token, each output image at the model's fixed count (catalog `image_tokens`)."""
    shown = [image for image in job.images if image.withheld is None]
    prompt = prompt_tokens(job.request.client_prompt)
    image_count = image_tokens(model) * len(shown)
    text = sum(prompt_tokens(answer_text(job, model, image)) for image in shown) \
        if with_text else 0
    details = [{"modality": "IMAGE", "tokenCount": image_count}]
    if text:
        details.append({"modality": "TEXT", "tokenCount": text})
    return {"promptTokenCount": prompt, "candidatesTokenCount": image_count + text,
            "totalTokenCount": prompt + image_count + text,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "candidatesTokensDetails": details}


def head(call: GeminiCall, response_id: str, created: datetime) -> dict[str, Any]:
    """What every reply carries: the model and the response's id; Vertex AI adds when it was
    made (google-genai's `response.create_time`), the Gemini API does not."""
    out = {"modelVersion": call.model.id, "responseId": response_id}
    return {**out, "createTime": iso_ms(created)} if call.vertex else out


async def render(job: Job, call: GeminiCall, images: ImageSource) -> dict[str, Any]:
    return {"candidates": await candidates(job, call.model, images, call.with_text),
            "usageMetadata": usage(job, call.model, call.with_text),
            **head(call, job.id, job.created_at)}


def blocked(call: GeminiCall, err: EaselError) -> dict[str, Any]:
    """A prompt the operator's block list refuses: Google answers 200 with promptFeedback and
    no candidates (google-genai reads `response.prompt_feedback.block_reason`)."""
    prompt = prompt_tokens(call.submission.generation.prompt)
    return {"promptFeedback": {"blockReason": "BLOCKLIST", "blockReasonMessage": err.message},
            "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
            **head(call, str(uuid.uuid4()), datetime.now(UTC))}


def thought(text: str, call: GeminiCall, job: Job) -> dict[str, Any]:
    """A streamed progress note: a thought part, which `response.text` leaves out."""
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text,
                                                                     "thought": True}]},
                            "index": 0}],
            **head(call, job.id, job.created_at)}


def progress_note(job: Job) -> str:
    """Where the job is, in a few words, for a thought part of the stream."""
    if job.queue is not None and job.progress_step == 0:
        return f"queued, {job.queue.ahead} job(s) ahead"
    if job.progress_total:
        return f"drawing: step {job.progress_step} of {job.progress_total}"
    return "drawing"


async def chunks(job: Job, call: GeminiCall, images: ImageSource) -> list[dict[str, Any]]:
    """The end of a stream: the text parts first (when TEXT was asked for), then a chunk with
    the images, the finish reasons and the usage."""
    reply = await render(job, call, images)
    if not call.with_text:
        return [reply]
    texts = [{"content": {"role": "model", "parts": candidate["content"]["parts"][:1]},
              "index": candidate["index"]}
             for candidate in reply["candidates"] if "content" in candidate]
    for candidate in reply["candidates"]:
        if "content" in candidate:
            candidate["content"]["parts"] = candidate["content"]["parts"][1:]
    return [{"candidates": texts, **head(call, job.id, job.created_at)}, reply] if texts \
        else [reply]


def served_models(catalog: Catalog) -> list[Model]:
    return sorted(catalog.models_for(PROVIDER), key=lambda m: m.id)


def model_resource(model: Model, vertex: bool, description: str) -> dict[str, Any]:
    """A Gemini image model as models.list / models.get show it."""
    if vertex:
        return {"name": f"publishers/google/models/{model.id}", "versionId": "001",
                "displayName": model.id, "description": description, "launchStage": "GA",
                "openSourceCategory": "PROPRIETARY"}
    return {"name": f"models/{model.id}", "version": "001", "displayName": model.id,
            "description": description, "inputTokenLimit": 32768,
            "outputTokenLimit": 32768,
            "supportedGenerationMethods": [GENERATE, STREAM]}
