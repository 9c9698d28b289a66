"""Input images (the images-in work) decoded once and safely: sniffed formats, bombs refused
from the header, truncation, orientation, alpha, 16-bit, every way a client names an image;
each refusal names the client's parameter."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from easel.domain.errors import EaselError
from easel.services.images.inputs import InputLimits, decode, reference


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gradient(width: int = 48, height: int = 32) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    pixels = np.stack([np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)),
                       np.full((height, width), 90, np.uint8)], axis=-1)
    return Image.fromarray(pixels)


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header and one IDAT of zeros claiming width x height: a few KB on the wire,
    gigabytes decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 64, 9)  # only the first rows
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_format_decodes_to_rgb_of_its_size(fmt: str) -> None:
    data = encoded(gradient(), fmt, quality=95) if fmt != "PNG" else encoded(gradient(), fmt)
    image = decode(data, "image")
    assert (image.width, image.height, image.format) == (48, 32, fmt.lower())
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (32, 48, 3)
    assert image.alpha is None
    assert np.abs(image.pixels.astype(int) - np.asarray(gradient()).astype(int)).mean() < 4


def test_the_format_is_sniffed_not_taken_from_a_data_uri_label() -> None:
    png = encoded(gradient(), "PNG")
    uri = "data:image/jpeg;base64," + base64.b64encode(png).decode()
    found = reference(uri, "image")
    assert found.data == png and decode(found.data, "image").format == "png"


@pytest.mark.parametrize(("data", "words"), [
    (b"GIF89a" + b"\x00" * 64, "is not a PNG, JPEG or WEBP image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "is not a PNG, JPEG or WEBP image"),
    (b"%PDF-1.7 not an image", "is not a PNG, JPEG or WEBP image"),
    (b"", "is not a PNG, JPEG or WEBP image"),
])
def test_what_is_not_an_image_is_refused_by_name(data: bytes, words: str) -> None:
    with pytest.raises(EaselError) as info:
        decode(data, "seedImage")
    assert info.value.parameter == "seedImage" and words in info.value.message


def test_a_gif_is_refused_even_though_pillow_reads_it() -> None:
    with pytest.raises(EaselError, match="is not a PNG, JPEG or WEBP image"):
        decode(encoded(gradient(), "GIF"), "image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_file_is_refused_not_padded(fmt: str) -> None:
    data = encoded(gradient(256, 256), fmt)
    with pytest.raises(EaselError) as info:
        decode(data[: len(data) * 2 // 3], "image")
    assert info.value.parameter == "image"
    assert "truncated or corrupt" in info.value.message or "is not a" in info.value.message


def test_a_30000_square_png_of_a_few_kb_is_refused_from_its_header() -> None:
    data = bomb_png(30_000, 30_000)
    assert len(data) < 10_000
    with pytest.raises(EaselError) as info:
        decode(data, "image[0]")
    assert info.value.parameter == "image[0]"
    assert "too many pixels: over the limit of 40,000,000" in info.value.message
    with pytest.raises(EaselError) as info:  # below Pillow's own bound: easel's, with its size
        decode(bomb_png(9_000, 9_000), "image[0]")
    assert "9000x9000: over the limit of 40,000,000 pixels" in info.value.message


def test_the_limits_are_the_operators() -> None:
    small = InputLimits(max_bytes=1000, max_pixels=100, max_side=50)
    with pytest.raises(EaselError, match="over the limit of 1,000"):
        decode(b"x" * 1001, "mask", small)
    with pytest.raises(EaselError, match="48x32: over the limit of 100 pixels"):
        decode(encoded(gradient(), "PNG"), "mask", InputLimits(max_pixels=100))


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encoded(gradient(48, 32), "JPEG", exif=exif.tobytes(), quality=95)
    image = decode(data, "image")
    assert (image.width, image.height) == (32, 48)


def test_transparency_becomes_an_alpha_channel_and_opaque_alpha_none() -> None:
    rgba = gradient().convert("RGBA")
    alpha = np.full((32, 48), 255, np.uint8)
    alpha[:, :24] = 0
    rgba.putalpha(Image.fromarray(alpha))
    image = decode(encoded(rgba, "PNG"), "mask")
    assert image.alpha is not None and image.alpha[0, 0] == 0 and image.alpha[0, 47] == 255
    opaque = decode(encoded(gradient().convert("RGBA"), "PNG"), "mask")
    assert opaque.alpha is None
    palette = gradient().convert("P")
    palette.info["transparency"] = 0
    assert decode(encoded(palette, "PNG", transparency=0), "mask").pixels.shape == (32, 48, 3)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    values = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    image = decode(encoded(Image.fromarray(values), "PNG"), "mask")
    assert image.pixels[0, 0, 0] == 0 and image.pixels[-1, -1, 0] == 255
    assert 100 < image.pixels[4, 0, 0] < 160  # the middle stays the middle


def test_an_animated_image_is_refused() -> None:
    frames = [gradient(), gradient().rotate(90)]
    data = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(EaselError, match="is an animated image"):
        decode(data, "image")


@pytest.mark.parametrize(("value", "kind"), [
    ("https://example.com/a.png", "url"),
    ("HTTP://example.com/a.png", "url"),
    ("3f2c1a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f", "stored_id"),
    ("3F2C1A9E-8B7D-4C6E-9F10-2A3B4C5D6E7F", "stored_id"),
])
def test_a_reference_names_a_url_or_a_stored_image(value: str, kind: str) -> None:
    found = reference(value, "seedImage")
    assert getattr(found, kind) is not None and found.data is None


def test_base64_in_either_alphabet_with_or_without_padding() -> None:
    png = encoded(gradient(), "PNG")
    standard = base64.b64encode(png).decode()
    url_safe = base64.urlsafe_b64encode(png).decode().rstrip("=")
    wrapped = "\n".join(standard[i:i + 76] for i in range(0, len(standard), 76))
    for text in (standard, url_safe, wrapped):
        assert reference(text, "image").data == png


@pytest.mark.parametrize(("value", "words"), [
    ("", "must be an image"),
    (42, "must be an image"),
    ("data:image/png,not-base64", "without base64 data"),
    ("not an image at all!", "neither a URL, an image id nor base64"),
    ("QUJDR", "is not valid base64"),
])
def test_a_bad_reference_is_refused_by_name(value: object, words: str) -> None:
    with pytest.raises(EaselError) as info:
        reference(value, "referenceImages[1]")
    assert info.value.parameter == "referenceImages[1]" and words in info.value.message


def test_base64_past_the_limit_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(EaselError, match="over the limit of 1,000 bytes"):
        reference("A" * 4000, "image", InputLimits(max_bytes=1000))
