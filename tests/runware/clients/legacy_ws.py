"""Runs under PyPI `runware==0.5.24` (WebSocket). Prints one JSON object with the results.

Usage: python legacy_ws.py '<json args>'  (url, mode sync|async, numberResults, width, height,
seed, outputType, apiKey; with "edit": {"image", "mask"} base64 PNGs, the image is uploaded
with uploadImage from a local file, then inpainted with maskImage as a local path; with
"upscale": {"image" base64 PNG, "factor"}, imageUpscale on a local file, which the SDK uploads)
"""

import asyncio
import base64
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from runware import IImageInference, IImageUpscale, IModelSearch, Runware


async def main(args: dict) -> dict:
    client = Runware(api_key=args.get("apiKey", "test-key"), url=args["url"])
    await asyncio.wait_for(client.connect(), 30)
    if "search" in args:  # modelSearch, parsed into the SDK's own dataclasses
        found = await asyncio.wait_for(client.modelSearch(IModelSearch(**args["search"])), 60)
        return {"search": asdict(found)}
    if "upscale" in args:
        return await upscale(client, args)
    edit: dict = {}
    out: dict = {}
    if "edit" in args:  # local files, as the SDK's users hand them over
        folder = Path(tempfile.mkdtemp())
        (folder / "photo.png").write_bytes(base64.b64decode(args["edit"]["image"]))
        (folder / "mask.png").write_bytes(base64.b64decode(args["edit"]["mask"]))
        uploaded = await asyncio.wait_for(client.uploadImage(str(folder / "photo.png")), 60)
        out["upload"] = asdict(uploaded)
        edit = {"seedImage": uploaded.imageUUID, "maskImage": str(folder / "mask.png"),
                "strength": args["edit"].get("strength", 0.8)}
    request = IImageInference(
        **edit,
        model=args.get("model", "google:2@3"),
        positivePrompt=args.get("prompt", "a red fox in snow"),
        width=args.get("width", 64),
        height=args.get("height", 64),
        numberResults=args.get("numberResults", 1),
        outputType=args.get("outputType", "URL"),
        outputFormat=args.get("outputFormat", "JPG"),
        includeCost=True,
        seed=args.get("seed"),
        deliveryMethod=args.get("mode", "sync"),
    )
    try:
        result = await asyncio.wait_for(client.imageInference(requestImage=request), 120)
    except Exception as exc:  # the test asserts on what the SDK tells its user
        return {**out, "error": str(exc)}
    if args.get("mode") == "async":
        out["ack"] = asdict(result)
        result = await asyncio.wait_for(
            client.getResponse(result.taskUUID, numberResults=request.numberResults), 120
        )
    out["images"] = [asdict(image) for image in result]
    return out


async def upscale(client: Runware, args: dict) -> dict:
    """imageUpscale on a local file, as the SDK's users hand one over: it uploads it first."""
    photo = Path(tempfile.mkdtemp()) / "photo.png"
    photo.write_bytes(base64.b64decode(args["upscale"]["image"]))
    request = IImageUpscale(inputImage=str(photo), upscaleFactor=args["upscale"]["factor"],
                            outputType=args.get("outputType", "base64Data"),
                            outputFormat="PNG", includeCost=True)
    try:
        result = await asyncio.wait_for(client.imageUpscale(upscaleGanPayload=request), 120)
    except Exception as exc:  # the test asserts on what the SDK tells its user
        return {"error": str(exc)}
    return {"images": [asdict(image) for image in result]}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1]))), default=str))
    sys.stdout.flush()
