"""Drive the PyPI `openai` SDK against easel; argv[1] is a JSON spec, prints one JSON line."""

import json
import sys

from openai import APIStatusError, OpenAI

spec = json.loads(sys.argv[1])
client = OpenAI(api_key=spec["key"], base_url=spec["url"] + "/v1", max_retries=0, timeout=120)
try:
    response = client.images.generate(
        **spec["kwargs"],
        extra_body=spec.get("extra_body"),
        extra_headers=spec.get("extra_headers"),
    )
    print(json.dumps({"ok": True, "response": response.to_dict()}))
except APIStatusError as exc:
    print(json.dumps({"ok": False, "status": exc.status_code, "type": type(exc).__name__,
                      "code": exc.code, "param": exc.param, "message": exc.message}))
