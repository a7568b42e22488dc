"""Image bytes for storage: one encoder for every frame the toolkit writes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_PIL_FORMAT = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}
# the largest width or height a webp image may have
WEBP_MAX_SIDE = 16383
# thumbnails are looked at small, in a gallery: 80 keeps them a few KB
THUMBNAIL_QUALITY = 80
# libwebp's fastest effort: half the CPU of its default for about 15% more bytes (a 9-frame strip at 160 px)
THUMBNAIL_WEBP_METHOD = 0


def _shrunk(img: Image.Image, max_side: int, multiple: int = 1) -> Image.Image:
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = [max(multiple, round(side * scale) // multiple * multiple) for side in img.size]
    return img.resize(tuple(size), Image.Resampling.LANCZOS)


def shrink_frames(frames: np.ndarray, max_side: int, multiple: int = 2) -> np.ndarray:
    """(F, H, W, 3) frames with the longest side at most max_side (0 = as they are), sides a multiple
    of `multiple` (video codecs want even sizes)."""
    if not max_side or max(frames.shape[1:3]) <= max_side:
        return frames
    return np.stack([np.asarray(_shrunk(Image.fromarray(f, "RGB"), max_side, multiple)) for f in frames])


def encode_image(rgb: np.ndarray, fmt: str = "png", quality: int = 90, max_side: int = 0,
                 webp_method: int = 4) -> bytes:
    """Encode an (H, W, 3) uint8 frame; png is lossless, max_side > 0 shrinks the longest side; webp_method is
    libwebp's effort, 0 (fastest) to 6 (smallest), 4 its default."""
    img = _shrunk(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB"), max_side)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=6)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=webp_method)
    elif fmt in _PIL_FORMAT:
        img.save(buf, _PIL_FORMAT[fmt], quality=quality)
    else:
        raise ValueError(f"unknown image format {fmt!r} (png, webp, jpeg)")
    return buf.getvalue()


def decode_rgb(data: bytes) -> np.ndarray:
    """Bytes written by encode_image back to an (H, W, 3) uint8 array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def stored_trajectory(row: dict) -> np.ndarray | None:
    """A stored row's reasoning frames, (F, H, W, 3) RGB, from `reasoning_video` or `reasoning_frames`;
    None when the row has none."""
    if row.get("reasoning_video"):
        from .video import decode_video

        return decode_video(row["reasoning_video"]["bytes"])
    frames = [decode_rgb(f["bytes"]) for f in row.get("reasoning_frames") or []]
    return np.stack(frames) if frames else None


def frame_strip(frames: np.ndarray, max_side: int = 256, fmt: str = "png", quality: int = 90,
                webp_method: int = 4) -> bytes:
    """The frames side by side as one image, each shrunk to max_side (0: as they are), for a quick look at a
    trajectory. A webp strip wider than webp allows gets smaller tiles."""
    strip = np.concatenate(list(shrink_frames(frames, max_side, multiple=1)), axis=1)
    if fmt == "webp" and strip.shape[1] > WEBP_MAX_SIDE:
        tile = max(strip.shape[0], strip.shape[1] // len(frames))
        # less one px per tile: each tile's short side may round up
        return frame_strip(frames, max(1, tile * (WEBP_MAX_SIDE - len(frames)) // strip.shape[1]), fmt, quality,
                           webp_method)
    return encode_image(strip, fmt, quality, webp_method=webp_method)


def make_thumbnails(source: np.ndarray | None, edited: np.ndarray | None, frames: np.ndarray | None,
                    side: int) -> dict:
    """The `thumbnails` column (dataset.schema.THUMBNAILS) from raw frames: each shrunk to `side` px, webp.
    A missing frame (a failed row has no edit) leaves its field null."""

    def small(rgb, name: str, encode) -> dict | None:
        return None if rgb is None else {"bytes": encode(rgb), "path": f"{name}.webp"}

    def still(rgb):
        return encode_image(rgb, "webp", THUMBNAIL_QUALITY, side, THUMBNAIL_WEBP_METHOD)

    def strip(f):
        return frame_strip(f, side, "webp", THUMBNAIL_QUALITY, THUMBNAIL_WEBP_METHOD)

    return {"source": small(source, "source", still), "edited": small(edited, "edited", still),
            "trajectory": small(frames, "trajectory", strip),
            "trajectory_frames": 0 if frames is None else len(frames)}
