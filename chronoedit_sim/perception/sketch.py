"""Sketch insertion at a known place: where a job's object goes, and its black pencil sketch on the frame.

The PaintBrush LoRA turns a black sketch drawn on the frame into an object, so the toolkit chooses the
place and knows the box before any model runs. A scenario edit's `sketch:` names a drawing of the library
(scenarios/sketches/<shape>.txt: strokes as polylines in the unit box, the object standing on y = 1), the
region its base may stand in, and its height as a fraction of the frame at the bottom edge and at the
horizon; in between the height is interpolated on the base's row, so an object further away (higher in the
frame) is drawn smaller, as a camera sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import REGIONS

# the shipped drawings; a scenario may name another folder (sketch.library)
LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "sketches"


@dataclass(frozen=True)
class SketchSpec:
    # drawing name: <library>/<shape>.txt
    shape: str
    # where the object's base may stand: relative (x0, y0, x1, y1) or a name in labels.REGIONS
    region: tuple[float, float, float, float] | str
    # the object's height (fraction of the frame height) standing on the bottom edge: (min, max)
    height_at_bottom: tuple[float, float]
    # the same at the horizon
    height_at_horizon: tuple[float, float]
    # the horizon's row, as a fraction of the frame height
    horizon: float = 0.45
    # the drawing's width / height (the box's aspect ratio)
    aspect: float = 0.4


def load_shape(shape: str, library: Path = LIBRARY) -> list[np.ndarray]:
    """The strokes of a drawing, each an (N, 2) array in the unit box; ValueError naming file and line."""
    path = Path(library) / f"{shape}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"sketch shape {shape!r}: cannot read {path} ({e.strerror or e})") from None
    strokes = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            pts = np.array([[float(v) for v in p.split(",")] for p in line.split()], dtype=np.float32)
        except ValueError as e:
            raise ValueError(f"{path}:{n}: {e}") from None
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or pts.min() < 0 or pts.max() > 1:
            raise ValueError(f"{path}:{n}: a stroke is two or more x,y points within 0..1")
        strokes.append(pts)
    if not strokes:
        raise ValueError(f"{path}: no strokes")
    return strokes


def place(spec: SketchSpec, u: tuple[float, float, float]) -> dict:
    """Where the object stands, for three uniform numbers in [0, 1) (from the job's hash): its base's row and
    its centre's column (fractions of the frame) inside the region, its height (a fraction of the frame
    height) set by that row, and its width / height in pixels. box_px() turns it into a box of a frame."""
    x0, y0, x1, y1 = REGIONS[spec.region] if isinstance(spec.region, str) else spec.region
    base = max(y0, spec.horizon) + u[0] * (y1 - max(y0, spec.horizon))  # the base stands below the horizon
    t = (base - spec.horizon) / max(1.0 - spec.horizon, 1e-6)  # 0 at the horizon, 1 at the bottom edge
    low = spec.height_at_horizon[0] + t * (spec.height_at_bottom[0] - spec.height_at_horizon[0])
    high = spec.height_at_horizon[1] + t * (spec.height_at_bottom[1] - spec.height_at_horizon[1])
    return {"shape": spec.shape, "center_x": round(x0 + u[2] * (x1 - x0), 6), "base": round(base, 6),
            "height": round(min(low + u[1] * (high - low), base), 6), "aspect": spec.aspect}


def box_px(sketch: dict, width: int, height: int) -> list[float]:
    """The drawing's box (x0, y0, x1, y1) in a width x height frame; it stays within the frame."""
    h = sketch["height"] * height
    w = min(sketch["aspect"] * h, width)
    left = min(max(sketch["center_x"] * width - w / 2, 0.0), width - w)
    return [left, sketch["base"] * height - h, left + w, sketch["base"] * height]


def draw(rgb: np.ndarray, strokes: list[np.ndarray], box_px: list[float]) -> np.ndarray:
    """The frame with the drawing in black strokes inside box_px (pixels); the input is left as it was."""
    import cv2

    out = rgb.copy()
    x0, y0, x1, y1 = box_px
    scale = np.array([x1 - x0, y1 - y0], dtype=np.float32)
    width = max(1, int(round((y1 - y0) / 40)))
    # the strokes' centre lines stay a half-width inside the box, so the ink does too
    inner = np.maximum(scale - width, 1.0)
    origin = np.array([x0, y0], dtype=np.float32) + (scale - inner) / 2
    lines = [np.round(origin + s * inner).astype(np.int32).reshape(-1, 1, 2) for s in strokes]
    cv2.polylines(out, lines, isClosed=False, color=(0, 0, 0), thickness=width, lineType=cv2.LINE_8)
    return out
