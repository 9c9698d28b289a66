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
"""

from __future__ import annotations

import cv2
import numpy as np
import pywt

BLOCK = 4
U_SCALE = 36.0  # the quantisation step of the singular value: strength against invisibility
MIN_PIXELS = 256 * 256  # the same floor as the package: fewer blocks vote too few times


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


def _approximation(yuv: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...], int, int]:
    rows, cols = yuv.shape[0] // 4 * 4, yuv.shape[1] // 4 * 4
    approximation, details = pywt.dwt2(yuv[:rows, :cols, 1].astype(np.float64), "haar")
    return approximation, details, rows, cols


def _check(bgr: np.ndarray) -> None:
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 pixels, got {bgr.shape} {bgr.dtype}")
    if bgr.shape[0] * bgr.shape[1] < MIN_PIXELS:
        raise ValueError(f"a {bgr.shape[1]}x{bgr.shape[0]} image is too small for the "
                         f"watermark (at least {MIN_PIXELS} pixels)")


def embed_bits(bgr: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """A copy of the HxWx3 uint8 BGR picture carrying `bits` (0/1), repeated over it."""
    _check(bgr)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    approximation, details, rows, cols = _approximation(yuv)
    blocks = _blocks(approximation)
    wanted = np.resize(np.asarray(bits, dtype=np.float64), len(blocks))
    u, s, vt = np.linalg.svd(_DCT @ blocks @ _DCT.T)
    s[:, 0] = (s[:, 0] // U_SCALE + 0.25 + 0.5 * wanted) * U_SCALE
    changed = _DCT.T @ (u @ (s[:, :, None] * vt)) @ _DCT
    _unblock(changed, approximation)
    restored = pywt.idwt2((approximation, details), "haar")
    # Truncated, as the package writes it: the reader's votes are calibrated on that.
    yuv[:rows, :cols, 1] = np.clip(restored, 0, 255).astype(np.uint8)
    marked: np.ndarray = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    return marked


def read_bits(bgr: np.ndarray, length: int) -> np.ndarray:
    """The `length` bits the picture's blocks vote for (bool), mark or not."""
    _check(bgr)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    approximation, _details, _rows, _cols = _approximation(yuv)
    singular = np.linalg.svd(_DCT @ _blocks(approximation) @ _DCT.T, compute_uv=False)[:, 0]
    votes = (singular % U_SCALE > U_SCALE * 0.5).astype(np.float64)
    padded = np.full(-(-len(votes) // length) * length, np.nan)
    padded[: len(votes)] = votes
    means = np.nanmean(padded.reshape(-1, length), axis=0)
    result: np.ndarray = means * 255 > 127
    return result
