"""Procedural training data for easel-mini: simple scenes, their captions and their ground truth.

Everything is drawn from a seed, so a training run, the held-out set and the checker's own
training data are reproducible on any machine. Scenes are sampled first (cheap, no pixels) and
rendered on demand at any size, which lets the tokenizer be built from thousands of captions
without drawing a single image.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
Split = Literal["train", "heldout"]

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "heart", "sun", "moon", "tree", "house",
)
PLURALS = {s: s + "s" for s in SHAPES} | {"house": "houses"}

COLOURS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (245, 215, 30),
    "green": (40, 170, 60),
    "blue": (30, 70, 220),
    "purple": (130, 50, 180),
    "pink": (245, 120, 190),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
    "brown": (120, 70, 30),
}


@dataclass(frozen=True)
class Background:
    """A vertical gradient (optionally split at `horizon`): every row is a single colour.

    Row-constant backgrounds are what lets the checker find objects in generated images without
    any ground truth: the background of a row is read from the row's two ends.
    """

    top: RGB
    bottom: RGB
    phrases: tuple[str, ...]
    horizon: float | None = None  # below it, a second gradient (the sea under the sky)
    low_top: RGB = (0, 0, 0)
    low_bottom: RGB = (0, 0, 0)

    def row_colours(self, n: int) -> np.ndarray:
        y = (np.arange(n, dtype=np.float32) + 0.5) / n
        top = np.array(self.top, np.float32)
        bottom = np.array(self.bottom, np.float32)
        rows = top + (bottom - top) * y[:, None]
        if self.horizon is not None:
            low = y >= self.horizon
            t = (y[low] - self.horizon) / (1.0 - self.horizon)
            lt, lb = np.array(self.low_top, np.float32), np.array(self.low_bottom, np.float32)
            rows[low] = lt + (lb - lt) * t[:, None]
            # Wave stripes keep the sea row-constant while still looking like water.
            stripes = (np.floor(t * 9) % 2 == 1)
            rows[np.flatnonzero(low)[stripes]] += 14.0
        return np.clip(rows, 0, 255)


BACKGROUNDS: dict[str, Background] = {
    "day": Background((90, 160, 230), (175, 215, 245),
                      ("in the day sky", "under a blue sky", "in a clear sky", "on a sunny day")),
    "dusk": Background((70, 40, 110), (250, 150, 90),
                       ("at dusk", "in the sky at dusk", "at sunset", "in the evening sky")),
    "night": Background((8, 12, 38), (30, 40, 85),
                        ("at night", "in the night sky", "in a dark night sky")),
    "sea": Background((140, 195, 240), (185, 220, 245),
                      ("over the sea", "above the ocean", "by the sea"),
                      horizon=0.4, low_top=(20, 95, 150), low_bottom=(10, 60, 110)),
    "grass": Background((95, 175, 70), (45, 120, 35),
                        ("on grass", "on a grass field", "on green grass", "in a meadow")),
    "plain white": Background((244, 244, 244), (244, 244, 244),
                              ("on a plain white background", "on white", "on a white background")),
    "plain grey": Background((128, 128, 128), (128, 128, 128),
                             ("on a plain grey background", "on grey", "on a grey background")),
    "plain beige": Background((232, 218, 190), (232, 218, 190),
                              ("on a plain beige background", "on beige", "on a beige background")),
    "plain black": Background((14, 14, 14), (14, 14, 14),
                              ("on a plain black background", "on black", "on a black background")),
}

# Where a "left"/"top"/... object is centred, in image fractions (x, y).
ANCHORS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25),
    "bottom": (0.5, 0.75), "centre": (0.5, 0.5),
}
POSITIONS = tuple(ANCHORS)
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "on the left side", "at the left"),
    "right": ("on the right", "on the right side", "at the right"),
    "top": ("at the top", "near the top", "at the top of the picture"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom of the picture"),
    "centre": ("in the centre", "in the middle", "in the center"),
}
SIZES: dict[str, float] = {"small": 0.17, "medium": 0.25, "big": 0.33}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"), "medium": ("",), "big": ("big", "large"),
}
RELATIONS = ("above", "below", "left of", "right of")
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "above": ("above", "over"), "below": ("below", "under"),
    "left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
CARRIERS = ("sign", "banner")
SIGN_COLOUR: RGB = (240, 230, 200)
WORDS: tuple[str, ...] = (
    "SUN", "SEA", "SKY", "RED", "CAT", "DOG", "BUS", "FOX", "OWL", "MAP",
    "MOON", "STAR", "TREE", "HOME", "OPEN", "SHOP", "STOP", "CAFE", "BOOK", "PARK",
    "FISH", "BIRD", "LAKE", "HILL", "RAIN", "SNOW", "WIND", "FIRE", "GOLD", "BLUE",
    "PINK", "BAKE", "MILK", "CAKE", "SALE", "EXIT", "KING", "ROSE", "LION", "BEAR",
    "WOLF", "DUCK", "FROG", "SHIP", "BOAT", "ROAD", "GATE", "DOOR", "WALL", "FARM",
    "HELLO", "WORLD", "HAPPY", "OCEAN", "LIGHT", "MUSIC", "PIZZA", "TRAIN", "RIVER", "BEACH",
    "GARDEN", "SUMMER", "WINTER", "CASTLE", "BRIDGE", "MARKET",
)

# Colour+shape pairs that never appear in training: the held-out set asks for exactly these.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "star"), ("blue", "heart"), ("yellow", "tree"), ("green", "moon"),
    ("purple", "house"), ("orange", "triangle"), ("pink", "square"), ("white", "circle"),
    ("black", "sun"), ("brown", "star"), ("yellow", "square"), ("red", "house"),
})
FOUR_LETTER_WORDS = tuple(w for w in WORDS if len(w) == 4)

_MIN_CONTRAST = 90.0  # RGB distance an object keeps from every row of its background
_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def heldout_word(word: str, background: str) -> bool:
    """Word+background combinations kept out of training (a stable hash picks one in five)."""
    return zlib.crc32(f"{word}|{background}".encode()) % 5 == 0


@cache
def allowed_colours(background: str) -> tuple[str, ...]:
    rows = BACKGROUNDS[background].row_colours(64)
    keep = []
    for name, rgb in COLOURS.items():
        d = np.sqrt(((rows - np.array(rgb, np.float32)) ** 2).sum(axis=1)).min()
        if d >= _MIN_CONTRAST:
            keep.append(name)
    return tuple(keep)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float  # centre, fraction of the width
    cy: float  # centre, fraction of the height
    position: str | None = None  # one of POSITIONS when the caption names it

    @property
    def extent(self) -> float:
        return SIZES[self.size]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The drawing box (x0, y0, x1, y1) in image fractions; every shape touches its sides."""
        h = self.extent / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass(frozen=True)
