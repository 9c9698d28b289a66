"""The watermark codec's shortcuts against the method written out plainly: the largest singular
triplet against numpy's full SVD on every kind of block, and a marked picture against the one
the plain method (full Haar transform both ways, full SVD of every block) makes: the same
pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from easel.services.images.watermark import (
    _DCT,
    U_SCALE,
    _blocks,
    _unblock,
    embed_bits,
    largest_singular,
    read_bits,
)
from tests.provenance.test_provenance import textured
from tests.safety.pictures import pixels

BITS = np.unpackbits(np.frombuffer(b"easel1", np.uint8))


def _haar(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The one-level 2D Haar transform, all four bands (PyWavelets' `dwt2(x, "haar")`)."""
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    return (a + b + c + d) / 2, ((a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2)


def _inverse_haar(approx: np.ndarray, details: tuple[np.ndarray, ...]) -> np.ndarray:
    horizontal, vertical, diagonal = details
    out = np.empty((approx.shape[0] * 2, approx.shape[1] * 2))
    out[0::2, 0::2] = (approx + horizontal + vertical + diagonal) / 2
    out[0::2, 1::2] = (approx + horizontal - vertical - diagonal) / 2
    out[1::2, 0::2] = (approx - horizontal + vertical - diagonal) / 2
    out[1::2, 1::2] = (approx - horizontal - vertical + diagonal) / 2
    return out


def plainly_marked(bgr: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The method as invisible-watermark's dwtDctSvd states it (detail bands kept in place)."""
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    rows, cols = yuv.shape[0] // 4 * 4, yuv.shape[1] // 4 * 4
    approx, details = _haar(yuv[:rows, :cols, 1].astype(np.float64))
    blocks = _blocks(approx)
    wanted = np.resize(bits.astype(np.float64), len(blocks))
    u, s, vt = np.linalg.svd(_DCT @ blocks @ _DCT.T)
    s[:, 0] = (s[:, 0] // U_SCALE + 0.25 + 0.5 * wanted) * U_SCALE
    _unblock(_DCT.T @ (u @ (s[:, :, None] * vt)) @ _DCT, approx)
    yuv[:rows, :cols, 1] = np.clip(_inverse_haar(approx, details), 0, 255).astype(np.uint8)
    marked: np.ndarray = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    return marked


def settles_on_the_second() -> np.ndarray:
    """A block whose strongest Gram column holds nothing of the top singular vector, with the
    second singular value within 0.2% of the first: squaring settles on the second triplet."""
    top = np.array([0.0, 1.0, 1.0, 1.0]) / np.sqrt(3)
    rest, _ = np.linalg.qr(np.column_stack([top, np.eye(4)[:, [0, 2, 3]]]))
    v = np.column_stack([top, np.eye(4)[:, 0], rest[:, 2:]])
    return np.diag([100.2, 100.0, 3.0, 1.0]) @ v.T


def awkward_blocks() -> np.ndarray:
    """Blocks where repeated squaring cannot settle, settles on the wrong triplet, or has
    nothing to find."""
    rng = np.random.default_rng(5)
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    return np.stack([
        settles_on_the_second(),
        np.zeros((4, 4)),  # no singular value above zero
        np.eye(4) * 50,  # four equal ones
        np.diag([80.0, 80.0 - 1e-7, 3.0, 0.0]),  # two within a hair of each other
        rotation @ np.diag([100.0, 99.9, 5.0, 1.0]) @ rotation.T,  # close, and rotated
        np.outer(rng.normal(size=4), rng.normal(size=4)) * 30,  # rank one
        -np.eye(4)[::-1] * 7,  # negative, equal
        rng.normal(size=(4, 4)) * 1e-200,  # tiny: squaring would underflow
        rng.normal(size=(4, 4)) * 1e150,  # huge: squaring would overflow
    ])


def picture_blocks() -> np.ndarray:
    bgr = np.ascontiguousarray(pixels("coffee", 512, 512)[:, :, ::-1])
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    approx, _details = _haar(yuv[:, :, 1].astype(np.float64))
    return _DCT @ _blocks(approx) @ _DCT.T


@pytest.mark.parametrize("blocks", [awkward_blocks(), picture_blocks(),
                                    np.random.default_rng(1).normal(size=(5000, 4, 4)) * 60],
                         ids=["awkward", "picture", "random"])
def test_the_largest_singular_triplet_is_numpys(blocks: np.ndarray) -> None:
    s, u, v = largest_singular(blocks)
    exact = np.linalg.svd(blocks, compute_uv=False)[:, 0]
    scale = np.where(exact > 0, exact, 1.0)  # relative, down to the 1e-200 block
    assert np.all(np.abs(s - exact) <= 1e-9 * scale)
    # u and v are a singular pair of that value: block v = s u and block^T u = s v.
    assert np.allclose(np.einsum("nij,nj->ni", blocks, v) / scale[:, None],
                       s[:, None] * u / scale[:, None], atol=1e-9)
    assert np.allclose(np.einsum("nji,nj->ni", blocks, u) / scale[:, None],
                       s[:, None] * v / scale[:, None], atol=1e-9)
    assert np.allclose(np.linalg.norm(u, axis=1), 1) and np.allclose(np.linalg.norm(v, axis=1), 1)


@pytest.mark.parametrize(("name", "bgr"), [
    ("photo 1024", np.ascontiguousarray(pixels("astronaut", 1024, 1024)[:, :, ::-1])),
    ("photo 1408x768", np.ascontiguousarray(pixels("chelsea", 1408, 768)[:, :, ::-1])),
    ("textured, odd size", np.ascontiguousarray(textured(641, 387, seed=2)[:, :, ::-1])),
    ("flat grey", np.full((512, 512, 3), 128, np.uint8)),
])
def test_a_marked_picture_is_the_plain_methods(name: str, bgr: np.ndarray) -> None:
    marked = embed_bits(bgr.copy(), BITS)
    assert np.array_equal(marked, plainly_marked(bgr.copy(), BITS)), name
    assert np.array_equal(read_bits(marked, BITS.size), BITS.astype(bool)), name


def test_rgb_pixels_are_marked_as_their_bgr_copy_would_be() -> None:
    rgb = pixels("rocket", 640, 384)
    marked = embed_bits(rgb, BITS, order="rgb")
    assert np.array_equal(marked[:, :, ::-1], embed_bits(np.ascontiguousarray(rgb[:, :, ::-1]),
                                                         BITS))
    assert np.array_equal(read_bits(marked, BITS.size, order="rgb"), BITS.astype(bool))
