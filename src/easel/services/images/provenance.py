"""Where an image came from, carried inside the image itself, two ways:

- an invisible watermark (the DWT-DCT-SVD method, easel.services.images.watermark) holding a fixed
  easel mark. It survives JPEG re-encoding; a resized copy is read again after scaling it back to
  the size the mark was embedded at, so the reader tries the catalog's sizes;
- C2PA content credentials (c2pa-python): a manifest signed with the operator's certificate
  saying the picture was made by a trained model, which model, tier and backend.

c2pa and cryptography are imported where they are used: a server without signing configured
never loads their native code.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from easel.services.images import watermark

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

# 48 bits, repeated over the picture: every 4x4 block of the transform votes for one bit.
# Measured on gradients and photos at 512..1024: a 50% resize copy decodes with no bit wrong,
# JPEG q80 with 0 (mostly) to 6 (a blurred, flat picture) wrong, an unmarked picture with 18
# or more wrong. Longer or shorter marks were no better: which bits JPEG breaks depends on how
# the mark's bits fall on the picture, not on its length alone.
WATERMARK_PAYLOAD: bytes = b"easel1"
# A few wrong bits still count as the mark: JPEG flips single bits, while 48 random bits fall
# within 3 of the mark once in 1.5e10 (sum of C(48, k) for k <= 3, over 2**48).
WATERMARK_MAX_BIT_ERRORS = 3
MIN_WATERMARK_PIXELS = watermark.MIN_PIXELS  # fewer blocks vote too few times
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# An edit: real or earlier pixels combined with what a model drew.
EDITED_SOURCE_TYPE = ("http://cv.iptc.org/newscodes/digitalsourcetype/"
                      "compositeWithTrainedAlgorithmicMedia")
# An upscale: the input's pixels, enlarged by an algorithm (IPTC: "minor augmentation or
# correction by algorithm").
ENHANCED_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicallyEnhanced"
GENERATION_LABEL = "org.easel.generation"
SIGNABLE_MIMES = frozenset({"image/jpeg", "image/png", "image/webp"})
TRUSTED_STATES = frozenset({"Valid", "Trusted"})  # c2pa's states: Invalid, Valid, Trusted

_RESAMPLERS = (Image.Resampling.LANCZOS, Image.Resampling.BICUBIC)
_ASPECT_TOLERANCE = 0.01  # a rounded resize (1001x751 -> 500x375) keeps "the same" ratio


# -- the invisible watermark ----------------------------------------------------------------


_PAYLOAD_BITS = np.unpackbits(np.frombuffer(WATERMARK_PAYLOAD, dtype=np.uint8)).astype(bool)


class Watermarker:
    """Embeds easel's mark in RGB pixels. It keeps no state, so one instance serves any
    thread."""

    @staticmethod
    def fits(pixels: np.ndarray) -> bool:
        """Whether the image is large enough to carry the mark (every catalog size is; only a
        test catalog's tiny sizes are not)."""
        height, width = np.asarray(pixels).shape[:2]
        return bool(width * height >= MIN_WATERMARK_PIXELS)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The same picture, HxWx3 uint8 RGB, carrying the mark (about 41 dB PSNR)."""
        return watermark.embed_bits(pixels, _PAYLOAD_BITS, order="rgb")


@dataclass(frozen=True)
class WatermarkReading:
    found: bool
    at_size: tuple[int, int] | None = None  # (width, height) the mark was read at


def _has_mark(image: Image.Image) -> bool:
    bits = watermark.read_bits(np.asarray(image), _PAYLOAD_BITS.size, order="rgb")
    return int(np.count_nonzero(bits != _PAYLOAD_BITS)) <= WATERMARK_MAX_BIT_ERRORS


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) <= _ASPECT_TOLERANCE * a[1] * b[0]


def _candidate_sizes(own: tuple[int, int], sizes: Sequence[tuple[int, int]]
                     ) -> list[tuple[int, int]]:
    """The sizes to scale to, most likely first: those of the image's aspect ratio, then the
    others (a crop or a pad); each once, none the image already has, none too small."""
    unique = list(dict.fromkeys((int(w), int(h)) for w, h in sizes))
    usable = [s for s in unique if s != own and s[0] * s[1] >= MIN_WATERMARK_PIXELS]
    return sorted(usable, key=lambda size: not _same_aspect(own, size))  # stable


def read_watermark(image: Image.Image, sizes: Sequence[tuple[int, int]]) -> WatermarkReading:
    """Looks for easel's mark at the image's own size, then scaled to each candidate size.

    The transform reads 4x4 blocks at fixed positions, so a resized copy only decodes once it
    is scaled back to the size it was marked at: `sizes` are the sizes easel generates (the
    catalog's). Both LANCZOS and BICUBIC are tried, since the copy's resampling is unknown.
    Found: at most WATERMARK_MAX_BIT_ERRORS of the mark's bits decode wrong.
    """
    rgb = image.convert("RGB")
    if rgb.width * rgb.height >= MIN_WATERMARK_PIXELS and _has_mark(rgb):
        return WatermarkReading(True, rgb.size)
    for size in _candidate_sizes(rgb.size, sizes):
        if any(_has_mark(rgb.resize(size, resampler)) for resampler in _RESAMPLERS):
            return WatermarkReading(True, size)
    return WatermarkReading(False)


# -- C2PA content credentials ---------------------------------------------------------------


@dataclass(frozen=True)
class Ingredient:
    """An image an edited image was drawn from: the file the model was given (PNG, embedded
    as the C2PA ingredient) and the sha256 of the file the client sent."""

    title: str  # "image", "mask", "reference 1", ...
    relationship: str  # parentOf: the image edited; inputTo: a mask; componentOf: a reference
    digest: str
    data: bytes


@dataclass(frozen=True)
class CredentialFacts:
    """What the content credentials of one image say about how it was made."""

    model: str  # the public model id the client asked for
    tier: str
    backend: str  # where the weights came from
    easel_version: str
    seed: int | None = None
    # The LoRA adapters it ran with: name, sha256 of the file, weight.
    loras: tuple[dict[str, Any], ...] = ()
    # Drawn from images (an edit): how, and the images, the one edited first.
    operation: str = "text"
    ingredients: tuple[Ingredient, ...] = ()


def _manifest(facts: CredentialFacts) -> dict[str, Any]:
    easel = {"name": "easel", "version": facts.easel_version}
    generation = {"model": facts.model, "tier": facts.tier, "backend": facts.backend,
                  "easel_version": facts.easel_version, "seed": facts.seed,
                  **({"loras": list(facts.loras)} if facts.loras else {})}
    if facts.ingredients:
        generation |= {"operation": facts.operation, "inputs": [
            {"title": i.title, "relationship": i.relationship, "sha256": i.digest}
            for i in facts.ingredients]}
    made = "Upscaled" if facts.operation == "upscale" else "Edited" if facts.ingredients \
        else "Generated"
    return {
        "claim_generator_info": [easel],
        "title": f"{made} by easel with {facts.model}",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": _actions(facts, easel)}},
            {"label": GENERATION_LABEL, "data": generation},
        ],
    }


def _actions(facts: CredentialFacts, easel: dict[str, Any]) -> list[dict[str, Any]]:
    """c2pa.created for an image drawn from text; for an edit, c2pa.opened (the image it
    edits), c2pa.placed (the references it was shown, if any) and c2pa.edited; for an upscale,
    c2pa.opened and c2pa.resized (enlarged by a model: algorithmically enhanced)."""
    if not facts.ingredients:
        return [{"action": "c2pa.created", "digitalSourceType": AI_SOURCE_TYPE,
                 "softwareAgent": easel}]
    ids: dict[str, list[str]] = {i.relationship: [] for i in facts.ingredients}
    for index, ingredient in enumerate(facts.ingredients):
        ids[ingredient.relationship].append(_instance_id(index, ingredient))
    actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ids["parentOf"]}}]
    if ids.get("componentOf"):
        actions.append({"action": "c2pa.placed",
                        "parameters": {"ingredientIds": ids["componentOf"]}})
    if facts.operation == "upscale":
        actions.append({"action": "c2pa.resized", "digitalSourceType": ENHANCED_SOURCE_TYPE,
                        "softwareAgent": easel})
        return actions
    actions.append({"action": "c2pa.edited", "digitalSourceType": EDITED_SOURCE_TYPE,
                    "softwareAgent": easel})
    return actions


def _instance_id(index: int, ingredient: Ingredient) -> str:
    return f"easel:input:{index}:{ingredient.digest[:16]}"


def _checked_pair(cert_chain_pem: bytes, private_key_pem: bytes) -> bytes:
    """The key as PKCS#8 PEM (the only form c2pa reads), after checking that it belongs to the
    chain's first (signing) certificate and that the certificate is in date: c2pa only finds a
    mismatched key when it signs an image."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        leaf = x509.load_pem_x509_certificates(cert_chain_pem)[0]
    except ValueError as exc:
        raise ValueError(f"the C2PA certificate chain cannot sign: not PEM ({exc})") from None
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"the C2PA private key cannot sign: unreadable or encrypted ({exc})"
                         ) from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ValueError("the C2PA private key cannot sign: it does not belong to the first "
                         "certificate of the chain")
    if leaf.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise ValueError(f"the C2PA certificate cannot sign: it expired on "
                         f"{leaf.not_valid_after_utc:%Y-%m-%d}")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _native_signer(chain: bytes, key: bytes, alg: str, tsa_url: str | None) -> Any:
    import c2pa

    info = c2pa.C2paSignerInfo(alg=alg.encode(), sign_cert=chain, private_key=key,
                               ta_url=tsa_url.encode() if tsa_url else None)
    try:
        return c2pa.Signer.from_info(info)
    except c2pa.C2paError as exc:
        raise ValueError(f"the C2PA certificate and key cannot sign with {alg}: {exc}") from None


def _probe_image() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 130, 140)).save(out, "JPEG")
    return out.getvalue()


