"""The automatic judge of easel-mini images, built on the data generator's own ground truth.

Objects are found without any knowledge of the picture: every background the generator draws is
constant along a row, so a row's background colour is read from its two ends and whatever
differs from it is foreground. Connected components of the foreground are the objects. Then:
colour = nearest palette colour of the largest object, position = nearest anchor of its centre,
count = number of components, shape = a small CNN over the component's silhouette (trained on
the generator's shapes), word = tesseract OCR. The checker is validated by scoring ground-truth
renders, which must come out (nearly) perfect.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from examples.mini import data

ATTRIBUTES = ("colour", "position", "count", "shape", "word")
WORK_SIZE = 128  # images are judged at this size, whatever size they come in
MASK_SIZE = 32
_FG_THRESHOLD = 55.0
_MIN_AREA = 0.004  # of the image; smaller specks are noise, not objects
_MIN_REL_AREA = 0.12  # of the largest object
_EDGE = 3  # columns at each end of a row that are taken to be background
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SHIPPED_CLASSIFIER = Path(__file__).with_name("shape_classifier.safetensors")


@dataclass
class Blob:
    mask: np.ndarray  # bool (WORK_SIZE, WORK_SIZE)
    area: int
    cx: float  # centre, fraction of the width
    cy: float
    rgb: tuple[int, int, int]

    @property
    def colour(self) -> str:
        return nearest_colour(self.rgb)


def nearest_colour(rgb: Iterable[float]) -> str:
    v = np.array(list(rgb), np.float32)
    names = list(data.COLOURS)
    d = [float(((np.array(data.COLOURS[n], np.float32) - v) ** 2).sum()) for n in names]
    return names[int(np.argmin(d))]


def to_uint8(image: np.ndarray | Image.Image) -> np.ndarray:
    """Accept PIL, uint8 or float [0, 1] arrays; return uint8 (WORK_SIZE, WORK_SIZE, 3)."""
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.shape[:2] != (WORK_SIZE, WORK_SIZE):
        arr = np.asarray(Image.fromarray(arr).resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX))
    return arr


def _shift_and(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    out = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= p[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def _shift_or(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    out = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected component labels (0 = background) and their number."""
    labels = np.zeros(mask.shape, np.int32)
    h, w = mask.shape
    n = 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        n += 1
        labels[y0, x0] = n
        queue = deque([(int(y0), int(x0))])
        while queue:
            y, x = queue.popleft()
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                    labels[yy, xx] = n
                    queue.append((yy, xx))
    return labels, n


def foreground(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32)
    ends = np.concatenate([img[:, :_EDGE], img[:, -_EDGE:]], axis=1)
    bg = np.median(ends, axis=1)  # (H, 3)
    dist = np.sqrt(((img - bg[:, None, :]) ** 2).sum(axis=2))
    fg = dist > _FG_THRESHOLD
    return _shift_or(_shift_and(fg))  # opening: drops one-pixel noise and hairlines


def segment(image: np.ndarray | Image.Image) -> list[Blob]:
    """Objects in an image, largest first."""
    img = to_uint8(image)
    labels, n = label(foreground(img))
    total = WORK_SIZE * WORK_SIZE
    blobs = []
    for i in range(1, n + 1):
        m = labels == i
        area = int(m.sum())
        if area < _MIN_AREA * total:
            continue
        ys, xs = np.nonzero(m)
        inner = _shift_and(m)  # edge pixels blend with the background; keep them out
        pix = img[inner if inner.sum() >= 8 else m]
        rgb = tuple(int(v) for v in np.median(pix, axis=0))
        blobs.append(Blob(m, area, (xs.mean() + 0.5) / WORK_SIZE, (ys.mean() + 0.5) / WORK_SIZE,
                          (rgb[0], rgb[1], rgb[2])))
    blobs.sort(key=lambda b: -b.area)
    if blobs:
        blobs = [b for b in blobs if b.area >= _MIN_REL_AREA * blobs[0].area]
    return blobs


def nearest_position(cx: float, cy: float) -> str:
    return min(data.ANCHORS, key=lambda k: (data.ANCHORS[k][0] - cx) ** 2
               + (data.ANCHORS[k][1] - cy) ** 2)


