"""The DWT-DCT-SVD invisible watermark, vectorised.

The method is the one invisible-watermark 0.2.0 calls `dwtDctSvd` (the mark Stable Diffusion's
reference scripts embed): take the U channel of the picture in YUV, its Haar wavelet's
approximation band, and every 4x4 block of that band; quantise the largest singular value of
the block's DCT so that its remainder modulo `scale` says one bit of the mark. The bits repeat
over the blocks in reading order, and the reader takes each bit's majority vote.

easel carries this small codec itself rather than depend on the package: that package names
`opencv-python` (with its desktop libraries) as a requirement, which clashes with the headless
OpenCV the content check needs (both install the `cv2` module), and it imports torch, which
the API process must never load. The codec reads and writes the same marks: a test reads a
picture that package marked. Unlike it, the wavelet's detail bands go back where they came
from (the package swaps the horizontal and vertical ones on the way back), so only the U
channel's approximation changes.

It runs for every image a watermarking job makes, in the worker's finishing threads, so it is
written for speed (docs/benchmarks.md, "Safety and provenance"): the Haar approximation is a
sum of 2x2 squares, and only the largest singular triplet of each block is computed, for all
blocks at once, with the exact SVD kept for the few blocks where that shortcut is unsure.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

BLOCK = 4
U_SCALE = 36.0  # the quantisation step of the singular value: strength against invisibility
MIN_PIXELS = 256 * 256  # the same floor as the package: fewer blocks vote too few times
# Squarings of each block's Gram matrix: its eigenvalue ratios reach the power 2**6 = 64, so a
# second singular value below 0.9 of the first leaves less than 1e-5 of its direction.
SQUARINGS = 6
# A triplet is taken when A.T @ u is within this share of s * v; the rest get the exact SVD.
TOLERANCE = 1e-9
# OpenCV's conversions to and from YUV for each channel order: RGB pixels are marked as their
# BGR copy would be, without making that copy.
_TO_YUV = {"bgr": cv2.COLOR_BGR2YUV, "rgb": cv2.COLOR_RGB2YUV}
_FROM_YUV = {"bgr": cv2.COLOR_YUV2BGR, "rgb": cv2.COLOR_YUV2RGB}


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: `D @ block @ D.T` is OpenCV's `cv2.dct(block)`."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(BLOCK)


def _blocks(band: np.ndarray) -> np.ndarray:
    """The band's whole 4x4 blocks in reading order, shape (count, 4, 4)."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    cut = band[: rows * BLOCK, : cols * BLOCK]
    return cut.reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK, BLOCK)


def _unblock(blocks: np.ndarray, band: np.ndarray) -> None:
    """Writes `blocks` (as `_blocks` ordered them) back into `band`, in place."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    tiled = blocks.reshape(rows, cols, BLOCK, BLOCK).swapaxes(1, 2)
    band[: rows * BLOCK, : cols * BLOCK] = tiled.reshape(rows * BLOCK, cols * BLOCK)


def _approximation(u_channel: np.ndarray) -> np.ndarray:
    """The Haar wavelet's approximation band of the channel (its whole 4x4 pixel blocks): each
    2x2 square's sum over 2, as `pywt.dwt2(x, "haar")[0]` computes it, 40 times faster."""
    rows, cols = u_channel.shape[0] // 4 * 4, u_channel.shape[1] // 4 * 4
    x = u_channel[:rows, :cols].astype(np.float64)
    return (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]) / 2


