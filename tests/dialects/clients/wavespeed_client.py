"""Drive the PyPI `wavespeed` SDK against easel; argv[1] is a JSON spec, prints one JSON line."""

import json
import sys

import wavespeed

spec = json.loads(sys.argv[1])
client = wavespeed.Client(api_key=spec["key"], base_url=spec["url"], max_retries=0,
                          max_connection_retries=0)
try:
    if spec.get("call") == "upload":  # the SDK's media upload, with a small file
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.flush()
            print(json.dumps({"ok": True, "url": client.upload(f.name)}))
        sys.exit(0)
    out = client.run(spec["model"], spec["input"], enable_sync_mode=spec.get("sync", False),
                     timeout=120, poll_interval=0.1)
    print(json.dumps({"ok": True, "outputs": out["outputs"]}))
except Exception as exc:  # the SDK raises RuntimeError / TimeoutError with the server's text
    print(json.dumps({"ok": False, "type": type(exc).__name__, "error": str(exc)}))