class Scene:
    """One picture's ground truth, plus the caption that describes it."""

    kind: Literal["single", "count", "relation", "word"]
    background: str
    caption: str
    objects: tuple[SceneObject, ...] = ()
    relation: str | None = None  # objects[0] <relation> objects[1]
    word: str | None = None
    carrier: str | None = None
    carrier_colour: str | None = None
    carrier_box: tuple[float, float, float, float] | None = None
    attributes: tuple[str, ...] = field(default=())  # what the checker may judge

    @property
    def count(self) -> int:
        return len(self.objects)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # uint8 (H, W, 3)
    scene: Scene


# --- sampling ----------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _article(words: str) -> str:
    return "an" if words[:1] in "aeiou" else "a"


def _noun_phrase(rng: np.random.Generator, obj: SceneObject, with_size: bool = True) -> str:
    size = _pick(rng, SIZE_WORDS[obj.size]) if with_size else ""
    words = " ".join(w for w in (size, obj.colour, obj.shape) if w)
    return f"{_article(words)} {words}"


def _pair_ok(colour: str, shape: str, split: Split) -> bool:
    return ((colour, shape) in HELDOUT_PAIRS) == (split == "heldout")


def _choose_pair(
    rng: np.random.Generator, background: str, split: Split, forced: bool = True
) -> tuple[str, str]:
    """A colour+shape that is legal for the split; `forced=False` allows any training pair."""
    colours = allowed_colours(background)
    for _ in range(200):
        colour, shape = _pick(rng, colours), _pick(rng, SHAPES)
        if (colour, shape) in HELDOUT_PAIRS:
            if split == "heldout" and forced:
                return colour, shape
            continue
        if split == "train" or not forced:
            return colour, shape
    held = [p for p in sorted(HELDOUT_PAIRS) if p[0] in colours]
    return held[int(rng.integers(len(held)))]


