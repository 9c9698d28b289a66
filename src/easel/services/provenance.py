"""Where an image came from, carried in the image: easel's invisible watermark
(invisible-watermark's DWT-DCT-SVD method) and C2PA content credentials (c2pa-python), signed
with the operator's certificate.

The watermark is read at the size it was embedded at: a resized copy is read again after
scaling it back to each of the catalog's sizes (`read_watermark`), so it survives JPEG
re-encoding and a 50% resize. The payload is a fixed mark, so a chance decode of an unmarked
image matching all of its bits is 1 in 2**48.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

WATERMARK_PAYLOAD = b"easel1"  # 48 bits
WATERMARK_METHOD = "dwtDctSvd"  # survives JPEG q80, unlike plain dwtDct (measured)
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL = "org.easel.generation"


class Watermarker:
    """Embeds the mark in RGB pixels. imwatermark (and the torch it imports) loads on first
    use, in the worker's encoder thread."""

    def __init__(self) -> None:
        self._encoder: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._encoder is None:
                from imwatermark import WatermarkEncoder

                encoder = WatermarkEncoder()
                encoder.set_watermark("bytes", WATERMARK_PAYLOAD)
                self._encoder = encoder
            return self._encoder

    def embed(self, pixels: Any) -> np.ndarray:
        rgb = np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8))
        bgr = rgb[:, :, ::-1].copy()  # imwatermark works in OpenCV's BGR order
        marked = self._loaded().encode(bgr, WATERMARK_METHOD)
        return np.ascontiguousarray(np.clip(marked, 0, 255).astype(np.uint8)[:, :, ::-1])


@dataclass(frozen=True)
class WatermarkReading:
    found: bool
    at_size: tuple[int, int] | None = None  # the size the mark was read at


def _decoded(image: Image.Image) -> bool:
    from imwatermark import WatermarkDecoder

    bgr = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()
    decoder = WatermarkDecoder("bytes", len(WATERMARK_PAYLOAD) * 8)
    try:
        return bool(decoder.decode(bgr, WATERMARK_METHOD) == WATERMARK_PAYLOAD)
    except Exception:  # an image too small for the transform holds no mark
        return False


def _candidates(image: Image.Image, sizes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The image's own size, then the sizes of its aspect ratio, then the others."""
    own = image.size
    ratio = own[0] / own[1]
    rest = sorted({size for size in sizes if size != own},
                  key=lambda size: abs(size[0] / size[1] - ratio) > 0.02)
    return [own, *rest]


def read_watermark(image: Image.Image, sizes: Sequence[tuple[int, int]]) -> WatermarkReading:
    for size in _candidates(image, sizes):
        scaled = image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
        if _decoded(scaled):
            return WatermarkReading(True, size)
    return WatermarkReading(False)


@dataclass(frozen=True)
class CredentialFacts:
    """What the content credentials of one image say about how it was made."""

    model: str
    tier: str
    backend: str
    easel_version: str
    seed: int | None = None


class ContentCredentials:
    """Signs images with C2PA manifests. Built once at start: a certificate and key that cannot
    sign stop the start instead of failing every image."""

    def __init__(self, cert_chain_pem: bytes, private_key_pem: bytes, alg: str = "es256",
                 tsa_url: str | None = None) -> None:
        import c2pa

        self._c2pa = c2pa
        info = c2pa.C2paSignerInfo(alg=alg.encode(), sign_cert=cert_chain_pem,
                                   private_key=private_key_pem,
                                   ta_url=tsa_url.encode() if tsa_url else None)
        self._info = info
        # No thumbnail in the manifest: it would add a second copy of the picture (hundreds of
        # KB on a WEBP) to every image.
        settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
        self._context = c2pa.Context(settings)
        self._lock = threading.Lock()
        try:
            self.sign(_probe_jpeg(), "image/jpeg",
                      CredentialFacts("probe", "probe", "probe", "probe"))
        except Exception as exc:
            raise ValueError(f"the C2PA certificate and key cannot sign: {exc}") from None

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path, alg: str = "es256",
                   tsa_url: str | None = None) -> ContentCredentials:
        return cls(Path(cert_path).read_bytes(), Path(key_path).read_bytes(), alg, tsa_url)

    def sign(self, data: bytes, mime: str, facts: CredentialFacts) -> bytes:
        c2pa = self._c2pa
        with self._lock:  # one signer, used from the encoder thread (and the probe)
            signer = c2pa.Signer.from_info(self._info)
            builder = c2pa.Builder(_manifest(facts), self._context)
            out = io.BytesIO()
            try:
                builder.sign(signer, mime, io.BytesIO(data), out)
            finally:
                builder.close()
                signer.close()
        return out.getvalue()


def _manifest(facts: CredentialFacts) -> dict[str, Any]:
    agent = f"easel {facts.easel_version}"
    return {
        "claim_generator_info": [{"name": "easel", "version": facts.easel_version}],
        "title": f"{facts.model} ({facts.tier})",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": AI_SOURCE_TYPE,
                 "softwareAgent": {"name": "easel", "version": facts.easel_version},
                 "description": f"generated by {agent} with {facts.backend}"},
            ]}},
            {"label": GENERATION_LABEL, "data": {
                "model": facts.model, "tier": facts.tier, "backend": facts.backend,
                "easel_version": facts.easel_version, "seed": facts.seed}},
        ],
    }


def _probe_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


def read_credentials(data: bytes, mime: str) -> dict[str, Any] | None:
    """The image's manifest store (with its validation results), or None when it has none."""
    import c2pa

    try:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            return dict(json.loads(reader.json()))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return None
        raise


def make_test_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-made chain (an EC P-256 root and a signing leaf, one year) and its key, to try
    C2PA signing with. Readers report such credentials as signed by an untrusted signer;
    production needs a certificate from a CA on the C2PA trust list."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "easel test root CA"),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "easel (test only)")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "easel test signer"),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "easel (test only)")])
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                       critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder().subject_name(leaf_name).issuer_name(root_name)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    chain = directory / "easel-test-chain.pem"
    key = directory / "easel-test-key.pem"
    chain.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key.chmod(0o600)
    return chain, key
