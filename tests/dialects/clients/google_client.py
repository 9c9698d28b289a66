"""Drive the PyPI `google-genai` SDK against easel; argv[1] is a JSON spec.

`mode` "gemini" (an API key; google-genai 1.x) or "vertex" (project, location and an OAuth
token; the only mode in which google-genai 2.x and 3.x generate images). `call` "generate"
(default), "list", "get", "edit" (edit_image: `image`, and `mask` to edit part of it, base64;
`mask_mode`, `dilation`, `config` as EditImageConfig's fields) or "upscale" (upscale_image:
`image` base64, `factor` "x2"/"x4", `config` as UpscaleImageConfig's fields)."""

import base64
import json
import sys

from google import genai
from google.genai import errors, types

spec = json.loads(sys.argv[1])
options = types.HttpOptions(base_url=spec["url"], **spec.get("http_options", {}))
if spec.get("mode") == "vertex":
    from google.oauth2.credentials import Credentials

    client = genai.Client(vertexai=True, project="easel-test", location="us-central1",
                          credentials=Credentials(token=spec["key"]), http_options=options)
else:
    client = genai.Client(api_key=spec["key"], http_options=options)
try:
    call = spec.get("call", "generate")
    if call == "list":
        names = [m.name for m in client.models.list()]
        print(json.dumps({"ok": True, "models": names}))
    elif call == "edit":
        references = [types.RawReferenceImage(
            reference_id=1, reference_image=types.Image(
                image_bytes=base64.b64decode(spec["image"]), mime_type="image/png"))]
        if "mask" in spec or "mask_mode" in spec:
            mask = types.Image(image_bytes=base64.b64decode(spec["mask"]),
                               mime_type="image/png") if "mask" in spec else None
            references.append(types.MaskReferenceImage(
                reference_id=2, reference_image=mask, config=types.MaskReferenceConfig(
                    mask_mode=spec.get("mask_mode", "MASK_MODE_USER_PROVIDED"),
                    mask_dilation=spec.get("dilation"))))
        response = client.models.edit_image(
            model=spec["model"], prompt=spec["prompt"], reference_images=references,
            config=types.EditImageConfig(**spec.get("config", {})))
        images = [base64.b64encode(g.image.image_bytes).decode()
                  for g in response.generated_images or [] if g.image and g.image.image_bytes]
        print(json.dumps({"ok": True, "images": images}))
    elif call == "upscale":
        response = client.models.upscale_image(
            model=spec["model"], image=types.Image(image_bytes=base64.b64decode(spec["image"]),
                                                   mime_type="image/png"),
            upscale_factor=spec["factor"],
            config=types.UpscaleImageConfig(**spec.get("config", {})))
        images = [{"b64": base64.b64encode(g.image.image_bytes).decode(),
                   "mime": g.image.mime_type}
                  for g in response.generated_images or [] if g.image and g.image.image_bytes]
        print(json.dumps({"ok": True, "images": images}))
    elif call == "get":
        model = client.models.get(model=spec["model"])
        print(json.dumps({"ok": True, "name": model.name, "display_name": model.display_name}))
    else:
        response = client.models.generate_images(
            model=spec["model"], prompt=spec["prompt"],
            config=types.GenerateImagesConfig(**spec.get("config", {})),
        )
        images = [
            {"b64": base64.b64encode(g.image.image_bytes).decode()
             if g.image and g.image.image_bytes else None,
             "mime": g.image.mime_type if g.image else None,
             "rai_filtered_reason": g.rai_filtered_reason, "enhanced_prompt": g.enhanced_prompt,
             "safety": g.safety_attributes.model_dump(mode="json", exclude_none=True)
             if g.safety_attributes else None}
            for g in response.generated_images or []
        ]
        print(json.dumps({"ok": True, "images": images}))
except errors.APIError as exc:
    print(json.dumps({"ok": False, "type": type(exc).__name__, "code": exc.code,
                      "status": exc.status, "message": exc.message,
                      "details": (exc.details or {}).get("error", {}).get("details")
                      if isinstance(exc.details, dict) else None}))
