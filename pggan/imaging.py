"""Images as arrays: decode any file to RGB, crop/pad/resize to a square, 2x2 box pyramid, uint8 <-> float, grids, PNG."""

from __future__ import annotations

import io
import math
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from pggan import storage as st

if TYPE_CHECKING:
    from pggan.config import StorageConfig

DEFAULT_MAX_PIXELS = 178_956_970  # PIL default x2: larger files are treated as decompression bombs
FITS = ("crop", "pad", "stretch")
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageDecodeError(ValueError):
    """A file that cannot become a training image; `reason` is a short human-readable cause for the manifest."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_image(
    data: bytes,
    *,
    fit: str = "crop",
    background: Sequence[int] = (255, 255, 255),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    draft_size: int | None = None,
) -> np.ndarray:
    """Any image file's bytes -> uint8 [H, W, 3] RGB, EXIF-rotated, alpha composited on `background`.

    fit "crop" centre-crops to a square, "pad" pads to a square with `background`, "stretch" keeps the aspect
    (square_resize then stretches). Files with more than `max_pixels` pixels or a side under `min_side` raise
    ImageDecodeError, as does anything unreadable. draft_size lets JPEG decode at a reduced scale that still
    keeps both sides >= draft_size (fast; the size checks use the file's full size).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        img = _open_checked(data, max_pixels, min_side, draft_size)
        img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img, tuple(int(c) for c in background))
    except ImageDecodeError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image: format not recognised") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(f"too many pixels (decompression bomb): {e}") from None
    except Exception as e:  # truncated data, bad chunks, codec errors: the file is broken, the run goes on
        raise ImageDecodeError(f"corrupt or truncated: {type(e).__name__}: {e}") from None
    return _fit_square(rgb, fit, background)  # [H, W, 3]


def _open_checked(data: bytes, max_pixels: int, min_side: int, draft_size: int | None) -> Image.Image:
    """Open (header only), refuse oversized or undersized images before decoding pixels, then load."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels  # PIL's own bomb check, per decode (it is process-global)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageDecodeError(f"too many pixels: {width}x{height} > max_pixels {max_pixels}")
            if min(width, height) < min_side:
                raise ImageDecodeError(f"too small: {width}x{height}, a side under min_side {min_side}")
            if draft_size and img.format == "JPEG":
                img.draft(img.mode, (draft_size, draft_size))
            img.load()
            return img
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _to_rgb(img: Image.Image, background: tuple[int, ...]) -> np.ndarray:
    """Any PIL mode -> uint8 [H, W, 3]; 16-bit and float modes rescaled, transparency composited."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return np.repeat(_wide_gray_to_uint8(img)[:, :, None], 3, axis=2)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, background)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(base, dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _wide_gray_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit / 32-bit / float grey -> uint8. 16-bit integer data maps 0..65535 to 0..255; 'I' and 'F' data whose
    maximum fits 0..255 is kept, larger ranges are read as 16-bit; float data within [0, 1] is scaled by 255."""
    arr = np.asarray(img, dtype=np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(arr.max()) if arr.size else 0.0
    if img.mode.startswith("I;16") or top > 255.0:
        arr = arr / 257.0
    elif img.mode == "F" and top <= 1.0:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _fit_square(img: np.ndarray, fit: str, background: Sequence[int]) -> np.ndarray:
    height, width = img.shape[:2]
    if fit == "stretch" or height == width:
        return img
    side = min(height, width) if fit == "crop" else max(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    if fit == "crop":
        return img[top : top + side, left : left + side]  # [S, S, 3]
    out = np.empty((side, side, 3), np.uint8)
    out[:] = np.asarray(background, np.uint8)
    out[-top : -top + height, -left : -left + width] = img  # centred in [S, S, 3]
    return out


def square_resize(img: np.ndarray, res: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [res, res, 3] (Lanczos; a non-square input is stretched)."""
    if img.shape[:2] == (res, res):
        return img
    out = Image.fromarray(img, "RGB").resize((res, res), Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8)