class ContentCredentials:
    """Signs images with a C2PA manifest, with the operator's certificate chain and key.

    Built once at start, and it signs (and reads back) a small image then: a certificate, key
    or algorithm that cannot sign stops the start with a ValueError instead of failing every
    image. That probe runs without the timestamp authority so the start needs no network.
    """

    def __init__(self, cert_chain_pem: bytes, private_key_pem: bytes, alg: str = "es256",
                 tsa_url: str | None = None) -> None:
        import c2pa

        key = _checked_pair(cert_chain_pem, private_key_pem)
        # No thumbnail: c2pa would add a second copy of the picture, as large as the image
        # itself at 1024 px, to every file; the image is its own preview.
        self._context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
        self._lock = threading.Lock()  # c2pa raises on a busy handle instead of waiting
        self._signer = _native_signer(cert_chain_pem, key, alg, None)
        self._probe()
        if tsa_url:
            self._signer.close()
            self._signer = _native_signer(cert_chain_pem, key, alg, tsa_url)

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path, alg: str = "es256",
                   tsa_url: str | None = None) -> ContentCredentials:
        return cls(Path(cert_path).read_bytes(), Path(key_path).read_bytes(), alg, tsa_url)

    def _probe(self) -> None:
        facts = CredentialFacts("probe", "probe", "probe", "probe")
        try:
            store = read_credentials(self.sign(_probe_image(), "image/jpeg", facts),
                                     "image/jpeg")
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"the C2PA certificate and key cannot sign: {exc}") from None
        state = store.get("validation_state") if store else None
        if state not in TRUSTED_STATES:
            codes = [s.get("code") for s in (store or {}).get("validation_status", [])]
            raise ValueError(f"the C2PA certificate and key cannot sign: a test image read "
                             f"back {state} ({', '.join(map(str, codes))})")

    def sign(self, data: bytes, mime: str, facts: CredentialFacts) -> bytes:
        """The same image file with the manifest embedded (about 3 KB more)."""
        import c2pa

        if mime not in SIGNABLE_MIMES:
            raise ValueError(f"cannot sign {mime}: only {', '.join(sorted(SIGNABLE_MIMES))}")
        out = io.BytesIO()
        with self._lock, c2pa.Builder(_manifest(facts), self._context) as builder:
            try:
                for index, ingredient in enumerate(facts.ingredients):
                    builder.add_ingredient(
                        {"title": f"{ingredient.title}.png",
                         "relationship": ingredient.relationship,
                         "instance_id": _instance_id(index, ingredient)},
                        "image/png", io.BytesIO(ingredient.data))
                builder.sign(self._signer, mime, io.BytesIO(data), out)
            except c2pa.C2paError as exc:
                raise RuntimeError(f"C2PA signing of a {mime} image failed: {exc}") from exc
        return out.getvalue()


