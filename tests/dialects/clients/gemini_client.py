"""Drive the PyPI `google-genai` SDK's generate_content against easel's Gemini image API;
argv[1] is a JSON spec.

`mode` "gemini" (an API key) or "vertex" (project, location and an OAuth token). `call`
"generate" (default; `images`, base64 PNGs, go before the prompt: an edit), "stream" or "chat"
(`prompt`, then each of `then` as the chat's next turns; the last reply is printed); `config` is
a GenerateContentConfig's fields, with
`image_config` and `thinking_config` as dicts. Prints one JSON line: the parts of each
candidate (an image as its base64, its MIME type and size), the text, finish reasons, the usage
and the prompt feedback; or the SDK's APIError."""

import base64
import json
import struct
import sys

from google import genai
from google.genai import errors, types

spec = json.loads(sys.argv[1])
options = types.HttpOptions(base_url=spec["url"], **spec.get("http_options", {}))
if spec.get("mode") == "vertex":
    from google.oauth2.credentials import Credentials

    client = genai.Client(vertexai=True, project="easel-test", location=spec.get(
        "location", "global"), credentials=Credentials(token=spec["key"]), http_options=options)
else:
    client = genai.Client(api_key=spec["key"], http_options=options)


def config_of(raw):
    raw = dict(raw or {})
    if "image_config" in raw:
        raw["image_config"] = types.ImageConfig(**raw["image_config"])
    if "thinking_config" in raw:
        raw["thinking_config"] = types.ThinkingConfig(**raw["thinking_config"])
    if "safety_settings" in raw:
        raw["safety_settings"] = [types.SafetySetting(**s) for s in raw["safety_settings"]]
    return types.GenerateContentConfig(**raw) if raw else None


def size_of(data):
    """A PNG's width and height from its header (the SDK venvs carry no imaging library)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return list(struct.unpack(">II", data[16:24]))


def summary(response):
    candidates = []
    for candidate in response.candidates or []:
        parts = []
        for part in (candidate.content.parts if candidate.content else None) or []:
            if part.inline_data is not None:
                parts.append({"image": base64.b64encode(part.inline_data.data).decode(),
                              "mime": part.inline_data.mime_type,
                              "size": size_of(part.inline_data.data)})
            elif part.text is not None:
                parts.append({"text": part.text, "thought": bool(part.thought)})
        candidates.append({"parts": parts, "finish_reason": str(candidate.finish_reason.value)
                           if candidate.finish_reason else None})
    feedback = response.prompt_feedback
    usage = response.usage_metadata
    created = response.create_time
    return {"candidates": candidates, "model_version": response.model_version,
            "created": created.isoformat() if created else None,
            "block_reason": str(feedback.block_reason.value)
            if feedback and feedback.block_reason else None,
            "usage": usage.model_dump(mode="json", exclude_none=True) if usage else None}


try:
    call = spec.get("call", "generate")
    config = config_of(spec.get("config"))
    if call == "stream":
        chunks = [summary(chunk) for chunk in client.models.generate_content_stream(
            model=spec["model"], contents=spec["prompt"], config=config)]
        print(json.dumps({"ok": True, "chunks": chunks}))
    elif call == "chat":
        chat = client.chats.create(model=spec["model"], config=config)
        response = chat.send_message(spec["prompt"])
        for turn in spec.get("then", []):
            response = chat.send_message(turn)
        print(json.dumps({"ok": True, **summary(response)}))
    else:
        contents = spec["prompt"]
        if "images" in spec:  # images to edit, then the instruction
            contents = [*(types.Part.from_bytes(data=base64.b64decode(image),
                                                mime_type="image/png")
                          for image in spec["images"]), spec["prompt"]]
        response = client.models.generate_content(model=spec["model"], contents=contents,
                                                  config=config)
        print(json.dumps({"ok": True, **summary(response), "text": response.text}))
except errors.APIError as exc:
    print(json.dumps({"ok": False, "type": type(exc).__name__, "code": exc.code,
                      "status": exc.status, "message": exc.message}))
