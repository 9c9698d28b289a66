"""Drive the PyPI `openai` SDK against easel; argv[1] is a JSON spec, prints one JSON line.

`call`: "generate" (default, images.generate with `kwargs`), "models" (models.list),
"retrieve" (models.retrieve(`model`)), "stream" (images.generate with `kwargs` and
stream=True: each event the SDK yields, by its class), "edit" (images.edit: `images`, a list of
base64 files sent as a list, or `image`, one sent alone, `mask`, `kwargs`, `extra_body`,
`stream`; without any, a 1x1 PNG) or "variation" (images.create_variation, a small PNG)."""

import base64
import io
import json
import sys

from openai import APIError, APIStatusError, APITimeoutError, OpenAI

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

spec = json.loads(sys.argv[1])
# No retries unless a test asks for the SDK's own (its default is 2).
client = OpenAI(api_key=spec["key"], base_url=spec["url"] + "/v1",
                max_retries=spec.get("max_retries", 0), timeout=spec.get("timeout", 120))
try:
    call = spec.get("call", "generate")
    if call == "models":
        print(json.dumps({"ok": True, "ids": [m.id for m in client.models.list()]}))
    elif call == "retrieve":
        model = client.models.retrieve(spec["model"])
        print(json.dumps({"ok": True, "model": model.to_dict()}))
    elif call == "stream":
        events = [{"class": type(event).__name__, **event.to_dict()}
                  for event in client.images.generate(**spec["kwargs"], stream=True)]
        print(json.dumps({"ok": True, "events": events}))
    elif call == "edit" and ("image" in spec or "images" in spec):
        def named(data: str, name: str) -> io.BytesIO:
            handle = io.BytesIO(base64.b64decode(data))
            handle.name = name  # the SDK sends the file's name and the type it implies
            return handle

        if "images" in spec:
            image = [named(d, f"in{i}.png") for i, d in enumerate(spec["images"])]
        else:
            image = named(spec["image"], "in.png")
        extra = {"mask": named(spec["mask"], "mask.png")} if "mask" in spec else {}
        kwargs = {**spec.get("kwargs", {}), **extra}
        if spec.get("stream"):
            events = [{"class": type(event).__name__, **event.to_dict()} for event in
                      client.images.edit(image=image, stream=True, **kwargs,
                                         extra_body=spec.get("extra_body"))]
            print(json.dumps({"ok": True, "events": events}))
        else:
            response = client.images.edit(image=image, **kwargs,
                                          extra_body=spec.get("extra_body"))
            print(json.dumps({"ok": True, "response": response.to_dict()}))
    elif call in ("edit", "variation"):
        image = ("a.png", io.BytesIO(PNG), "image/png")
        if call == "edit":
            client.images.edit(image=image, prompt="x", model=spec.get("model"))
        else:
            client.images.create_variation(image=image)
        print(json.dumps({"ok": True}))
    else:
        response = client.images.generate(
            **spec["kwargs"],
            extra_body=spec.get("extra_body"),
            extra_headers=spec.get("extra_headers"),
        )
        print(json.dumps({"ok": True, "response": response.to_dict()}))
except APIStatusError as exc:
    print(json.dumps({"ok": False, "status": exc.status_code, "type": type(exc).__name__,
                      "code": exc.code, "param": exc.param, "message": exc.message,
                      "error_type": getattr(exc, "type", None)}))
except APITimeoutError as exc:
    print(json.dumps({"ok": False, "status": None, "type": type(exc).__name__}))
except APIError as exc:  # an error event in a stream
    print(json.dumps({"ok": False, "status": None, "type": type(exc).__name__,
                      "message": exc.message}))