def _jitter(rng: np.random.Generator, amount: float) -> float:
    return float(rng.uniform(-amount, amount))


def _single(rng: np.random.Generator, bg: str, split: Split) -> Scene:
    colour, shape = _choose_pair(rng, bg, split)
    size = _pick(rng, ("medium", "big", "big") if split == "heldout" else tuple(SIZES))
    named = split == "heldout" or rng.random() < 0.8
    if named:
        pos = _pick(rng, POSITIONS)
        ax, ay = ANCHORS[pos]
        cx, cy = ax + _jitter(rng, 0.05), ay + _jitter(rng, 0.05)
    else:
        pos = None
        m = SIZES[size] / 2 + 0.06
        cx, cy = float(rng.uniform(m, 1 - m)), float(rng.uniform(m, 1 - m))
    obj = SceneObject(shape, colour, size, cx, cy, pos)
    noun = _noun_phrase(rng, obj)
    where = _pick(rng, POSITION_PHRASES[pos]) if pos else ""
    bgp = _pick(rng, BACKGROUNDS[bg].phrases)
    template = int(rng.integers(4))
    if template == 0:
        caption = " ".join(w for w in (noun, where, bgp) if w)
    elif template == 1:
        caption = f"{noun} {bgp}" + (f", {where}" if where else "")
    elif template == 2:
        caption = f"a picture of {noun}" + (f" {where}" if where else "") + f" {bgp}"
    else:
        caption = f"{bgp}, {noun}" + (f" {where}" if where else "")
    attrs = ("colour", "shape", "count") + (("position",) if pos else ())
    return Scene("single", bg, caption, (obj,), attributes=attrs)


