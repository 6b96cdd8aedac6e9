"""The built-in demo data set: a procedural coloured shape (circle, square or triangle) on a gradient, seeded PNGs.

One large shape per image: a small generator learns it within the demo's few minutes on a CPU, so the stage-by-stage
sample grids show the shapes forming (with 1-3 small shapes the demo's 2400 steps only reach coloured blobs).

Labelled (`labels=True`, for conditional runs): one sub-folder per shape kind, the classes in turn by image index,
each shape in its class's colour (jittered) so that classes differ in colour statistics as well as in outline:
per-class SWD tells them apart even at 8x8, where the outline is a few pixels."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from pggan import storage as st
from pggan.imaging import encode_png

if TYPE_CHECKING:
    from pggan.config import StorageConfig

SHAPES = ("circle", "square", "triangle")
CLASS_COLOURS = {"circle": (220, 50, 40), "square": (40, 190, 60), "triangle": (50, 80, 230)}  # red, green, blue
CLASS_JITTER = 25                        # +- per channel around the class colour
COMPLETE_MARKER = "_COMPLETE"  # written last; "_" names are ignored by ingest
_SUPERSAMPLE = 4  # shapes are drawn 4x larger and box-filtered down: smooth edges


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear gradient between two random colours in a random direction: float [size, size, 3]."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.5  # [size, size], ~[0, 1]
    t = np.clip(t, 0.0, 1.0)[:, :, None]
    return c0 * (1 - t) + c1 * t


def _random_shape(rng: np.random.Generator, big: int, kind: str | None = None
                  ) -> tuple[str, tuple[float, float, float], float, tuple]:
    """(kind, (cx, cy, radius), rotation, colour) on a big x big canvas; `kind` given: that shape in its class
    colour (the random draws are the same, so the position is too)."""
    drawn = SHAPES[int(rng.integers(len(SHAPES)))]
    radius = float(rng.uniform(0.22, 0.38) * big)
    cx, cy = (float(v) for v in rng.uniform(radius, big - radius, 2))
    rotation = float(rng.uniform(0, 120))
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    if kind is not None:
        jitter = rng.integers(-CLASS_JITTER, CLASS_JITTER + 1, 3)
        color = tuple(int(c) for c in np.clip(np.add(CLASS_COLOURS[kind], jitter), 0, 255))
        return kind, (cx, cy, radius), rotation, color
    return drawn, (cx, cy, radius), rotation, color


def _paint(draw: ImageDraw.ImageDraw, kind: str, circle: tuple[float, float, float], rotation: float,
           fill) -> None:
    cx, cy, r = circle
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.regular_polygon(circle, 4 if kind == "square" else 3, rotation=rotation, fill=fill)


def synthetic_image(rng: np.random.Generator, size: int, kind: str | None = None) -> np.ndarray:
    """One demo image: a gradient background with one random shape (or, `kind` given, that shape in its class
    colour); uint8 [size, size, 3]."""
    if kind is not None and kind not in SHAPES:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(SHAPES)}")
    big = size * _SUPERSAMPLE
    background = Image.fromarray(np.rint(_gradient(rng, size)).astype(np.uint8), "RGB")
    canvas = Image.new("RGB", (big, big))
    mask = Image.new("L", (big, big), 0)
    draw_rgb, draw_mask = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    kind, circle, rotation, color = _random_shape(rng, big, kind)
    _paint(draw_rgb, kind, circle, rotation, color)
    _paint(draw_mask, kind, circle, rotation, 255)
    shapes = canvas.resize((size, size), Image.Resampling.BOX)
    coverage = mask.resize((size, size), Image.Resampling.BOX)  # antialiased edges
    background.paste(shapes, mask=coverage)
    return np.asarray(background, dtype=np.uint8)


def image_class(index: int) -> str:
    """The class (shape kind) of image `index` of a labelled set: the kinds in turn, so classes are balanced."""
    return SHAPES[index % len(SHAPES)]


def image_rng(seed: int, index: int) -> np.random.Generator:
    """Image `index` of a seeded set is the same whatever the set's size."""
    return np.random.default_rng([seed, index])


def is_complete(out_url: str, storage: StorageConfig | None = None) -> bool:
    return st.exists(st.join(out_url, COMPLETE_MARKER), storage)


def write_synthetic_dataset(out_url: str, count: int, size: int, seed: int = 0,
                            storage: StorageConfig | None = None, threads: int = 8, labels: bool = False) -> str:
    """Write `count` PNGs img000000.png... of `size`x`size` under out_url, then the _COMPLETE marker; returns URL.
    labels=True: in one sub-folder per class, {circle,square,triangle}/img000000.png (ingest --labels folders)."""
    if count < 1 or size < 4:
        raise ValueError(f"need count >= 1 and size >= 4, got count={count} size={size}")
    if labels and count < len(SHAPES):
        raise ValueError(f"a labelled demo set needs count >= {len(SHAPES)} (one image per class), got {count}")
    out_url = st.to_url(out_url)

    def write_one(i: int) -> None:
        kind = image_class(i) if labels else None
        png = encode_png(synthetic_image(image_rng(seed, i), size, kind))
        name = f"{kind}/img{i:06d}.png" if labels else f"img{i:06d}.png"
        st.write_bytes_atomic(st.join(out_url, name), png, storage)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write_one, range(count)))  # list(): re-raise the first failure
    marker = {"count": count, "size": size, "seed": seed, **({"labels": "folders"} if labels else {})}
    st.write_json_atomic(st.join(out_url, COMPLETE_MARKER), marker, storage)
    return out_url
