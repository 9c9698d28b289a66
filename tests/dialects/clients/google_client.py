"""Drive the PyPI `google-genai` SDK (Gemini API mode) against easel; argv[1] is a JSON spec."""

import base64
import json
import sys

from google import genai
from google.genai import errors, types

spec = json.loads(sys.argv[1])
client = genai.Client(api_key=spec["key"], http_options=types.HttpOptions(base_url=spec["url"]))
try:
    response = client.models.generate_images(
        model=spec["model"], prompt=spec["prompt"],
        config=types.GenerateImagesConfig(**spec.get("config", {})),
    )
    images = [
        {"b64": base64.b64encode(g.image.image_bytes).decode(), "mime": g.image.mime_type}
        for g in response.generated_images or []
    ]
    print(json.dumps({"ok": True, "images": images}))
except errors.APIError as exc:
    print(json.dumps({"ok": False, "type": type(exc).__name__, "code": exc.code,
                      "status": exc.status, "message": exc.message}))
