"""Drive the PyPI `wavespeed` SDK against easel; argv[1] is a JSON spec, prints one JSON line.

`call` "upload": client.upload of a file (`image`, base64; else a bare PNG signature), then,
with `edit` (a model id), client.run of that model on the uploaded image's URL."""

import base64
import json
import sys

import wavespeed

spec = json.loads(sys.argv[1])
client = wavespeed.Client(api_key=spec["key"], base_url=spec["url"], max_retries=0,
                          max_connection_retries=0)
try:
    if spec.get("call") == "upload":  # the SDK's media upload
        import tempfile

        data = base64.b64decode(spec["image"]) if "image" in spec else b"\x89PNG\r\n\x1a\n"
        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            f.write(data)
            f.flush()
            url = client.upload(f.name)
        if "edit" in spec:
            out = client.run(spec["edit"], {"prompt": "make it night", "images": [url]},
                             timeout=120, poll_interval=0.1)
            print(json.dumps({"ok": True, "url": url, "outputs": out["outputs"]}))
        else:
            print(json.dumps({"ok": True, "url": url}))
        sys.exit(0)
    out = client.run(spec["model"], spec["input"], enable_sync_mode=spec.get("sync", False),
                     timeout=120, poll_interval=0.1)
    print(json.dumps({"ok": True, "outputs": out["outputs"]}))
except Exception as exc:  # the SDK raises RuntimeError / TimeoutError with the server's text
    print(json.dumps({"ok": False, "type": type(exc).__name__, "error": str(exc)}))
