"""Images in S3-compatible object storage: easel's BlobStore over boto3 against a real
S3-compatible server (moto's server mode, on loopback), and an easel server storing, serving,
presigning and sweeping its images there."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import httpx
import pytest

from easel.runtime.build import build_blobs
from easel.services.images.artifacts import Artifacts
from easel.settings import Settings
from easel.store import JobStore, ReadyImage
from easel.store.blobs import blob_key
from easel.store.s3 import BucketLocation, ObjectStoreUnavailable, S3BlobStore, s3_client
from tests.dialects.conftest import KEY
from tests.s3 import CREDENTIALS, S3Server
from tests.server.test_store import _job
from tests.server_harness import Server, free_port


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def blob_store(endpoint: str, bucket: str, prefix: str = "") -> S3BlobStore:
    client = s3_client(endpoint, "us-east-1", "path", timeout=5)
    location = BucketLocation.parse(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}")
    return S3BlobStore(client, location)


def test_a_bucket_location_is_an_s3_url() -> None:
    assert BucketLocation.parse("s3://pics") == BucketLocation("pics", "")
    assert BucketLocation.parse("s3://pics/easel/prod/") == BucketLocation("pics", "easel/prod/")
    with pytest.raises(ValueError, match="s3://bucket"):
        BucketLocation.parse("https://pics.example.com")
    with pytest.raises(ValueError, match="image_store"):
        Settings(image_store="gs://pics")


def test_objects_round_trip_under_the_prefix(s3: S3Server, credentials: None) -> None:
    bucket = s3.new_bucket()
    blobs = blob_store(s3.endpoint, bucket, "prod")
    blobs.put("a.png", b"\x89PNG one", "image/png")
    assert blobs.get("a.png") == b"\x89PNG one"
    assert s3.keys(bucket) == ["prod/a.png"]
    head = s3.client().head_object(Bucket=bucket, Key="prod/a.png")
    assert head["ContentType"] == "image/png"
    assert blobs.get("missing.png") is None
    assert blobs.open("missing.png") is None
    blobs.delete("a.png")
    blobs.delete("a.png")  # deleting what is gone is not an error (two sweepers may race)
    assert s3.keys(bucket) == []
    with pytest.raises(ValueError, match="bad blob key"):
        blobs.put("../escape.png", b"x")


def test_a_large_image_goes_up_in_parts_and_comes_down_in_chunks(
    s3: S3Server, credentials: None
) -> None:
    bucket = s3.new_bucket()
    blobs = blob_store(s3.endpoint, bucket)
    data = os.urandom(9 * 1024 * 1024 + 17)  # past the multipart threshold (8 MiB)
    blobs.put("big.png", data, "image/png")
    opened = blobs.open("big.png")
    assert opened is not None
    size, chunks = opened
    parts = list(chunks)
    assert size == len(data) and b"".join(parts) == data
    assert len(parts) > 1 and max(len(p) for p in parts) <= 1024 * 1024


def test_an_unreachable_object_store_is_an_os_error(credentials: None) -> None:
    blobs = blob_store(f"http://127.0.0.1:{free_port()}", "nowhere")  # nothing listens there
    with pytest.raises(ObjectStoreUnavailable, match="unreachable"):
        blobs.put("a.png", b"x")
    with pytest.raises(OSError):
        blobs.get("a.png")


def test_a_missing_bucket_is_refused_by_name(s3: S3Server, credentials: None) -> None:
    blobs = blob_store(s3.endpoint, "no-such-bucket-here")
    with pytest.raises(ObjectStoreUnavailable, match="NoSuchBucket"):
        blobs.put("a.png", b"x")


def test_the_sweeper_deletes_expired_objects(
    s3: S3Server, credentials: None, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    blobs = blob_store(s3.endpoint, bucket)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.create()
    job = _job("job-1")
    store.insert(job)
    image_id = job.image_ids[0]
    ext = job.request.output_format.extension
    blobs.put(blob_key(image_id, ext), b"png")
    store.claim("w", 1, 30, 3)
    expires = time.time() + 60
    ready = ReadyImage(image_id, "image/png", 3, expires, False, None, None)
    assert store.complete(job.id, "w", [ready], "batch", 0.1)
    artifacts = Artifacts(blobs, store, "http://easel")
    assert artifacts.sweep(now=expires - 1) == 0
    assert s3.keys(bucket) == [f"{image_id}.{ext}"]
    assert artifacts.sweep(now=expires + 1) == 1
    assert s3.keys(bucket) == []


def test_settings_build_an_s3_store(s3: S3Server, credentials: None) -> None:
    bucket = s3.new_bucket()
    settings = Settings(image_store=f"s3://{bucket}/x", s3_endpoint_url=s3.endpoint,
                        s3_addressing_style="path")
    blobs = build_blobs(settings)
    assert isinstance(blobs, S3BlobStore)
    blobs.put("k.png", b"v")
    assert s3.keys(bucket) == ["x/k.png"]


AUTH = {"Authorization": f"Bearer {KEY}"}


def generate(srv: Server, prompt: str, response_format: str = "url") -> str:
    reply = httpx.post(f"{srv.url}/v1/images/generations", headers=AUTH, timeout=240,
                       json={"model": "google/imagen-4.0-fast-generate-001", "prompt": prompt,
                             "response_format": response_format})
    assert reply.status_code == 200, reply.text
    item = reply.json()["data"][0]
    return str(item["url"] if response_format == "url" else item["b64_json"])


@pytest.fixture
def s3_server(s3: S3Server, tmp_path: Path) -> tuple[Server, str]:
    bucket = s3.new_bucket()
    srv = Server(tmp_path / "data", EASEL_API_KEYS=KEY, EASEL_STAND_IN="tiny",
                 **s3.env(bucket, "imgs"))
    return srv, bucket


def test_a_server_stores_and_serves_its_images_from_the_bucket(
    s3: S3Server, s3_server: tuple[Server, str]
) -> None:
    srv, bucket = s3_server
    srv.start()
    try:
        url = generate(srv, "a red kite")
        assert url.startswith(f"{srv.url}/images/")
        name = url.rsplit("/", 1)[1]
        assert s3.keys(bucket) == [f"imgs/{name}"]
        assert not any((srv.data_dir / "images").glob("*.png"))  # nothing on local disk
        stored = s3.client().get_object(Bucket=bucket, Key=f"imgs/{name}")["Body"].read()
        served = httpx.get(url, timeout=30)
        assert served.status_code == 200 and served.content == stored
        assert served.headers["content-length"] == str(len(stored))
        head = httpx.head(url, timeout=30)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(stored))
        # b64 replies read the bucket too
        encoded = generate(srv, "a blue boat", "b64_json")
        assert base64.b64decode(encoded)[:4] == b"\x89PNG"
    finally:
        srv.stop()


def test_presigned_urls_download_from_the_bucket_and_expire_with_the_image(
    s3: S3Server, s3_server: tuple[Server, str]
) -> None:
    srv, bucket = s3_server
    srv.env["EASEL_PRESIGN_IMAGE_URLS"] = "true"
    srv.env["EASEL_DIALECT_IMAGE_TTL"] = '{"openai": 120}'
    srv.start()
    try:
        url = generate(srv, "a green hill")
        assert url.startswith(f"{s3.endpoint}/{bucket}/imgs/")
        assert "X-Amz-Signature=" in url
        expires = int(httpx.URL(url).params["X-Amz-Expires"])
        assert 100 <= expires <= 120  # the image's TTL left, not a fixed lifetime
        got = httpx.get(url, timeout=30)
        assert got.status_code == 200 and got.content[:4] == b"\x89PNG"
        assert got.headers["content-type"] == "image/png"
    finally:
        srv.stop()


def test_an_image_read_while_the_object_store_is_down_is_503_not_500(tmp_path: Path) -> None:
    own = S3Server().start()  # this test stops its server: not the shared one
    bucket = own.new_bucket()
    srv = Server(tmp_path / "data", EASEL_API_KEYS=KEY, EASEL_STAND_IN="tiny", **own.env(bucket))
    srv.start()
    try:
        url = generate(srv, "a red kite")
        own.stop()
        down = httpx.get(url, timeout=60)
        assert down.status_code == 503 and down.headers["Retry-After"]
        assert "image store" in down.json()["error"]["message"]
        own.start()  # back (empty: moto keeps nothing), so a missing image is a 404 again
        assert httpx.get(url, timeout=60).status_code == 404
    finally:
        srv.stop()
        own.stop()


def test_an_upload_while_the_object_store_is_down_is_retried_not_failed(
    credentials: None, tmp_path: Path
) -> None:
    """An uploadEndpoint PUT reads the image from the store: an outage there is a reason to
    retry on the delivery schedule, not a final failure (the image is not gone)."""
    import asyncio

    from easel.domain.delivery import PENDING, UPLOAD, Delivery
    from easel.services.delivery.service import DeliveryService
    from easel.store import DeliveryStore

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.create()
    job = _job("job-1")
    store.insert(job)
    store.claim("w", 1, 30, 3)
    image_id = job.image_ids[0]
    ready = ReadyImage(image_id, "image/jpeg", 3, time.time() + 600, False, None, None)
    assert store.complete(job.id, "w", [ready], "batch", 0.1)
    down = blob_store(f"http://127.0.0.1:{free_port()}", "nowhere")  # nothing listens there
    service = DeliveryService(Settings(), DeliveryStore(store.engine), store,
                              Artifacts(down, store, "http://easel"), {})
    delivery = Delivery(id="d1", job_id=job.id, image_id=image_id, kind=UPLOAD,
                        event="completed", url="https://uploads.example.com/put", status=PENDING,
                        attempts=0, first_attempt_at=None, body=None, last_status=None,
                        last_error=None, created_at=0.0, finished_at=None)

    async def attempt() -> tuple[str, str | None]:
        async with httpx.AsyncClient() as client:
            tried = await service._attempt(client, delivery)
        return tried.outcome, tried.error

    outcome, error = asyncio.run(attempt())
    assert outcome == PENDING and error is not None and "image store" in error
