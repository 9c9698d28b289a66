"""Runs under PyPI `runware-sdk==1.8.0` (REST or WebSocket). Prints one JSON object.

Usage: python sdk.py '<json args>'  (transport rest|websocket, url, task fields...; with
"tasks", a list of task fields, they run at once and their results print as "results")
"""

import asyncio
import json
import sys

from runware import Runware


async def main(args: dict) -> dict:
    transport = args["transport"]
    kwargs = {"api_key": args.get("apiKey", "test-key"), "transport": transport,
              "max_retries": 0, "validate": False}
    if transport == "rest":
        kwargs["http_base_url"] = args["url"]
    else:
        kwargs["ws_base_url"] = args["url"]
    client = Runware(**kwargs)
    try:
        if "tasks" in args:  # several at once, as one client process sends them
            results = await asyncio.gather(*(run(client, {**args, "task": task})
                                             for task in args["tasks"]))
            return {"results": list(results)}
        return await run(client, args)
    finally:
        close = getattr(client, "close", None) or getattr(client, "disconnect", None)
        if close is not None:
            await close()


async def run(client: Runware, args: dict) -> dict:
    task = {"taskType": "imageInference", "model": "google:2@3",
            "positivePrompt": "a red fox in snow", "width": 64, "height": 64,
            **args.get("task", {})}
    if task["taskType"] != "imageInference":  # another task type: as the test wrote it
        task = args["task"]
    try:
        if args.get("call") == "get_task_details":
            call = client.get_task_details({"taskUUID": args["taskUUID"]})
        elif args.get("call") == "model_search":
            call = client.model_search(args.get("search", {}))
        elif args.get("call") == "image_upload":  # then the task, naming its imageUUID
            uploaded = await asyncio.wait_for(client.image_upload({"image": args["image"]}), 60)
            first = uploaded[0] if isinstance(uploaded, list) else uploaded
            uuid = first["imageUUID"] if isinstance(first, dict) else first.imageUUID
            call = client.run({**task, "seedImage": uuid})
        else:
            call = client.run(task)
        result = await asyncio.wait_for(call, 120)
    except Exception as exc:  # the test asserts on what the SDK tells its user
        return {"error": {"type": type(exc).__name__, "code": getattr(exc, "code", None),
                          "parameter": getattr(exc, "parameter", None), "message": str(exc)}}
    return {"images": result if isinstance(result, list) else [result]}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1]))), default=str))
    sys.stdout.flush()