def _count(rng: np.random.Generator, bg: str, split: Split) -> Scene:
    colour, shape = _choose_pair(rng, bg, split)
    n = int(rng.integers(2, 5)) if split == "heldout" else int(rng.integers(1, 5))
    size = "small" if n >= 3 else _pick(rng, ("small", "medium"))
    # Cells of a 2x2 grid keep copies apart, so connected components can count them.
    cells = rng.permutation(4)[:n]
    objs = []
    for c in cells:
        cx = 0.27 + 0.46 * (int(c) % 2) + _jitter(rng, 0.06)
        cy = 0.27 + 0.46 * (int(c) // 2) + _jitter(rng, 0.06)
        objs.append(SceneObject(shape, colour, size, cx, cy))
    noun = f"{NUMBERS[n]} {colour} {PLURALS[shape] if n > 1 else shape}"
    bgp = _pick(rng, BACKGROUNDS[bg].phrases)
    template = int(rng.integers(3))
    if template == 0:
        caption = f"{noun} {bgp}"
    elif template == 1:
        caption = f"{bgp}, {noun}"
    else:
        caption = f"a picture of {noun} {bgp}"
    return Scene("count", bg, caption, tuple(objs), attributes=("colour", "shape", "count"))


def _relation(rng: np.random.Generator, bg: str, split: Split) -> Scene:
    first = _choose_pair(rng, bg, split)
    for _ in range(100):
        second = _choose_pair(rng, bg, "train" if split == "heldout" else split)
        if second[0] != first[0]:
            break
    rel = _pick(rng, RELATIONS)
    size_a, size_b = _pick(rng, ("small", "medium")), _pick(rng, ("small", "medium"))
    near, far = 0.3 + _jitter(rng, 0.04), 0.7 + _jitter(rng, 0.04)
    side = 0.5 + _jitter(rng, 0.12)
    if rel in ("above", "below"):
        ya, yb = (near, far) if rel == "above" else (far, near)
        a = SceneObject(first[1], first[0], size_a, side, ya)
        b = SceneObject(second[1], second[0], size_b, side + _jitter(rng, 0.05), yb)
    else:
        xa, xb = (near, far) if rel == "left of" else (far, near)
        a = SceneObject(first[1], first[0], size_a, xa, side)
        b = SceneObject(second[1], second[0], size_b, xb, side + _jitter(rng, 0.05))
    bgp = _pick(rng, BACKGROUNDS[bg].phrases)
    na, nb = _noun_phrase(rng, a, with_size=False), _noun_phrase(rng, b, with_size=False)
    relp = _pick(rng, RELATION_PHRASES[rel])
    caption = f"{na} {relp} {nb} {bgp}" if rng.random() < 0.6 else f"{bgp}, {na} {relp} {nb}"
    return Scene("relation", bg, caption, (a, b), relation=rel,
                 attributes=("colour", "shape", "count", "position"))


def _word(rng: np.random.Generator, bg: str, split: Split) -> Scene:
    words = FOUR_LETTER_WORDS if split == "heldout" else WORDS
    for _ in range(500):
        word = _pick(rng, words)
        if heldout_word(word, bg) == (split == "heldout"):
            break
    else:  # no legal word for this background: any word still keeps the scene usable
        word = _pick(rng, words)
    carrier = _pick(rng, CARRIERS)
    bgp = _pick(rng, BACKGROUNDS[bg].phrases)
    quoted = f'"{word}"'
    if carrier == "sign":
        colour = None
        cy = 0.42 + _jitter(rng, 0.05)
        box = (0.14, cy - 0.14, 0.86, cy + 0.14)
        template = int(rng.integers(3))
        if template == 0:
            caption = f"a sign that says {quoted} {bgp}"
        elif template == 1:
            caption = f"a wooden sign with the word {quoted} {bgp}"
        else:
            caption = f"{bgp}, a sign reading {quoted}"
    else:
        choices = [c for c in allowed_colours(bg) if c not in ("white", "yellow", "pink")]
        colour = _pick(rng, choices)
        cy = 0.5 + _jitter(rng, 0.12)
        box = (0.06, cy - 0.13, 0.94, cy + 0.13)
        template = int(rng.integers(3))
        if template == 0:
            caption = f"{_article(colour)} {colour} banner that says {quoted} {bgp}"
        elif template == 1:
            caption = f"{_article(colour)} {colour} banner with the word {quoted} {bgp}"
        else:
            caption = f"{bgp}, {_article(colour)} {colour} banner reading {quoted}"
    return Scene("word", bg, caption, (), word=word, carrier=carrier, carrier_colour=colour,
                 carrier_box=box, attributes=("word",))


_KINDS = (_single, _count, _relation, _word)
_TRAIN_MIX = np.array([0.35, 0.25, 0.2, 0.2])


def sample_scene(
    rng: np.random.Generator, split: Split = "train", kind: str | None = None,
    mix: Sequence[float] | None = None,
) -> Scene:
    """Draw one scene's ground truth and caption (no pixels); `mix` overrides the shares of
    single, count, relation and word scenes."""
    if kind is None:
        shares = _TRAIN_MIX if mix is None else np.asarray(mix, np.float64)
        maker = _KINDS[int(rng.choice(len(_KINDS), p=shares))]
    else:
        maker = {"single": _single, "count": _count, "relation": _relation, "word": _word}[kind]
    bg = _pick(rng, tuple(BACKGROUNDS))
    return maker(rng, bg, split)


def scene_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def generate(seed: int, index: int, size: int = 256) -> Sample:
    """Sample `index` of the training stream for `seed`: same arguments, same pixels."""
    scene = sample_scene(scene_rng(seed, index), "train")
    return Sample(render(scene, size), scene)


def caption_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, "train").caption for _ in range(n)]


def heldout_scenes(n: int = 200, seed: int = 1234, split: Split = "heldout") -> list[Scene]:
    """The held-out evaluation set: every prompt contains a combination training never shows.

    `split="train"` draws the same mix from training's combinations instead: what a model
    scores there and not on the held-out set, it learned but does not compose."""
    rng = np.random.default_rng(seed)
    plan = {"single": 0.35, "count": 0.2, "relation": 0.2, "word": 0.25}
    kinds: list[str] = []
    for k, share in plan.items():
        kinds += [k] * round(share * n)
    kinds = (kinds + ["single"] * n)[:n]
    return [sample_scene(rng, split, kind=k) for k in kinds]


def heldout_prompts(n: int = 200, seed: int = 1234) -> list[tuple[str, Scene]]:
    return [(s.caption, s) for s in heldout_scenes(n, seed)]


