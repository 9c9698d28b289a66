"""The watermark and the content credentials on real images, with the real libraries: the mark
survives JPEG q80 and a half-size copy; C2PA manifests read back valid in each output format,
and a certificate that cannot sign stops the start."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from PIL import Image

from easel.services.images.provenance import (
    AI_SOURCE_TYPE,
    GENERATION_LABEL,
    ContentCredentials,
    CredentialFacts,
    Watermarker,
    make_test_certificate,
    read_credentials,
    read_watermark,
)
from easel.services.images.watermark import read_bits

# The candidate sizes a reader gets (the catalog's, scaled down): a wrong aspect ratio first,
# to show the reader tries the image's own ratio before the others.
SIZES = [(640, 384), (512, 512), (384, 640)]
FACTS = CredentialFacts(model="imagen-4.0-generate-001", tier="standard",
                        backend="Tongyi-MAI/Z-Image-Turbo", easel_version="9.9.9", seed=42)
FORMATS = [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with noise: texture like a photo's, made offline."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([40 + 180 * x, 30 + 190 * y, 60 + 90 * (x + y)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 10, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue()))


@pytest.fixture(scope="module")
def watermarker() -> Watermarker:
    return Watermarker()


@pytest.fixture(scope="module")
def square() -> np.ndarray:
    return textured(512, 512)


@pytest.fixture(scope="module")
def marked(watermarker: Watermarker, square: np.ndarray) -> np.ndarray:
    return watermarker.embed(square)


# -- the watermark --------------------------------------------------------------------------


def test_the_mark_is_invisible_and_found(marked: np.ndarray, square: np.ndarray) -> None:
    assert marked.shape == square.shape and marked.dtype == np.uint8
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - square) ** 2))
    assert psnr > 39  # only the U channel's wavelet approximation changes
    reading = read_watermark(Image.fromarray(marked), SIZES)
    assert reading.found and reading.at_size == (512, 512)


def test_a_mark_made_by_invisible_watermark_is_read() -> None:
    """Made with invisible-watermark 0.2.0's own encoder (dwtDctSvd, payload b"easel1") on
    textured(320, 256, seed=3), then saved as JPEG q90: the marks that package wrote, as easel
    did before it carried its own codec, still verify, with every bit right."""
    image = Image.open(Path(__file__).parent / "data" / "marked-by-invisible-watermark-0.2.0.jpg")
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    assert read_bits(bgr, 48).tobytes() == np.unpackbits(np.frombuffer(b"easel1", np.uint8)
                                                         ).astype(bool).tobytes()
    assert read_watermark(image, SIZES).found
    unmarked = textured(320, 256, seed=3)
    assert not read_watermark(Image.fromarray(unmarked), SIZES).found


def test_an_unmarked_image_has_no_mark(square: np.ndarray) -> None:
    reading = read_watermark(Image.fromarray(square), SIZES)
    assert not reading.found and reading.at_size is None


def test_the_mark_survives_jpeg_80(marked: np.ndarray, watermarker: Watermarker) -> None:
    assert read_watermark(jpeg(Image.fromarray(marked), 80), SIZES).found
    # This one decodes with a bit wrong after q80 (measured): within the tolerance.
    other = Image.fromarray(watermarker.embed(textured(512, 512, seed=1)))
    assert read_watermark(jpeg(other, 80), SIZES).found


def test_a_half_size_copy_is_read_at_the_marked_size(marked: np.ndarray) -> None:
    half = Image.fromarray(marked).resize((256, 256), Image.Resampling.LANCZOS)
    assert not read_watermark(half, []).found  # not at the copy's own size
    reading = read_watermark(half, SIZES)
    assert reading.found and reading.at_size == (512, 512)


def test_a_wide_half_size_copy_is_found(watermarker: Watermarker) -> None:
    """A BICUBIC copy (the reader scales back with LANCZOS first, then BICUBIC). A half-size
    copy that is also re-encoded as JPEG loses the mark: each step alone is survivable."""
    wide = Image.fromarray(watermarker.embed(textured(640, 384, seed=1)))
    copy = wide.resize((320, 192), Image.Resampling.BICUBIC)
    assert read_watermark(copy, SIZES).at_size == (640, 384)


def test_embed_refuses_what_it_cannot_mark(watermarker: Watermarker) -> None:
    with pytest.raises(ValueError, match="uint8"):
        watermarker.embed(textured(512, 512).astype(np.float32))
    with pytest.raises(ValueError, match="too small"):
        watermarker.embed(textured(200, 200))


# -- content credentials --------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_test_certificate(tmp_path_factory.mktemp("c2pa"))


@pytest.fixture(scope="module")
def credentials(certificate: tuple[Path, Path]) -> ContentCredentials:
    return ContentCredentials.from_files(*certificate)


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "mime"), FORMATS)
def test_credentials_read_back_valid(credentials: ContentCredentials, fmt: str,
                                     mime: str) -> None:
    plain = encoded(textured(256, 256), fmt)
    signed = credentials.sign(plain, mime, FACTS)
    store = read_credentials(signed, mime)
    assert store is not None and store["validation_state"] == "Valid"
    codes = {status["code"] for status in store.get("validation_status", [])}
    assert codes <= {"signingCredential.untrusted"}  # the test root is no trust anchor
    manifest = store["manifests"][store["active_manifest"]]
    assert manifest["claim_generator_info"][0]["name"] == "easel"
    assert manifest["claim_generator_info"][0]["version"] == "9.9.9"
    assert manifest["signature_info"]["common_name"] == "easel test signer"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert assertions[GENERATION_LABEL] == {
        "model": "imagen-4.0-generate-001", "tier": "standard", "easel_version": "9.9.9",
        "backend": "Tongyi-MAI/Z-Image-Turbo", "seed": 42}
    actions = [a for label, data in assertions.items() if label.startswith("c2pa.actions")
               for a in data["actions"]]  # c2pa writes the label as c2pa.actions.v2
    assert [(a["action"], a["digitalSourceType"], a["softwareAgent"]["name"])
            for a in actions] == [("c2pa.created", AI_SOURCE_TYPE, "easel")]
    assert Image.open(io.BytesIO(signed)).size == (256, 256)
    assert len(signed) - len(plain) < 16_000  # no thumbnail: a manifest, not a second image


@pytest.mark.parametrize(("fmt", "mime"), FORMATS)
def test_an_unsigned_image_has_no_credentials(fmt: str, mime: str) -> None:
    assert read_credentials(encoded(textured(64, 64), fmt), mime) is None


def test_a_png_keeps_its_pixels_and_a_changed_one_reads_invalid(
        credentials: ContentCredentials) -> None:
    pixels = textured(256, 256)
    signed = credentials.sign(encoded(pixels, "PNG"), "image/png",
                              CredentialFacts("m", "fast", "b", "1.0"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(signed))), pixels)
    store = read_credentials(signed, "image/png")
    assert store is not None
    manifest = store["manifests"][store["active_manifest"]]
    generation = next(a["data"] for a in manifest["assertions"]
                      if a["label"] == GENERATION_LABEL)
    assert generation["seed"] is None
    tampered = bytearray(signed)
    tampered[len(tampered) // 2] ^= 0xFF
    store = read_credentials(bytes(tampered), "image/png")
    assert store is not None and store["validation_state"] == "Invalid"


def test_only_the_output_formats_are_signed(credentials: ContentCredentials) -> None:
    with pytest.raises(ValueError, match="image/gif"):
        credentials.sign(b"GIF89a", "image/gif", FACTS)


def test_a_key_that_does_not_match_fails_at_construction(tmp_path: Path) -> None:
    chain, _key = make_test_certificate(tmp_path / "a")
    _chain, other = make_test_certificate(tmp_path / "b")
    with pytest.raises(ValueError, match="cannot sign: it does not belong"):
        ContentCredentials.from_files(chain, other)


def test_unreadable_credentials_fail_at_construction(certificate: tuple[Path, Path]) -> None:
    chain, key = certificate
    with pytest.raises(ValueError, match="not PEM"):
        ContentCredentials(b"not a certificate", key.read_bytes())
    with pytest.raises(ValueError, match="private key cannot sign"):
        ContentCredentials(chain.read_bytes(), b"not a key")
    with pytest.raises(ValueError, match="cannot sign with es384"):
        ContentCredentials(chain.read_bytes(), key.read_bytes(), alg="es384")  # a P-256 key


def test_a_traditional_ec_key_is_accepted(certificate: tuple[Path, Path]) -> None:
    chain, key = certificate
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    sec1 = loaded.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    assert b"BEGIN EC PRIVATE KEY" in sec1  # c2pa itself reads PKCS#8 only
    ContentCredentials(chain.read_bytes(), sec1)


def test_the_test_certificate_files(certificate: tuple[Path, Path]) -> None:
    chain, key = certificate
    assert (chain.name, key.name) == ("easel-test-chain.pem", "easel-test-key.pem")
    assert chain.read_bytes().count(b"BEGIN CERTIFICATE") == 2  # the leaf, then the root
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert key.stat().st_mode & 0o077 == 0


def test_the_credentials_name_the_lora_adapters_an_image_ran_with(
    credentials: ContentCredentials,
) -> None:
    loras = ({"name": "ink", "sha256": "ab" * 32, "weight": 0.8},)
    signed = credentials.sign(encoded(textured(128, 128), "PNG"), "image/png",
                              dataclasses.replace(FACTS, loras=loras))
    store = read_credentials(signed, "image/png")
    assert store is not None and store["validation_state"] == "Valid"
    manifest = store["manifests"][store["active_manifest"]]
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert assertions[GENERATION_LABEL]["loras"] == list(loras)
