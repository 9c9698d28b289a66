"""Vertex's image editing on `:predict` (the capability models, protocols-images-in.md §3.1):
`instances[0].referenceImages` and `parameters.editMode` as the core's images in. Pure.

- The RAW reference is the image; a MASK reference (`maskMode` user-provided, or default with
  an image) says where to edit: **non-black is repainted** (white: fully), its `dilation`
  (a fraction of the image's longer side) grows it first.
- `editMode`: INPAINT_INSERTION (draw the prompt into the mask), INPAINT_REMOVAL (fill the mask
  with what surrounds it; an empty prompt asks for the background), OUTPAINT (the client pads
  the image and masks the new area, as Google's clients do: inpainting), BGSWAP with a
  user-provided mask (inpainting). Without a mask, DEFAULT redraws the whole image from it
  (image-to-image). Masks a segmentation model would compute (background, foreground,
  semantic), control, style and subject references and the other modes are refused by name:
  easel has no segmentation model (docs/google.md).
- `editConfig.baseSteps` (or `baseSteps`) is Imagen's own step count; the tier's model has its
  own, so it is accepted and reported as ignored.
"""

from __future__ import annotations

from easel.api.dialects.google.schemas import PredictRequest, ReferenceImage
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.submission import ImageInput, ImagesIn, MaskRule, Upscale

REFS = "instances[0].referenceImages"
MASKING_MODES = ("INPAINT_INSERTION", "INPAINT_REMOVAL", "OUTPAINT", "BGSWAP")
SERVED_MODES = ("DEFAULT", *MASKING_MODES)
USER_MASKS = ("DEFAULT", "USER_PROVIDED")
REMOVAL_PROMPT = "the background, continued seamlessly, with nothing in front of it"
INPAINT_STRENGTH = 1.0  # the masked area is drawn afresh


def edit_mode(wire: PredictRequest) -> str | None:
    """parameters.editMode without its EDIT_MODE_ prefix; None when absent."""
    mode = wire.parameters.editMode
    return None if mode is None else mode.removeprefix("EDIT_MODE_")


def images_in(wire: PredictRequest) -> ImagesIn | None:
    """The edit's image and mask, or None for a text-to-image request."""
    refs = wire.instances[0].referenceImages or []
    mode = edit_mode(wire)
    if not refs:
        if mode is not None:
            raise EaselError(ErrorKind.MISSING, f"parameters.editMode needs {REFS}: a "
                             "REFERENCE_TYPE_RAW image (and a MASK to edit part of it)", REFS)
        return None
    if mode is not None and mode not in SERVED_MODES:
        raise EaselError(ErrorKind.UNSUPPORTED, f"parameters.editMode EDIT_MODE_{mode} is not "
                         f"served; easel edits with {', '.join(SERVED_MODES)}",
                         "parameters.editMode")
    raw, mask = _raw_and_mask(refs)
    if mask is None and mode in MASKING_MODES:
        raise EaselError(ErrorKind.MISSING, f"EDIT_MODE_{mode} needs a REFERENCE_TYPE_MASK "
                         f"image in {REFS}", REFS)
    dilation = 0.0
    if mask is not None:
        config = refs[mask].maskImageConfig
        dilation = config.dilation or 0.0 if config is not None else 0.0
    return ImagesIn(_image(refs, raw), None if mask is None else _image(refs, mask), None,
                    MaskRule.WHITE, mask_dilation=dilation, instruction=mask is None,
                    default_strength=INPAINT_STRENGTH if mask is not None else None)


UPSCALE_FACTOR = "parameters.upscaleConfig.upscaleFactor"


