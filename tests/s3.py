"""An S3-compatible server for the tests: moto's server mode in its own process, on loopback,
its state in memory (a restart empties it, as `restart` then re-creates the buckets). Tests reach
it through boto3 exactly as easel reaches S3, with throwaway credentials in the environment."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import boto3
import httpx

from tests.server_harness import free_port

# moto accepts any credentials; these only keep boto3 from looking for real ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "easel-test", "AWS_SECRET_ACCESS_KEY": "easel-test-secret",
               "AWS_REGION": "us-east-1"}


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.buckets: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto's server did not start in 60 s")
        for bucket in self.buckets:
            self.client().create_bucket(Bucket=bucket)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self) -> str:
        name = f"easel-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The environment of an easel process that stores its images in `bucket`."""
        location = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return {**CREDENTIALS, "EASEL_IMAGE_STORE": location,
                "EASEL_S3_ENDPOINT_URL": self.endpoint, "EASEL_S3_ADDRESSING_STYLE": "path"}