def relation_holds(a: Blob, b: Blob, relation: str) -> bool:
    margin = 0.05
    if relation == "above":
        return a.cy < b.cy - margin
    if relation == "below":
        return a.cy > b.cy + margin
    if relation == "left of":
        return a.cx < b.cx - margin
    if relation == "right of":
        return a.cx > b.cx + margin
    raise ValueError(relation)


# --- shape classifier --------------------------------------------------------------------------


class ShapeNet(nn.Module):
    def __init__(self, n_classes: int = len(data.SHAPES)) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(48 * 16, 64), nn.ReLU(), nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def silhouette(mask: np.ndarray) -> np.ndarray:
    """A blob's mask cropped to its box, centred in a square and scaled to MASK_SIZE."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = mask[y0:y1, x0:x1]
    side = max(crop.shape) + 2
    sq = np.zeros((side, side), np.uint8)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    sq[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop * 255
    img = Image.fromarray(sq).resize((MASK_SIZE, MASK_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32) / 255.0


def _training_masks(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for cls, shape in enumerate(data.SHAPES):
        for _ in range(n_per_class):
            size = str(rng.choice(list(data.SIZES)))
            obj = data.SceneObject(shape, "red", size, float(rng.uniform(0.3, 0.7)),
                                   float(rng.uniform(0.3, 0.7)))
            m = data.object_mask(obj, WORK_SIZE)
            r = rng.random()
            # Generated silhouettes are a little fatter or thinner than the drawn ones.
            if r < 0.25:
                m = _shift_or(m)
            elif r < 0.5:
                m = _shift_and(m) if _shift_and(m).sum() > 20 else m
            xs.append(silhouette(m))
            ys.append(cls)
    return np.stack(xs)[:, None], np.array(ys)


def train_shape_classifier(n_per_class: int = 200, steps: int = 400, seed: int = 0) -> ShapeNet:
    """Train the shape CNN on the generator's silhouettes (seconds on a CPU)."""
    x_np, y_np = _training_masks(n_per_class, seed)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapeNet()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=g)
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def save_shape_classifier(net: ShapeNet, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


@lru_cache(maxsize=1)
def shape_classifier() -> ShapeNet:
    """The shipped classifier, or (without it) one trained on the spot."""
    if SHIPPED_CLASSIFIER.exists():
        from safetensors.torch import load_file

        net = ShapeNet()
        net.load_state_dict(load_file(str(SHIPPED_CLASSIFIER)))
        return net.eval()
    return train_shape_classifier()


@torch.no_grad()
def classify_shapes(masks: list[np.ndarray], net: ShapeNet | None = None) -> list[str]:
    if not masks:
        return []
    net = net or shape_classifier()
    x = torch.from_numpy(np.stack([silhouette(m) for m in masks])[:, None])
    return [data.SHAPES[int(i)] for i in net(x).argmax(dim=1)]


# --- OCR -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def ocr_available() -> bool:
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception:  # no module, no binary, or a broken install: all mean "no OCR"
        return False
    return True


def _binarize(gray: np.ndarray) -> Image.Image:
    """Otsu threshold, polarity fixed to dark text on a light ground, upscaled and padded.

    Tesseract reads black-on-white best; banners carry white letters on a colour.
    """
    hist = np.histogram(gray, 256, (0, 256))[0].astype(np.float64)
    p = hist / max(1.0, hist.sum())
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega) + 1e-9)
    ink = gray <= int(np.argmax(between))
    if ink.mean() > 0.5:
        ink = ~ink
    img = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8))
    scale = max(1, 768 // max(img.size))
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
    return Image.fromarray(np.pad(np.asarray(img), 24, constant_values=255))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    labels, _ = label(~mask)
    border = set(np.unique(np.concatenate(
        [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
    )).tolist())
    holes = (labels > 0) & ~np.isin(labels, list(border))
    return mask | holes


def _carrier_ink(arr: np.ndarray, blob: Blob) -> Image.Image:
    """The letters on a sign or banner: whatever inside its outline differs from its colour."""
    k = arr.shape[0] // WORK_SIZE
    filled = _fill_holes(blob.mask)
    if k > 1:
        filled = filled.repeat(k, axis=0).repeat(k, axis=1)
    filled = filled[: arr.shape[0], : arr.shape[1]]
    ys, xs = np.nonzero(filled)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = arr[y0:y1, x0:x1].astype(np.float32)
    dist = np.sqrt(((crop - np.array(blob.rgb, np.float32)) ** 2).sum(axis=2))
    ink = (dist > 90) & filled[y0:y1, x0:x1]
    img = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8))
    scale = max(1, 768 // max(img.size))
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
    return Image.fromarray(np.pad(np.asarray(img), 24, constant_values=255))


def read_words(image: np.ndarray | Image.Image) -> set[str]:
    """Capital-letter words tesseract finds: on the largest object (a sign or banner, read as one
    line) and on the whole picture (for when the sign hardly stands out from the background)."""
    import pytesseract

    arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    gray = np.asarray(Image.fromarray(arr).convert("L"), np.float32)
    views: list[tuple[Any, int]] = []
    blobs = segment(arr)
    if blobs:
        k = arr.shape[0] / WORK_SIZE
        ys, xs = np.nonzero(blobs[0].mask)
        y0, y1 = int(ys.min() * k), int((ys.max() + 1) * k)
        x0, x1 = int(xs.min() * k), int((xs.max() + 1) * k)
        if min(y1 - y0, x1 - x0) >= 8:
            views.append((lambda: _binarize(gray[y0:y1, x0:x1]), 7))
        views.append((lambda: _carrier_ink(arr, blobs[0]), 7))
    views.append((lambda: _binarize(gray), 11))
    words: set[str] = set()
    # Views are tried in order of how often they read the word; the first that reads any stops.
    for make, psm in views:
        try:
            text = pytesseract.image_to_string(
                make(), config=f"--psm {psm} -c tessedit_char_whitelist={_LETTERS}", timeout=20
            )
        except (RuntimeError, pytesseract.TesseractError):
            continue
        words.update(re.findall(r"[A-Z]{2,}", text.upper()))
        if words:
            break
    return words


# --- judging ---------------------------------------------------------------------------------


def check(
    image: np.ndarray | Image.Image, scene: data.Scene, net: ShapeNet | None = None
) -> dict[str, bool | None]:
    """Per-attribute verdicts for one image: True/False, or None where it cannot be judged."""
    verdict: dict[str, bool | None] = {}
    if scene.kind == "word":
        verdict["word"] = (scene.word in read_words(image)) if ocr_available() else None
        return verdict
    blobs = segment(image)
    if "count" in scene.attributes:
        verdict["count"] = len(blobs) == scene.count
    if scene.kind == "relation":
        a, b = scene.objects
        found_a = next((x for x in blobs if x.colour == a.colour), None)
        found_b = next((x for x in blobs if x.colour == b.colour and x is not found_a), None)
        verdict["colour"] = found_a is not None and found_b is not None
        if found_a is None or found_b is None:
            verdict["position"] = False
            verdict["shape"] = False
        else:
            assert scene.relation is not None
            verdict["position"] = relation_holds(found_a, found_b, scene.relation)
            shapes = classify_shapes([found_a.mask, found_b.mask], net)
            verdict["shape"] = shapes == [a.shape, b.shape]
        return verdict
    target = scene.objects[0]
    if not blobs:
        return {k: False for k in ("colour", "position", "shape", "count")
                if k in scene.attributes}
    top = blobs[0]
    verdict["colour"] = top.colour == target.colour
    if "position" in scene.attributes and target.position is not None:
        verdict["position"] = nearest_position(top.cx, top.cy) == target.position
    verdict["shape"] = classify_shapes([top.mask], net)[0] == target.shape
    return verdict


def summarize(verdicts: Iterable[dict[str, bool | None]]) -> dict[str, dict[str, Any]]:
    """Accuracy per attribute over the images where it applies (GenEval-style)."""
    table: dict[str, dict[str, Any]] = {}
    rows = list(verdicts)
    for attr in ATTRIBUTES:
        vals = [v[attr] for v in rows if attr in v]
        judged = [bool(x) for x in vals if x is not None]
        if not vals:
            continue
        if not judged:
            table[attr] = {"accuracy": None, "n": len(vals), "note": "unavailable"}
        else:
            table[attr] = {"accuracy": sum(judged) / len(judged), "n": len(judged)}
    overall = [all(x for x in v.values() if x is not None) for v in rows]
    table["overall"] = {"accuracy": sum(overall) / max(1, len(overall)), "n": len(overall)}
    return table


def format_table(table: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'attribute':<10} {'accuracy':>9} {'n':>5}"]
    for attr, row in table.items():
        acc = "unavailable" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
        lines.append(f"{attr:<10} {acc:>9} {row['n']:>5}")
    return "\n".join(lines)