def _with_approximation(u_channel: np.ndarray, change: np.ndarray) -> np.ndarray:
    """The channel whose approximation band moved by `change`, detail bands kept: the inverse
    Haar transform spreads each coefficient's change over its 2x2 square, halved."""
    rows, cols = change.shape[0] * 2, change.shape[1] * 2
    spread = np.broadcast_to((change / 2)[:, None, :, None], (rows // 2, 2, cols // 2, 2))
    restored = u_channel.astype(np.float64)
    restored[:rows, :cols] += spread.reshape(rows, cols)
    return restored


def largest_singular(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each block's largest singular value s and its vectors u, v (`block @ v == s * u`),
    shapes (n,), (n, 4), (n, 4): what `np.linalg.svd` gives as `s[:, 0]`, `u[:, :, 0]` and
    `vt[:, 0]`, up to a common sign of u and v, in a third of its time. Repeated squaring of
    the Gram matrix brings out its top eigenvector; blocks where that has not settled, or
    cannot be shown to be the largest (two singular values within 0.6% of each other, or none
    above zero), get the exact SVD."""
    # Each block scaled to at most 1 first, and each square after, so nothing over- or
    # underflows whatever the picture.
    size = np.abs(blocks).max(axis=(1, 2), keepdims=True)
    scaled = blocks / np.where(size > 0, size, 1.0)
    gram = np.swapaxes(scaled, 1, 2) @ scaled
    for _ in range(SQUARINGS):
        gram = gram @ gram
        # A Gram matrix's powers are positive semidefinite: no entry exceeds the trace, and
        # the largest eigenvalue is at least a quarter of it.
        trace = np.einsum("nii->n", gram)
        gram /= np.maximum(trace, np.finfo(float).tiny)[:, None, None]
    strongest = np.argmax(np.einsum("nij,nij->nj", gram, gram), axis=1)
    v = gram[np.arange(len(gram)), :, strongest]
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(float).tiny)
    image = np.einsum("nij,nj->ni", scaled, v)
    s = np.linalg.norm(image, axis=1)
    u = image / np.where(s > 0, s, 1.0)[:, None]
    back = np.einsum("nji,nj->ni", scaled, u) - s[:, None] * v
    settled = np.linalg.norm(back, axis=1) <= TOLERANCE * s  # (u, s, v) is a singular triplet
    # ... and the largest: v's share of the power's trace is s**128 / sum of all s_i**128, over
    # half only when no other singular value is as large (nor within 0.6% of it).
    largest = 2 * np.einsum("ni,nij,nj->n", v, gram, v) > np.einsum("nii->n", gram)
    unsure = (s <= 0) | ~(settled & largest)  # NaN: unsure too
    s *= size[:, 0, 0]
    if unsure.any():
        exact_u, exact_s, exact_vt = np.linalg.svd(blocks[unsure])
        s[unsure], u[unsure], v[unsure] = exact_s[:, 0], exact_u[:, :, 0], exact_vt[:, 0]
    return s, u, v


def _yuv(pixels: np.ndarray, order: Literal["bgr", "rgb"]) -> np.ndarray:
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 pixels, got {pixels.shape} {pixels.dtype}")
    if pixels.shape[0] * pixels.shape[1] < MIN_PIXELS:
        raise ValueError(f"a {pixels.shape[1]}x{pixels.shape[0]} image is too small for the "
                         f"watermark (at least {MIN_PIXELS} pixels)")
    return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_YUV[order])


def embed_bits(pixels: np.ndarray, bits: np.ndarray,
               order: Literal["bgr", "rgb"] = "bgr") -> np.ndarray:
    """A copy of the HxWx3 uint8 picture (channels in `order`) carrying `bits` (0/1),
    repeated over it."""
    yuv = _yuv(pixels, order)
    approximation = _approximation(yuv[:, :, 1])
    blocks = _DCT @ _blocks(approximation) @ _DCT.T
    wanted = np.resize(np.asarray(bits, dtype=np.float64), len(blocks))
    s, u, v = largest_singular(blocks)
    quantised = (s // U_SCALE + 0.25 + 0.5 * wanted) * U_SCALE
    # Only the largest singular value moves: each block changes by (new - old) * u v^T, which
    # the inverse DCT carries back to the band.
    moved = (quantised - s)[:, None, None] * (u[:, :, None] * v[:, None, :])
    change = np.zeros_like(approximation)
    _unblock(_DCT.T @ moved @ _DCT, change)
    # Truncated, as the package writes it: the reader's votes are calibrated on that.
    yuv[:, :, 1] = np.clip(_with_approximation(yuv[:, :, 1], change), 0, 255).astype(np.uint8)
    marked: np.ndarray = cv2.cvtColor(yuv, _FROM_YUV[order])
    return marked


def read_bits(pixels: np.ndarray, length: int, order: Literal["bgr", "rgb"] = "bgr"
              ) -> np.ndarray:
    """The `length` bits the picture's blocks vote for (bool), mark or not."""
    yuv = _yuv(pixels, order)
    singular, _u, _v = largest_singular(_DCT @ _blocks(_approximation(yuv[:, :, 1])) @ _DCT.T)
    votes = (singular % U_SCALE > U_SCALE * 0.5).astype(np.float64)
    padded = np.full(-(-len(votes) // length) * length, np.nan)
    padded[: len(votes)] = votes
    means = np.nanmean(padded.reshape(-1, length), axis=0)
    result: np.ndarray = means * 255 > 127
    return result
