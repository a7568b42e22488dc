"""Annotations: the one record shape, box arithmetic, and what an edit does to a frame's labels.

A source annotation (what the readers return) is {"label", "source_box": [x0, y0, x1, y1] in the
source frame's pixels, "ignore", "attributes": dict}. A row's `annotations` column holds the final
records (see ANNOTATION in dataset/schema.py): the box in the edited image's pixels beside the box in
source pixels. The editor stretches the frame to the edited size, so a box maps by the two scales.
"""

from __future__ import annotations

import json

# scenario `annotations:` policies: what an edit does to the source's boxes
#   keep: every source box carried (weather, lighting, surfaces)
#   keep_and_insert: carried, plus the inserted object's box found by localisation
#   remove: carried, except the removed object's, which becomes an ignore region
#   drop: no boxes (the edit invalidates them)
POLICIES = ("keep", "keep_and_insert", "remove", "drop")
# named edit regions (relative x0, y0, x1, y1) a scenario may use instead of four numbers
REGIONS = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "road_ahead": (0.2, 0.45, 0.8, 1.0),
    "left_half": (0.0, 0.0, 0.5, 1.0),
    "right_half": (0.5, 0.0, 1.0, 1.0),
    "lower_half": (0.0, 0.5, 1.0, 1.0),
}


def box_area(b) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def intersection(a, b) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a, b) -> float:
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def scale_box(box, sx: float, sy: float) -> list[float]:
    return [float(box[0]) * sx, float(box[1]) * sy, float(box[2]) * sx, float(box[3]) * sy]


def region_box(region, width: int, height: int) -> list[float]:
    """A relative region (four numbers or a name in REGIONS) in pixels of a width x height image."""
    rel = REGIONS[region] if isinstance(region, str) else region
    return scale_box(rel, width, height)


def record(label: str, box, source_box, *, synthetic: bool = False, ignore: bool = False,
           confidence: float | None = None, occlusion: float | None = None, attributes: dict | None = None) -> dict:
    """One `annotations` entry as the schema stores it."""
    return {
        "label": label,
        "box": None if box is None else [float(v) for v in box],
        "source_box": None if source_box is None else [float(v) for v in source_box],
        "synthetic": synthetic,
        "ignore": ignore,
        "confidence": confidence,
        "occlusion": occlusion,
        "attributes": json.dumps(attributes or {}, sort_keys=True),
    }


def carried(source: list[dict], source_size: tuple[int, int], edited_size: tuple[int, int]) -> list[dict]:
    """The source annotations as row records, their boxes scaled from source (w, h) to edited (w, h)."""
    sx, sy = edited_size[0] / source_size[0], edited_size[1] / source_size[1]
    return [record(a["label"], scale_box(a["source_box"], sx, sy), a["source_box"], ignore=a.get("ignore", False),
                   attributes=a.get("attributes")) for a in source]


def for_categories(anns: list[dict], categories) -> list[dict]:
    """The annotations as COCO evaluates them: an ignore region whose label names no object category (KITTI's
    DontCare) ignores detections of every category, so it becomes one crowd region per category."""
    out = []
    for a in anns:
        if a["ignore"] and a["label"] not in categories:
            out += [{**a, "label": c} for c in categories]
        else:
            out.append(a)
    return out
