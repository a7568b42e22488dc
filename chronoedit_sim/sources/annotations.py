"""Ground truth beside the frames: KITTI label files, COCO instances JSON, nuScenes 3D boxes projected to
each camera image. Every reader returns source annotations (perception/labels.py): label, source_box in
the frame's pixels, ignore, attributes.

KITTI label files are parsed by the read task, frame by frame, so a malformed file fails only its frame
(an error row naming the file and line). COCO and nuScenes tables are whole-dataset files: read once on
the driver, and a file that cannot be read at all stops the run before any model loads.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import storage
from .base import FrameRef, InputError

# KITTI object label columns after the type; the 2D box is columns 4..7
KITTI_FIELDS = "type truncated occluded alpha x0 y0 x1 y1 h w l x y z ry"


class LabelError(Exception):
    """A label file or entry that cannot be read: its frame becomes an error row with this message."""


def kitti_label_path(image_path: str) -> str | None:
    """training/image_2/000123.png -> training/label_2/000123.txt (labels exist for the left camera only)."""
    p = storage.path(image_path)
    if p.parent.name != "image_2":
        return None
    return str(p.parent.parent / "label_2" / (p.stem + ".txt"))


def read_kitti_labels(path: str) -> list[dict]:
    """A KITTI object label file; a missing file is a frame without labels, a malformed line a LabelError."""
    try:
        text = storage.path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"{path}: cannot read label file ({e})") from None
    anns = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):  # 16: a detection result's trailing score
            raise LabelError(f"{path}:{lineno}: expected 15 fields ({KITTI_FIELDS}), got {len(parts)}")
        try:
            v = [float(x) for x in parts[1:15]]
        except ValueError as e:
            raise LabelError(f"{path}:{lineno}: {e}") from None
        if not (v[5] >= v[3] and v[6] >= v[4]):
            raise LabelError(f"{path}:{lineno}: box x0 y0 x1 y1 = {v[3:7]} is inverted")
        kind = parts[0]
        anns.append({
            "label": kind,
            "source_box": v[3:7],
            "ignore": kind == "DontCare",
            "attributes": {"truncated": v[0], "occluded": int(v[1]), "alpha": v[2], "dimensions_hwl": v[7:10],
                           "location_xyz": v[10:13], "rotation_y": v[13]},
        })
    return anns


def _coco_index(path: str) -> dict[str, list[dict] | str]:
    """file name -> source annotations (or a LabelError message) of a COCO instances JSON."""
    try:
        data = json.loads(storage.path(os.path.expanduser(path)).read_text(encoding="utf-8"))
        images = {im["id"]: im["file_name"] for im in data["images"]}
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
        entries = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"input.annotations: cannot read COCO instances file {path} ({type(e).__name__}: {e})") from None
    out: dict[str, list[dict] | str] = {name: [] for name in images.values()}
    for n, a in enumerate(entries):
        name = images.get(a.get("image_id")) if isinstance(a, dict) else None
        if name is None:
            continue  # an annotation of an image the file does not list belongs to no frame
        if isinstance(out[name], str):
            continue
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            if w < 0 or h < 0:
                raise ValueError(f"negative size {w} x {h}")
            label = names[a["category_id"]]
        except (KeyError, TypeError, ValueError) as e:
            out[name] = f"{path}: annotations[{n}] (id {a.get('id')}): bad entry ({type(e).__name__}: {e})"
            continue
        attrs = {k: a[k] for k in ("id", "area", "iscrowd") if k in a}
        out[name].append({"label": label, "source_box": [x, y, x + w, y + h], "ignore": bool(a.get("iscrowd")),
                          "attributes": attrs})
    return out


def attach_coco(path: str, refs: Iterable[FrameRef]) -> Iterator[FrameRef]:
    """Annotations from a COCO file, matched by file name: the frame's relative path, else its base name
    (Parquet rows: the id column's value). Frames the file does not list get none. Lazy, like the listing."""
    index = _coco_index(path)
    by_base = defaultdict(list)
    for name in index:
        by_base[os.path.basename(name)].append(name)
    for ref in refs:
        key = str(ref.meta.get("id", ref.source_id))
        names = [key] if key in index else by_base.get(os.path.basename(key), [])
        if len(names) > 1:
            raise InputError(f"input.annotations: {path}: frame {ref.source_id} matches several images by base name "
                             f"({', '.join(sorted(names)[:3])}); use relative file names in the COCO file")
        yield replace(ref, annotations=index[names[0]] if names else [])


# --- nuScenes: 3D sample annotations projected to 2D, as nuscenes-devkit's export_2d_annotations_as_json


def _rotation(q) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def box_corners(translation, size_wlh, rotation) -> np.ndarray:
    """The 8 corners (3 x 8) of a box given by centre, size (w, l, h) and orientation quaternion."""
    w, l, h = size_wlh
    x = l / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
    y = w / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
    z = h / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1])
    return _rotation(rotation) @ np.vstack([x, y, z]) + np.asarray(translation, float).reshape(3, 1)


