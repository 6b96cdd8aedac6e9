"""Decoding real-world images (formats, modes, EXIF, transparency, bad files), the box pyramid, float/uint8, grids."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pggan import imaging
from pggan.imaging import ImageDecodeError, box_pyramid, decode_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def solid(mode: str, size=(24, 24), color=None) -> Image.Image:
    return Image.new(mode, size, color)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_common_format_decodes_to_rgb_uint8(fmt):
    data = encode(solid("RGB", color=(200, 40, 40)), fmt)
    out = decode_image(data)
    assert out.dtype == np.uint8 and out.shape == (24, 24, 3)
    assert np.abs(out.astype(int) - [200, 40, 40]).max() <= 12  # lossy formats and GIF's palette are close


def test_animated_gif_gives_its_first_frame():
    frames = [solid("RGB", color=(255, 0, 0)), solid("RGB", color=(0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(data)
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


@pytest.mark.parametrize("mode,color,expected", [
    ("L", 77, (77, 77, 77)),
    ("1", 1, (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ("RGB", (1, 2, 3), (1, 2, 3)),
])
def test_eight_bit_modes_become_rgb(mode, color, expected):
    out = decode_image(encode(solid(mode, color=color), "TIFF"))
    assert tuple(out[5, 5]) == expected


def test_palette_image_becomes_rgb():
    img = solid("RGB", color=(10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert img.mode == "P"
    assert tuple(decode_image(encode(img, "PNG"))[0, 0]) == (10, 200, 30)


def test_sixteen_bit_grey_png_is_scaled_to_eight_bits():
    arr = np.full((16, 16), 65535, np.uint16)
    arr[:, :8] = 257 * 100
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = decode_image(encode(img, "PNG"))
    assert tuple(out[0, 0]) == (100, 100, 100) and tuple(out[0, 15]) == (255, 255, 255)


def test_32_bit_int_and_float_tiffs_are_scaled():
    ints = Image.fromarray(np.full((8, 8), 257 * 50, np.int32))
    floats = Image.fromarray(np.full((8, 8), 0.5, np.float32))
    assert (ints.mode, floats.mode) == ("I", "F")
    assert tuple(decode_image(encode(ints, "TIFF"))[0, 0]) == (50, 50, 50)
    assert tuple(decode_image(encode(floats, "TIFF"))[0, 0]) == (128, 128, 128)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_show_the_background(mode):
    img = solid("RGBA", color=(255, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, 12, 24))  # left half opaque red, right half fully transparent
    img = img if mode == "RGBA" else img.convert("LA")
    out = decode_image(encode(img, "PNG"), background=(10, 20, 30))
    assert tuple(out[3, 20]) == (10, 20, 30)
    assert tuple(out[3, 2]) == ((255, 0, 0) if mode == "RGBA" else (76, 76, 76))


def test_half_transparent_pixels_are_blended_with_the_background():
    img = solid("RGBA", color=(200, 200, 200, 128))
    out = decode_image(encode(img, "PNG"), background=(0, 0, 0))
    assert abs(int(out[0, 0, 0]) - 100) <= 1


def test_palette_transparency_is_composited():
    img = solid("P", color=0)
    img.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    out = decode_image(encode(img, "PNG", transparency=0), background=(1, 2, 3))
    assert tuple(out[0, 0]) == (1, 2, 3)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 4, 4))  # a white mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(encode(img, "JPEG", exif=exif, quality=95), fit="stretch")
    assert out.shape == (40, 20, 3)  # displayed upright: portrait
    assert out[1, 18].min() > 200 and out[38, 1].max() < 60  # the mark moved to the top-right corner


def wide_image() -> Image.Image:
    img = Image.new("RGB", (30, 10), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    img.paste((0, 0, 255), (20, 0, 30, 10))
    return img


def test_crop_keeps_the_centre_square():
    out = decode_image(encode(wide_image(), "PNG"), fit="crop")
    assert out.shape == (10, 10, 3) and (out == [0, 255, 0]).all()


def test_pad_keeps_everything_on_the_background():
    out = decode_image(encode(wide_image(), "PNG"), fit="pad", background=(9, 9, 9))
    assert out.shape == (30, 30, 3)
    assert (out[:10] == 9).all() and (out[20:] == 9).all()
    assert tuple(out[15, 0]) == (255, 0, 0) and tuple(out[15, 29]) == (0, 0, 255)


def test_stretch_keeps_the_aspect_until_square_resize():
    out = decode_image(encode(wide_image(), "PNG"), fit="stretch")
    assert out.shape == (10, 30, 3)
    assert imaging.square_resize(out, 16).shape == (16, 16, 3)


def test_square_resize_gives_exact_size_and_keeps_flat_colour():
    out = imaging.square_resize(np.full((37, 37, 3), 123, np.uint8), 16)
    assert out.shape == (16, 16, 3) and (out == 123).all()


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"hello, this is a text file and not a picture\n" * 3, "not an image"),
])
def test_non_images_are_refused_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(fmt):
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_images_over_the_pixel_limit_are_refused_before_decoding():
    data = encode(solid("L", size=(400, 300)), "PNG")
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(data, max_pixels=10_000)
    assert decode_image(data, max_pixels=120_000).shape == (300, 300, 3)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the process-wide PIL default is left as it was


def test_images_under_the_minimum_side_are_refused():
    with pytest.raises(ImageDecodeError, match="too small: 24x8"):
        decode_image(encode(solid("RGB", size=(24, 8)), "PNG"), min_side=16)


def test_jpeg_draft_decoding_keeps_at_least_the_requested_size():
    data = encode(solid("RGB", size=(256, 200), color=(50, 60, 70)), "JPEG")
    out = decode_image(data, draft_size=64)
    assert min(out.shape[:2]) >= 64 and out.shape[0] == out.shape[1]


def test_pyramid_levels_are_rounded_block_means_of_the_top_level():
    rng = np.random.default_rng(1)
    top = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    levels = box_pyramid(top)
    assert sorted(levels) == [4, 8, 16, 32] and levels[32] is top
    for res, img in levels.items():
        k = 32 // res
        assert img.shape == (res, res, 3) and img.dtype == np.uint8
        y, x, c = 1, res - 1, 2
        block_mean = sum(int(v) for v in top[y * k:(y + 1) * k, x * k:(x + 1) * k, c].ravel()) / (k * k)
        assert img[y, x, c] == round(block_mean)  # Python's round: half to even, like np.rint


def test_pyramid_is_computed_from_float_not_from_the_rounded_level_above():
    grey = np.array([[0, 1, 1, 1],
                     [0, 0, 0, 0],
                     [0, 1, 1, 1],
                     [0, 0, 1, 2]], np.uint8)  # 2x2 means 0.25, 0.5 / 0.25, 1.25
    levels = box_pyramid(np.repeat(grey[:, :, None], 3, axis=2), min_res=1)
    assert levels[2][:, :, 0].tolist() == [[0, 0], [0, 1]]  # rint: 0.5 rounds half to even
    assert levels[1][0, 0, 0] == 1  # mean of floats 0.5625 -> 1; the rounded level above would give 0.25 -> 0


def test_pyramid_rejects_non_power_of_two_input():
    with pytest.raises(ValueError, match="power-of-two"):
        box_pyramid(np.zeros((24, 24, 3), np.uint8))


def test_uint8_float_round_trip_is_exact():
    imgs = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    x = imaging.to_float(imgs)
    assert x.shape == (3, 3, 8, 8) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_array_equal(imaging.to_uint8(x), imgs)


def test_to_uint8_clips_out_of_range_values():
    out = imaging.to_uint8(np.array([[[[-3.0]], [[0.0]], [[5.0]]]], np.float32))
    assert out.tolist() == [[[[0, 128, 255]]]]


def test_image_grid_places_images_row_major_and_fills_with_black():
    imgs = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (10, 20, 30)])
    grid = imaging.image_grid(imgs)
    assert grid.shape == (4, 4, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 2, 0] == 20 and grid[2, 0, 0] == 30 and grid[2, 2, 0] == 0


def test_sample_grids_enlarge_small_samples_without_blurring_and_keep_large_ones():
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (4, 4, 4, 3), dtype=np.uint8)                # four 4x4 samples
    grid = imaging.sample_grid_image(small, cols=2)
    assert grid.shape == (2 * 64 + 2, 2 * 64 + 2, 3)                           # 64 px tiles, a 2 px gutter
    np.testing.assert_array_equal(grid[:64, :64], small[0].repeat(16, 0).repeat(16, 1))
    np.testing.assert_array_equal(grid[66:, 66:], small[3].repeat(16, 0).repeat(16, 1))
    assert not grid[64:66].any() and not grid[:, 64:66].any()                 # gutters are black
    odd = imaging.sample_grid_image(rng.integers(0, 256, (1, 24, 24, 3), dtype=np.uint8), cols=1)
    assert odd.shape == (72, 72, 3)                                            # whole factor 3, at least 64
    large = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imaging.sample_grid_image(large, cols=2)[:, 66:], large[1])


def test_save_png_writes_a_readable_file(tmp_path):
    img = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    imaging.save_png(str(tmp_path / "sub" / "x.png"), img)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sub" / "x.png")), img)
