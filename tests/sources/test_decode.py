"""Tests for chronoedit_sim.sources.decode; every input is built in the test itself."""
from __future__ import annotations

import contextlib
import io
import resource
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from helpers import png_header_only

from chronoedit_sim.sources.decode import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    FrameError,
    decode_image,
    normalize_array,
    normalize_image,
)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise_rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def assert_rgb(out: DecodedImage, w: int, h: int) -> None:
    assert isinstance(out, DecodedImage)
    assert out.rgb.shape == (h, w, 3)
    assert out.rgb.dtype == np.uint8
    assert out.rgb.flags["C_CONTIGUOUS"]


# --- failures -----------------------------------------------------------------


def test_truncated_jpeg_is_corrupt():
    data = encode(noise_rgb(), "JPEG", quality=90)
    with pytest.raises(FrameError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_corrupt_png_is_corrupt():
    data = bytearray(encode(noise_rgb(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 8 : idat + 40] = b"\xff" * 32  # smash the deflate stream (CRC now wrong too)
    with pytest.raises(FrameError, match="corrupt or truncated"):
        decode_image(bytes(data))


def test_zero_bytes():
    with pytest.raises(FrameError, match=r"^empty file \(0 bytes\)$"):
        decode_image(b"")


def test_text_named_jpg(tmp_path):
    path = tmp_path / "frame_0001.jpg"
    path.write_text("this is not a JPEG, it is a log line\n")
    with pytest.raises(FrameError) as ei:
        decode_image(path.read_bytes(), uri=str(path))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ")
    assert "not a recognised image" in msg


def test_one_pixel_below_min_side():
    data = encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG")
    with pytest.raises(FrameError, match=r"image is 1x1, smaller than the minimum side of 16 px"):
        decode_image(data, min_side=16)
    assert decode_image(data).rgb.tolist() == [[[1, 2, 3]]]  # default min_side=1 accepts it


def test_extreme_aspect_ratio():
    data = encode(Image.new("RGB", (2000, 10)), "PNG")
    with pytest.raises(FrameError, match=r"aspect ratio 200\.0:1 exceeds the limit of 8\.0:1"):
        decode_image(data)
    assert decode_image(data, max_aspect=250.0).rgb.shape == (10, 2000, 3)


@contextlib.contextmanager
def address_space_cap(extra_bytes: int):
    """Let the process map at most `extra_bytes` more virtual memory than it has now.

    A pixel buffer is reserved in full when allocated even if few of its pages are ever touched
    (Pillow callocs its blocks, and a truncated stream writes only a few rows), so resident-memory
    peaks miss it, and tracemalloc does not see Pillow's malloc. Under the cap such an allocation
    raises MemoryError, whatever the process's earlier peaks were."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm_now = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    limit = vm_now + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_header_bomb_fails_fast_with_our_message(monkeypatch):
    data = png_header_only(30000, 30000)
    assert len(data) < 300
    pil_limit = Image.MAX_IMAGE_PIXELS
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size) or real_load(self))
    # 900M RGB pixels would need ~2.7 GB (3.6 GB as Pillow's RGBX); 256 MiB is room for the error path
    with address_space_cap(256 << 20), pytest.raises(FrameError) as ei:
        decode_image(data, uri="s3://bucket/bomb.png")
    assert str(ei.value) == (
        "s3://bucket/bomb.png: 30000x30000 = 900000000 pixels exceeds the limit of "
        f"{DEFAULT_MAX_PIXELS} (input.max_pixels)"
    )
    assert loads == []  # refused from the header: the pixel data was never read
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # PIL's global guard restored


def test_header_over_custom_limit_below_pil_limit():
    # 10000x10000 is in PIL's warning band; our check must still be the one that fires,
    # whether that warning is ignored or escalated to an error (-W error).
    for action in ("ignore", "error"):
        with warnings.catch_warnings():
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            with pytest.raises(FrameError, match=r"^10000x10000 = 100000000 pixels exceeds the limit of 50000000"):
                decode_image(png_header_only(10000, 10000))
    with pytest.raises(FrameError, match=r"^64x48 = 3072 pixels exceeds the limit of 3000 \(input\.max_pixels\)$"):
        decode_image(encode(noise_rgb(), "PNG"), max_pixels=3000)


@pytest.mark.parametrize(
    "data,kw,needle",
    [
        (b"", {}, "empty file (0 bytes)"),
        (b"hello", {}, "not a recognised image"),
        (png_header_only(30000, 30000), {}, "exceeds the limit of"),
        (encode(Image.new("RGB", (2, 2)), "PNG"), {"min_side": 3}, "smaller than the minimum side of 3 px"),
        (encode(Image.new("RGB", (90, 10)), "PNG"), {}, "aspect ratio 9.0:1"),
    ],
)
def test_uri_prefix_on_every_failure(data, kw, needle):
    with pytest.raises(FrameError) as ei:
        decode_image(data, uri="gs://b/cam0/000042.jpg", **kw)
    assert str(ei.value).startswith("gs://b/cam0/000042.jpg: ")
    assert needle in str(ei.value)


def test_truncated_uri_prefix():
    data = encode(noise_rgb(), "JPEG")
    with pytest.raises(FrameError, match=r"^cam1/7\.jpg: corrupt or truncated"):
        decode_image(data[:-200], uri="cam1/7.jpg")


def test_frame_error_is_value_error():
    assert issubclass(FrameError, ValueError)


# --- conversions --------------------------------------------------------------


def test_plain_rgb_png_roundtrip():
    img = noise_rgb()
    out = decode_image(encode(img, "PNG"))
    assert_rgb(out, 64, 48)
    assert np.array_equal(out.rgb, np.asarray(img))
    assert out.meta == {
        "orig_width": 64,
        "orig_height": 48,
        "orig_mode": "RGB",
        "orig_format": "PNG",
        "exif_transposed": False,
        "alpha_composited": False,
    }


def gradient16() -> np.ndarray:
    return (np.arange(64 * 64, dtype=np.uint32) * 65535 // (64 * 64 - 1)).reshape(64, 64).astype(np.uint16)


def test_16bit_png_scaled_not_clipped():
    a = gradient16()
    assert a[0, 0] == 0 and a[-1, -1] == 65535
    img16 = Image.fromarray(a)
    assert img16.mode == "I;16"
    out = decode_image(encode(img16, "PNG"))
    assert_rgb(out, 64, 64)
    assert out.meta["orig_mode"] == "I;16"
    for y, x in [(0, 0), (0, 1), (10, 17), (32, 0), (63, 63)]:
        v = int(a[y, x]) >> 8
        assert out.rgb[y, x].tolist() == [v, v, v]
    assert np.array_equal(out.rgb[:, :, 0], (a >> 8).astype(np.uint8))
    assert out.rgb[0, 0, 0] == 0 and out.rgb[63, 63, 0] == 255
    assert (out.rgb == 255).mean() < 0.01  # PIL's clipping convert would make ~all of it 255


def test_16bit_big_endian_and_int32_modes():
    a = gradient16()
    be = Image.frombytes("I;16B", (64, 64), a.astype(">u2").tobytes())
    i32 = Image.fromarray(a.astype(np.int32))
    assert i32.mode == "I"
    for img in (be, i32):
        out = normalize_image(img)
        assert np.array_equal(out.rgb[:, :, 1], (a >> 8).astype(np.uint8))


def test_cmyk_jpeg():
    img = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(img, "JPEG", quality=95)
    out = decode_image(data)
    assert_rgb(out, 32, 24)
    assert out.meta["orig_mode"] == "CMYK"
    assert out.meta["orig_format"] == "JPEG"
    assert np.array_equal(out.rgb, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    r, g, b = out.rgb[12, 16].tolist()
    assert r > 200 and g < 60 and b < 60


def test_rgba_composited_on_black():
    px = np.array(
        [[[200, 100, 50, 128], [255, 255, 255, 0]], [[10, 20, 30, 255], [90, 60, 30, 128]]], dtype=np.uint8
    )
    out = decode_image(encode(Image.fromarray(px, "RGBA"), "PNG"))
    assert_rgb(out, 2, 2)
    assert out.meta["alpha_composited"] is True
    assert out.meta["orig_mode"] == "RGBA"
    assert out.rgb[0, 1].tolist() == [0, 0, 0]  # fully transparent white -> black
    assert out.rgb[1, 0].tolist() == [10, 20, 30]  # opaque unchanged
    for y, x in [(0, 0), (1, 1)]:
        expected = [round(c * 128 / 255) for c in px[y, x, :3].tolist()]
        assert np.abs(out.rgb[y, x].astype(int) - expected).max() <= 1


def test_la_composited():
    px = np.array([[[100, 255], [100, 0]]], dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(px, "LA"), "PNG"))
    assert out.rgb.tolist() == [[[100, 100, 100], [0, 0, 0]]]
    assert out.meta["alpha_composited"] is True


def test_exif_orientation_6_rotates():
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20] = (255, 0, 0)  # stored left half red
    a[:, 20:] = (0, 0, 255)  # stored right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert_rgb(out, 20, 40)
    assert out.meta["exif_transposed"] is True
    assert (out.meta["orig_width"], out.meta["orig_height"]) == (40, 20)
    # orientation 6 = rotate 90 deg clockwise for display: stored left edge becomes the top
    top, bottom = out.rgb[5, 10].tolist(), out.rgb[35, 10].tolist()
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_exif_orientation_1_untouched():
    exif = Image.Exif()
    exif[0x0112] = 1
    out = decode_image(encode(noise_rgb(40, 20), "JPEG", exif=exif.tobytes()))
    assert_rgb(out, 40, 20)
    assert out.meta["exif_transposed"] is False


def test_palette_png():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 12, 34, 56] + [0] * (256 * 3 - 12))
    img.putpixel((1, 2), 1)
    img.putpixel((3, 4), 3)
    out = decode_image(encode(img, "PNG"))
    assert_rgb(out, 8, 8)
    assert out.meta["orig_mode"] == "P"
    assert out.meta["alpha_composited"] is False
    assert out.rgb[2, 1].tolist() == [255, 0, 0]
    assert out.rgb[4, 3].tolist() == [12, 34, 56]
    assert out.rgb[0, 0].tolist() == [0, 0, 0]


def test_palette_png_with_transparency():
    img = Image.new("P", (4, 4), 1)
    img.putpalette([255, 255, 255, 10, 200, 30] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 0)
    out = decode_image(encode(img, "PNG", transparency=0))
    assert out.meta["alpha_composited"] is True
    assert out.rgb[0, 0].tolist() == [0, 0, 0]  # transparent white index -> black
    assert out.rgb[1, 1].tolist() == [10, 200, 30]


def test_grayscale_three_equal_channels():
    a = (np.arange(32 * 16) % 256).astype(np.uint8).reshape(16, 32)
    out = decode_image(encode(Image.fromarray(a, "L"), "PNG"))
    assert_rgb(out, 32, 16)
    assert out.meta["orig_mode"] == "L"
    for c in range(3):
        assert np.array_equal(out.rgb[:, :, c], a)


def test_float_mode_normalised():
    a = np.linspace(0.0, 1.0, 16, dtype=np.float32).reshape(4, 4)
    out = normalize_image(Image.fromarray(a, "F"))
    assert out.rgb[0, 0].tolist() == [0, 0, 0] and out.rgb[3, 3].tolist() == [255, 255, 255]


def test_normalize_image_lazy_truncated():
    data = encode(noise_rgb(), "JPEG")
    img = Image.open(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(FrameError, match=r"^row 3: corrupt or truncated"):
        normalize_image(img, uri="row 3")


def test_normalize_image_checks_geometry():
    with pytest.raises(FrameError, match="smaller than the minimum side of 8 px"):
        normalize_image(Image.new("RGB", (4, 4)), min_side=8)
    with pytest.raises(FrameError, match="aspect ratio 10.0:1"):
        normalize_image(Image.new("RGB", (100, 10)))


# --- OpenCV frames --------------------------------------------------------------


def test_normalize_array_bgr_to_rgb():
    bgr = np.zeros((6, 10, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    bgr[0, 0] = (1, 2, 3)
    out = normalize_array(bgr, uri="v.mp4#12")
    assert_rgb(out, 10, 6)
    assert out.rgb[1, 1].tolist() == [0, 0, 255]
    assert out.rgb[0, 0].tolist() == [3, 2, 1]
    assert np.array_equal(out.rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert (out.meta["orig_width"], out.meta["orig_height"]) == (10, 6)
    bgr[0, 0] = 0
    assert out.rgb[0, 0].tolist() == [3, 2, 1]  # result does not alias the caller's buffer


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((4, 4), dtype=np.uint8),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((4, 4, 3), dtype=np.float32),
        np.zeros((4, 4, 3), dtype=np.uint16),
        np.zeros((0, 4, 3), dtype=np.uint8),
    ],
)
def test_normalize_array_rejects(arr):
    with pytest.raises(FrameError, match=r"^v\.mp4#3: "):
        normalize_array(arr, uri="v.mp4#3")