def project_box(corners_global: np.ndarray, ego: dict, sensor: dict, size: tuple[int, int]) -> list[float] | None:
    """The 2D box (x0, y0, x1, y1) of global corners in a camera image of size (w, h); None if not visible."""
    pts = _rotation(ego["rotation"]).T @ (corners_global - np.reshape(ego["translation"], (3, 1)))
    pts = _rotation(sensor["rotation"]).T @ (pts - np.reshape(sensor["translation"], (3, 1)))
    pts = pts[:, pts[2] > 0.1]  # corners in front of the camera only
    if pts.shape[1] == 0:
        return None
    uv = np.asarray(sensor["camera_intrinsic"], float) @ pts
    uv = uv[:2] / uv[2]
    x0, y0 = max(uv[0].min(), 0.0), max(uv[1].min(), 0.0)
    x1, y1 = min(uv[0].max(), float(size[0])), min(uv[1].max(), float(size[1]))
    return [float(x0), float(y0), float(x1), float(y1)] if x1 > x0 and y1 > y0 else None


def _tables(root: Path) -> dict[str, list[dict]]:
    versions = sorted(d for d in root.iterdir() if d.is_dir() and (d / "sample_data.json").is_file())
    names = ("sample_data", "calibrated_sensor", "ego_pose", "sample_annotation", "instance", "category",
             "visibility", "attribute", "sample")
    tables: dict[str, list[dict]] = {n: [] for n in names}
    for version in versions:
        for n in names:
            f = version / f"{n}.json"
            if not f.is_file():
                continue
            try:
                tables[n] += json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise InputError(f"input.path: cannot read nuScenes table {f} ({type(e).__name__}: {e})") from None
    return tables


def attach_nuscenes(root: Path, refs: Iterable[FrameRef]) -> Iterator[FrameRef]:
    """Each camera image's 2D boxes from the key frame's sample annotations, and its instant (the sample) and
    sequence (the scene). Without the JSON tables (images only) the frames get no annotations and no groups;
    a table entry that cannot be projected fails its frame. Lazy, like the listing (the tables are read whole)."""
    t = _tables(root)
    if not t["sample_data"]:
        yield from refs
        return
    by_file = {sd["filename"]: sd for sd in t["sample_data"]}
    sensors = {c["token"]: c for c in t["calibrated_sensor"]}
    poses = {p["token"]: p for p in t["ego_pose"]}
    cats = {c["token"]: c["name"] for c in t["category"]}
    category = {i["token"]: cats.get(i["category_token"], "unknown") for i in t["instance"]}
    visibility = {v["token"]: v.get("level", v["token"]) for v in t["visibility"]}
    attribute = {a["token"]: a["name"] for a in t["attribute"]}
    scene_of = {s["token"]: s.get("scene_token") for s in t["sample"]}
    by_sample = defaultdict(list)
    for a in t["sample_annotation"]:
        by_sample[a["sample_token"]].append(a)
    for ref in refs:
        sd = by_file.get(ref.source_id)
        if sd is None:
            yield replace(ref, annotations=[])
            continue
        ref = replace(ref, instant_id=sd["sample_token"], sequence_id=scene_of.get(sd["sample_token"]))
        try:
            ego, sensor = poses[sd["ego_pose_token"]], sensors[sd["calibrated_sensor_token"]]
            size = (int(sd["width"]), int(sd["height"]))
            anns = []
            for a in by_sample.get(sd["sample_token"], []):
                box = project_box(box_corners(a["translation"], a["size"], a["rotation"]), ego, sensor, size)
                if box is not None:
                    anns.append({"label": category.get(a["instance_token"], "unknown"), "source_box": box,
                                 "ignore": False,
                                 "attributes": {"token": a["token"], "instance": a["instance_token"],
                                                "visibility": visibility.get(a.get("visibility_token"), None),
                                                "attributes": [attribute.get(x, x) for x in a.get("attribute_tokens", [])],
                                                "size_wlh": a["size"], "translation": a["translation"]}})
        except (KeyError, TypeError, ValueError) as e:
            yield replace(ref, annotations=f"nuScenes tables: {ref.source_id}: cannot project its boxes "
                                           f"({type(e).__name__}: {e})")
            continue
        yield replace(ref, annotations=anns)
