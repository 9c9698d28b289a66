"""WaveSpeed's ticket upload in-process (SDK 2.x's flow; the SDKs themselves upload in
tests/dialects/test_wavespeed.py): the PUT's body must be the size the ticket was asked for,
and the size is part of what the URL's signature covers."""

from __future__ import annotations

from typing import Any

from tests.edge.conftest import KEY, Edge
from tests.edge.test_images_in import picture, png

AUTH = {"Authorization": f"Bearer {KEY}"}


def ticket(edge: Edge, size: int) -> dict[str, Any]:
    reply = edge.client.post("/api/v3/media/uploads", headers=AUTH,
                             json={"filename": "a.png", "size": size})
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["data"])


def test_the_put_must_be_the_size_the_ticket_asked_for(edge: Edge) -> None:
    image = png(picture())
    for size, status in ((10, 413), (len(image) + 1, 400)):
        refused = edge.client.put(ticket(edge, size)["upload"]["url"], content=image)
        assert refused.status_code == status, refused.text
        error = refused.json()
        assert error["code"] == status and f"the {size} " in error["message"], error
    url = ticket(edge, 10)["upload"]["url"]
    resized = url.replace("size=10&", f"size={len(image)}&")
    assert edge.client.put(resized, content=image).status_code == 403  # the size is signed
    exact = ticket(edge, len(image))
    stored = edge.client.put(exact["upload"]["url"], content=image)
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["size"] == len(image)
    assert edge.client.get(exact["download_url"]).content == image
