"""Decode image bytes / PIL images / OpenCV frames into uniform 8-bit RGB arrays.

Bad input is expected input: every failure becomes a FrameError whose message
says what failed (prefixed with the uri when given) so the caller can write one
error row instead of crashing or silently skipping the frame.
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError

DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked from the header before decoding
DEFAULT_MAX_ASPECT = 8.0

_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# PIL's MAX_IMAGE_PIXELS is process-global; it is only touched on the rare
# bomb path, under this lock, so concurrent decodes never see it changed twice.
_PIL_LIMIT_LOCK = threading.Lock()


class FrameError(UserError):
    """A frame that cannot be used; the message says what failed (and where, if the caller gave a uri)."""


@dataclass
class DecodedImage:
    rgb: np.ndarray  # HxWx3 uint8, C-contiguous, RGB
    meta: dict  # orig_width, orig_height, orig_mode, orig_format, exif_transposed, alpha_composited


def _fail(uri: str, msg: str) -> FrameError:
    return FrameError(f"{uri}: {msg}" if uri else msg)


def _open_header(data: bytes, uri: str) -> Image.Image:
    """Lazy open (header only, no pixel decode)."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _fail(uri, f"not a recognised image ({len(data)} bytes)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL refuses > 2*MAX_IMAGE_PIXELS (or warns, which -W error turns into a raise)
        # before we can read the size. Re-read the header with PIL's guard off so our
        # own check reports WxH and input.max_pixels.
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(io.BytesIO(data))
            except Exception as e:  # header parse failed the second time round
                raise _fail(uri, f"corrupt or truncated image header ({type(e).__name__}: {e})") from None
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception as e:  # plugins raise SyntaxError/ValueError/struct.error/... on bad headers
        raise _fail(uri, f"corrupt or truncated image header ({type(e).__name__}: {e})") from None


def _load(img: Image.Image, uri: str) -> None:
    # LOAD_TRUNCATED_IMAGES stays off: a half-grey frame would be silent data corruption.
    try:
        img.load()
    except MemoryError:
        raise  # a worker resource problem, not a property of this frame
    except Image.DecompressionBombError as e:  # multi-frame formats re-check sizes during load
        raise _fail(uri, f"{e} (raise PIL.Image.MAX_IMAGE_PIXELS or input.max_pixels)") from None
    except Exception as e:  # OSError/SyntaxError/ValueError/EOFError/struct.error from decoders
        raise _fail(uri, f"corrupt or truncated image data ({type(e).__name__}: {e})") from None


def _exif_transpose(img: Image.Image, uri: str) -> tuple[Image.Image, bool]:
    try:
        orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:
        # Malformed EXIF on otherwise valid pixels: keep the frame as stored
        # rather than reject it; orientation is then simply unknown (treated as 1).
        return img, False
    if orientation not in range(2, 9):
        return img, False
    try:
        return ImageOps.exif_transpose(img), True
    except Exception as e:
        raise _fail(uri, f"cannot apply EXIF orientation {orientation} ({type(e).__name__}: {e})") from None


def _to_rgb(img: Image.Image) -> tuple[np.ndarray, bool]:
    """Return (HxWx3 uint8 RGB, alpha_composited)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        # PIL's convert() clips 16-bit values at 255 (mostly-white output); scale instead.
        # Mode "I" (int32) is what 16-bit greyscale used to open as, so treat it as 16-bit.
        a = np.asarray(img).astype(np.int64)
        g = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2), False
    if mode == "F":
        # Float data has no fixed range: [0,1] is treated as normalised, else as 0..255.
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2), False
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[:, :, 3:4]
        # Composite on black: c * a / 255, rounded to nearest.
        rgb = ((rgba[:, :, :3] * alpha + 127) // 255).astype(np.uint8)
        return rgb, True
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV ...
    return np.asarray(img, dtype=np.uint8), False


def _check_geometry(rgb: np.ndarray, uri: str, min_side: int, max_aspect: float) -> None:
    h, w = rgb.shape[:2]
    short = min(w, h)
    if short < max(min_side, 1):
        raise _fail(uri, f"image is {w}x{h}, smaller than the minimum side of {max(min_side, 1)} px")
    ratio = max(w, h) / short
    if ratio > max_aspect:
        raise _fail(uri, f"image is {w}x{h}: aspect ratio {ratio:.1f}:1 exceeds the limit of {max_aspect}:1")


def normalize_image(
    img: Image.Image, *, uri: str = "", min_side: int = 1, max_aspect: float = DEFAULT_MAX_ASPECT
) -> DecodedImage:
    """Normalise an already-open PIL image (e.g. from a Parquet Image struct)."""
    meta = {
        "orig_width": int(img.width),
        "orig_height": int(img.height),
        "orig_mode": str(img.mode),
        "orig_format": img.format,
        "exif_transposed": False,
        "alpha_composited": False,
    }
    _load(img, uri)
    try:
        img, meta["exif_transposed"] = _exif_transpose(img, uri)
        rgb, meta["alpha_composited"] = _to_rgb(img)
    except (FrameError, MemoryError):
        raise
    except Exception as e:  # e.g. a mode PIL cannot convert to RGB
        raise _fail(uri, f"cannot convert mode {meta['orig_mode']} to RGB ({type(e).__name__}: {e})") from None
    _check_geometry(rgb, uri, min_side, max_aspect)
    return DecodedImage(rgb=np.ascontiguousarray(rgb, dtype=np.uint8), meta=meta)


def decode_image(
    data: bytes,
    *,
    uri: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> DecodedImage:
    """Decode encoded image bytes (JPEG, PNG, TIFF, WebP, ...) into 8-bit RGB."""
    if not data:
        raise _fail(uri, "empty file (0 bytes)")
    img = _open_header(bytes(data), uri)
    w, h = img.size
    # Checked from the header, before any pixel buffer is allocated.
    if w * h > max_pixels:
        raise _fail(uri, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (input.max_pixels)")
    with img:
        return normalize_image(img, uri=uri, min_side=min_side, max_aspect=max_aspect)


def normalize_array(arr: np.ndarray, *, uri: str = "") -> DecodedImage:
    """OpenCV video frame (BGR uint8 HxWx3) -> RGB DecodedImage."""
    if not isinstance(arr, np.ndarray):
        raise _fail(uri, f"expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise _fail(uri, f"expected a BGR uint8 HxWx3 frame, got dtype {arr.dtype} shape {arr.shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise _fail(uri, f"image is {w}x{h}, smaller than the minimum side of 1 px")
    rgb = np.ascontiguousarray(arr[:, :, ::-1])
    meta = {
        "orig_width": int(w),
        "orig_height": int(h),
        "orig_mode": "BGR",  # not a PIL mode: OpenCV frames carry no PIL metadata
        "orig_format": None,
        "exif_transposed": False,
        "alpha_composited": False,
    }
    return DecodedImage(rgb=rgb, meta=meta)