def read_credentials(data: bytes, mime: str) -> dict[str, Any] | None:
    """The image's manifest store as c2pa's JSON (manifests, active_manifest, validation_state
    and validation_status), or None when it carries none. ValueError: unreadable bytes."""
    import c2pa

    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
        if reader is None:
            return None
        with reader:
            store: dict[str, Any] = json.loads(reader.json())
    except c2pa.C2paError as exc:
        raise ValueError(f"cannot read the content credentials of this {mime} file: {exc}"
                         ) from None
    return store


# -- a test certificate ---------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "easel (test only)")])


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not signs_certificates, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=signs_certificates, crl_sign=signs_certificates,
        encipher_only=False, decipher_only=False)


def _certificate(subject: str, key: EllipticCurvePrivateKey, issuer: str,
                 issuer_key: EllipticCurvePrivateKey, is_ca: bool) -> x509.Certificate:
    """One certificate of the test chain, valid for a year (from 5 minutes ago: clock skew)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                       critical=True)
        .add_extension(_key_usage(signs_certificates=is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if not is_ca:  # C2PA wants a signing leaf with an allowed extended key usage
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_test_certificate(directory: Path) -> tuple[Path, Path]:
    """Writes a made-up chain (an EC P-256 root CA and its "easel test signer" leaf, valid for
    a year) as `easel-test-chain.pem`, and the leaf's key as `easel-test-key.pem` (PKCS#8).

    They are for trying C2PA out: readers report the manifests as validly signed, by an
    untrusted signer. Production needs a certificate from a CA on the C2PA trust list.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    root_cn = "easel test root CA"
    root = _certificate(root_cn, root_key, root_cn, root_key, is_ca=True)
    leaf = _certificate("easel test signer", leaf_key, root_cn, root_key, is_ca=False)
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    chain_path = directory / "easel-test-chain.pem"
    key_path = directory / "easel-test-key.pem"
    chain_path.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    key_path.touch(mode=0o600)
    key_path.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    key_path.chmod(0o600)
    return chain_path, key_path