# --- rendering ---------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _FONT_DIR / "DejaVuSans-Bold.ttf"
    if path.exists():
        return ImageFont.truetype(str(path), px)
    return ImageFont.load_default(size=px)


def _shade(rgb: RGB, k: float) -> RGB:
    return (int(rgb[0] * k), int(rgb[1] * k), int(rgb[2] * k))


def _star_points(cx: float, cy: float, r: float, n: int, inner: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(2 * n):
        rr = r if i % 2 == 0 else r * inner
        a = -math.pi / 2 + i * math.pi / n
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _shape_layers(shape: str, box: tuple[float, float, float, float], s: int) -> list[
    tuple[Image.Image, float]
]:
    """Masks of one object (at canvas size s) with the shade each is painted in.

    Shades of one colour only: the object's colour stays unambiguous while trees and houses
    still read as trees and houses.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def new() -> tuple[Image.Image, ImageDraw.ImageDraw]:
        m = Image.new("L", (s, s), 0)
        return m, ImageDraw.Draw(m)

    m, d = new()
    layers = [(m, 1.0)]
    if shape == "circle":
        d.ellipse(box, fill=255)
    elif shape == "square":
        d.rectangle((x0 + 0.08 * w, y0 + 0.08 * h, x1 - 0.08 * w, y1 - 0.08 * h), fill=255)
    elif shape == "triangle":
        d.polygon([(cx, y0), (x1, y1 - 0.06 * h), (x0, y1 - 0.06 * h)], fill=255)
    elif shape == "star":
        d.polygon(_star_points(cx, cy + 0.05 * h, w / 2, 5, 0.42), fill=255)
    elif shape == "heart":
        pts = []
        for i in range(64):
            t = 2 * math.pi * i / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + x / 34 * w, cy - (y + 2.5) / 32 * h))
        d.polygon(pts, fill=255)
    elif shape == "sun":
        r = w / 2
        d.ellipse((cx - 0.58 * r, cy - 0.58 * r, cx + 0.58 * r, cy + 0.58 * r), fill=255)
        # Rays start inside the disc, so the sun stays one connected component.
        for i in range(10):
            a = 2 * math.pi * i / 10
            ca, sa = math.cos(a), math.sin(a)
            base = 0.5 * r
            half = 0.16 * r
            d.polygon([
                (cx + base * ca - half * sa, cy + base * sa + half * ca),
                (cx + r * ca, cy + r * sa),
                (cx + base * ca + half * sa, cy + base * sa - half * ca),
            ], fill=255)
    elif shape == "moon":
        d.ellipse(box, fill=255)
        off = 0.38 * w
        d.ellipse((x0 + off, y0 - 0.08 * h, x1 + off, y1 - 0.08 * h), fill=0)
    elif shape == "tree":
        d.ellipse((x0 + 0.12 * w, y0, x1 - 0.12 * w, y0 + 0.72 * h), fill=255)
        trunk, td = new()
        td.rectangle((cx - 0.08 * w, y0 + 0.6 * h, cx + 0.08 * w, y1), fill=255)
        layers.append((trunk, 0.6))
    elif shape == "house":
        d.rectangle((x0 + 0.1 * w, y0 + 0.45 * h, x1 - 0.1 * w, y1), fill=255)
        d.rectangle((cx - 0.1 * w, y0 + 0.7 * h, cx + 0.1 * w, y1), fill=0)  # the door
        roof, rd = new()
        rd.polygon([(cx, y0), (x1, y0 + 0.47 * h), (x0, y0 + 0.47 * h)], fill=255)
        layers.append((roof, 0.7))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return layers


def _background(bg: str, s: int) -> Image.Image:
    rows = BACKGROUNDS[bg].row_colours(s).astype(np.uint8)
    return Image.fromarray(np.repeat(rows[:, None, :], s, axis=1), "RGB")


def _draw_word(canvas: Image.Image, scene: Scene, s: int) -> None:
    assert scene.word is not None and scene.carrier_box is not None
    x0, y0, x1, y1 = (v * s for v in scene.carrier_box)
    d = ImageDraw.Draw(canvas)
    if scene.carrier == "sign":
        post = COLOURS["brown"]
        d.rectangle(((x0 + x1) / 2 - 0.025 * s, y1, (x0 + x1) / 2 + 0.025 * s, s * 0.97), fill=post)
        d.rectangle((x0, y0, x1, y1), fill=SIGN_COLOUR, outline=_shade(post, 0.8),
                    width=max(1, s // 64))
        ink: RGB = (15, 15, 15)
    else:
        colour = COLOURS[scene.carrier_colour or "red"]
        d.rectangle((x0, y0, x1, y1), fill=colour)
        notch = 0.05 * s
        for xa, xb in ((x0, x0 + notch), (x1, x1 - notch)):
            d.polygon([(xa, y0), (xb, (y0 + y1) / 2), (xa, y1)], fill=_background_px(scene, s))
        ink = (250, 250, 250)
    room_w, room_h = (x1 - x0) * 0.8, (y1 - y0) * 0.72
    px = int(room_h)
    font = _font(px)
    tw = d.textlength(scene.word, font=font)
    if tw > room_w:
        px = max(6, int(px * room_w / tw))
        font = _font(px)
    d.text(((x0 + x1) / 2, (y0 + y1) / 2), scene.word, fill=ink, font=font, anchor="mm")


def _background_px(scene: Scene, s: int) -> RGB:
    assert scene.carrier_box is not None
    row = BACKGROUNDS[scene.background].row_colours(s)
    y = int((scene.carrier_box[1] + scene.carrier_box[3]) / 2 * s)
    r = row[min(max(y, 0), s - 1)]
    return (int(r[0]), int(r[1]), int(r[2]))


def render(scene: Scene, size: int = 256) -> np.ndarray:
    """Draw a scene as uint8 (size, size, 3); drawn at 2x and reduced, for clean edges."""
    s = size * 2
    canvas = _background(scene.background, s)
    for obj in scene.objects:
        box = tuple(v * s for v in obj.bbox)
        rgb = COLOURS[obj.colour]
        for mask, k in _shape_layers(obj.shape, box, s):  # type: ignore[arg-type]
            canvas.paste(_shade(rgb, k), (0, 0), mask)
    if scene.word is not None:
        _draw_word(canvas, scene, s)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX))


def foreground(scene: Scene, picture: np.ndarray) -> np.ndarray:
    """Where `picture` (a render of `scene`) differs from its bare background: the objects, the
    sign or banner, their anti-aliased edges. bool (size, size)."""
    size = picture.shape[0]
    bare = np.asarray(_background(scene.background, size * 2).resize((size, size),
                                                                     Image.Resampling.BOX))
    difference: np.ndarray = np.abs(picture.astype(np.int16) - bare.astype(np.int16)).max(axis=2)
    return difference > 6


def render_pair(scene: Scene, size: int = 256, low: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The high-resolution picture and its low-resolution version (the cascade's two stages)."""
    hi = render(scene, size)
    lo = np.asarray(Image.fromarray(hi).resize((low, low), Image.Resampling.BOX))
    return hi, lo


def object_mask(obj: SceneObject, size: int) -> np.ndarray:
    """Ground-truth boolean mask of one object at `size`."""
    s = size * 2
    box = tuple(v * s for v in obj.bbox)
    total = np.zeros((s, s), bool)
    for mask, _ in _shape_layers(obj.shape, box, s):  # type: ignore[arg-type]
        total |= np.asarray(mask) > 127
    return total.reshape(size, 2, size, 2).mean(axis=(1, 3)) >= 0.5


def vocabulary_words() -> list[str]:
    """Every word a caption template can emit (so the tokenizer never meets one it lacks)."""
    words: set[str] = set()
    texts: list[str] = [
        "a an the of picture with word that says reading wooden sign banner",
        " ".join(COLOURS), " ".join(SHAPES), " ".join(PLURALS.values()),
        " ".join(NUMBERS.values()), " ".join(ANCHORS),
    ]
    for phrases in (POSITION_PHRASES, RELATION_PHRASES, SIZE_WORDS):
        for group in phrases.values():
            texts.extend(group)
    for b in BACKGROUNDS.values():
        texts.extend(b.phrases)
    for t in texts:
        words.update(t.replace(",", " ").split())
    return sorted(words)