def box_pyramid(img: np.ndarray, min_res: int = 4) -> dict[int, np.ndarray]:
    """uint8 [R, R, 3] -> {R: img, R/2: ..., min_res: ...}, each level uint8 [r, r, 3].

    Level r/2 is the 2x2 mean of level r's float values (before rounding), quantized with np.rint (round half
    to even) for storage, as in the reference dataset_tool. Equivalently: every level is the rint of the mean of
    its (R/r)x(R/r) block of the top level (the float chain is exact in float64).
    """
    res = img.shape[0]
    if img.shape != (res, res, 3) or res & (res - 1) or res < min_res:
        raise ValueError(f"box_pyramid needs a square power-of-two image >= {min_res}, got shape {img.shape}")
    levels = {res: img}
    values = img.astype(np.float64)
    while res > min_res:
        half = res // 2
        values = values.reshape(half, 2, half, 2, 3).mean(axis=(1, 3))  # [res/2, res/2, 3]
        res = half
        levels[res] = np.rint(values).astype(np.uint8)
    return levels


def decode_pyramid(data: bytes, resolution: int, *, fit: str = "crop", background: Sequence[int] = (255, 255, 255),
                   max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1) -> dict[int, np.ndarray]:
    """An image file's bytes -> {4: uint8 [4,4,3], ..., resolution: uint8 [R,R,3]}: decode, fit, resize, pyramid."""
    img = decode_image(data, fit=fit, background=background, max_pixels=max_pixels, min_side=min_side,
                       draft_size=resolution)
    return box_pyramid(square_resize(img, resolution))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def to_float(images: Any) -> Any:
    """uint8 NHWC -> float32 NCHW in [-1, 1] (numpy in, numpy out; torch in, torch out)."""
    if _is_torch(images):
        return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    arr = np.asarray(images)
    return (arr.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5)) - np.float32(1.0)


def to_uint8(images: Any) -> np.ndarray:
    """float NCHW in ~[-1, 1] -> uint8 NHWC numpy (clipped, rounded); accepts numpy or torch."""
    if _is_torch(images):
        images = images.detach().float().cpu().numpy()
    arr = np.asarray(images, dtype=np.float32)
    arr = np.rint((arr + 1.0) * 127.5)
    return np.clip(arr, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 0) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*H, cols*W, C] image; empty cells black; cols defaults to ceil(sqrt N)."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"image_grid needs a non-empty [N, H, W, C] array, got shape {images.shape}")
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), dtype=images.dtype)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = img
    return grid


def upscale_nearest(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> [N, H*factor, W*factor, C], each pixel a factor x factor block (no smoothing)."""
    return images if factor == 1 else images.repeat(factor, axis=1).repeat(factor, axis=2)


SAMPLE_TILE_PX = 64     # sample-grid tiles are shown at least this large
SAMPLE_GUTTER_PX = 2    # black lines between tiles, so low-resolution tiles do not run into each other


def sample_grid_image(images: np.ndarray, cols: int, min_tile: int = SAMPLE_TILE_PX,
                      gutter: int = SAMPLE_GUTTER_PX) -> np.ndarray:
    """Generated images uint8 [N, R, R, C] -> one grid to look at: tiles enlarged by a whole factor to at least
    min_tile pixels (a 4x4 sample becomes 64x64 of 16x16 blocks; 64x64 and up stay as they are), gutters between."""
    images = np.asarray(images)
    factor = max(1, -(-min_tile // images.shape[1]))
    return image_grid(upscale_nearest(images, factor), cols=cols, pad=gutter)


def encode_png(img: np.ndarray) -> bytes:
    """uint8 [H, W, 3] (or [H, W] grey) -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(url_or_path: str, img: np.ndarray, storage: StorageConfig | None = None) -> None:
    """Write uint8 [H, W, 3] as a PNG file to a local path or any storage URL, atomically."""
    st.write_bytes_atomic(st.to_url(url_or_path), encode_png(img), storage)