def upscaling(wire: PredictRequest) -> ImagesIn | None:
    """The upscale model's request (`instances[0].image`, `mode` "upscale", the factor) as the
    core's images in; None when the request asks for no upscale. The core refuses it for a
    model that does not upscale."""
    p, instance = wire.parameters, wire.instances[0]
    if p.mode is not None and p.mode != "upscale":
        raise EaselError(ErrorKind.UNSUPPORTED, f"parameters.mode {p.mode[:40]!r} is not "
                         "served; the one mode is \"upscale\"", "parameters.mode")
    if p.mode is None and p.upscaleConfig is None and instance.image is None:
        return None
    if p.editMode is not None:
        raise invalid("parameters.editMode", "parameters.editMode edits with referenceImages; "
                      "an upscale takes none")
    name = "instances[0].image"
    if instance.referenceImages:
        raise invalid(REFS, f"an upscale enlarges {name}; send it without {REFS}")
    data = instance.image
    if data is None or (data.bytesBase64Encoded is None and data.gcsUri is None):
        raise EaselError(ErrorKind.MISSING, f"{name}.bytesBase64Encoded is required: the image "
                         "to upscale", name)
    if data.bytesBase64Encoded is None:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{name}.gcsUri: easel reads no Cloud Storage; "
                         "send bytesBase64Encoded", f"{name}.gcsUri")
    factor = p.upscaleConfig.upscaleFactor if p.upscaleConfig is not None else None
    if factor is None and p.mode is None and p.upscaleConfig is None:
        raise invalid(name, f"{name} is the upscale model's input: send it with "
                            f"{UPSCALE_FACTOR} to imagen-4.0-upscale-preview, or send "
                            f"{REFS} to edit")
    if factor is None:
        raise EaselError(ErrorKind.MISSING, f"{UPSCALE_FACTOR} is required: \"x2\", \"x3\" or "
                         "\"x4\"", UPSCALE_FACTOR)
    return ImagesIn(ImageInput(f"{name}.bytesBase64Encoded", text=data.bytesBase64Encoded),
                    upscale=Upscale(int(factor.removeprefix("x")), UPSCALE_FACTOR))


def ignored_by_upscale(wire: PredictRequest) -> list[str]:
    """What an upscale request may carry (Google's reference shows a prompt) but an upscale
    cannot use: named in the reply's ignored fields, not refused."""
    p = wire.parameters
    sent = {"prompt": bool(wire.instances[0].prompt.strip()),
            "aspectRatio": "aspectRatio" in p.model_fields_set,
            "sampleImageSize": "sampleImageSize" in p.model_fields_set,
            "enhancePrompt": p.enhancePrompt is not None, "seed": p.seed is not None,
            "negativePrompt": p.negativePrompt is not None,
            "guidanceScale": p.guidanceScale is not None}
    return [name for name, given in sent.items() if given]


def edit_prompt(wire: PredictRequest) -> str:
    """The prompt to draw with: a removal with no prompt asks for the background."""
    prompt = wire.instances[0].prompt
    if edit_mode(wire) == "INPAINT_REMOVAL" and not prompt.strip():
        return REMOVAL_PROMPT
    return prompt


def _raw_and_mask(refs: list[ReferenceImage]) -> tuple[int, int | None]:
    raw: list[int] = []
    masks: list[int] = []
    for i, ref in enumerate(refs):
        kind = ref.referenceType.removeprefix("REFERENCE_TYPE_")
        name = f"{REFS}[{i}]"
        if kind == "RAW":
            raw.append(i)
        elif kind == "MASK":
            _check_mask(ref, name)
            masks.append(i)
        else:
            raise EaselError(ErrorKind.UNSUPPORTED, f"{name}.referenceType {ref.referenceType} "
                             "is not served: easel edits from a RAW image and a MASK",
                             f"{name}.referenceType")
    if not raw:
        raise EaselError(ErrorKind.MISSING, f"{REFS} needs a REFERENCE_TYPE_RAW image: the "
                         "image to edit", REFS)
    for extra, kind in ((raw[1:], "RAW"), (masks[1:], "MASK")):
        if extra:
            raise invalid(f"{REFS}[{extra[0]}]", f"{REFS} takes one {kind} image")
    return raw[0], masks[0] if masks else None


def _check_mask(ref: ReferenceImage, name: str) -> None:
    mode = (ref.maskImageConfig.maskMode if ref.maskImageConfig is not None else None) \
        or "DEFAULT"
    mode = mode.removeprefix("MASK_MODE_")
    if mode not in USER_MASKS:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{name}.maskImageConfig.maskMode "
                         f"MASK_MODE_{mode} needs a segmentation model, which easel does not "
                         "run; send MASK_MODE_USER_PROVIDED with the mask image",
                         f"{name}.maskImageConfig.maskMode")


def _image(refs: list[ReferenceImage], index: int) -> ImageInput:
    name = f"{REFS}[{index}].referenceImage"
    data = refs[index].referenceImage
    if data is None or (data.bytesBase64Encoded is None and data.gcsUri is None):
        raise EaselError(ErrorKind.MISSING, f"{name}.bytesBase64Encoded is required", name)
    if data.bytesBase64Encoded is None:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{name}.gcsUri: easel reads no Cloud Storage; "
                         "send bytesBase64Encoded", f"{name}.gcsUri")
    return ImageInput(f"{name}.bytesBase64Encoded", text=data.bytesBase64Encoded)
