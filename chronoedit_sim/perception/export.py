"""`chronoedit-sim export DIR --format coco|yolo|kitti --output OUT`: a dataset as a robustness benchmark.

One split per (scenario, edit, severity) plus `clean` (each source frame once, with its own labels), the
way COCO-C and KITTI-C are laid out; detection tools read each format with no code of ours:
  coco:  images/<split>/<stem>.<ext>, annotations/instances_<split>.json (category ids shared by all splits)
  yolo:  <split>/images/<stem>.<ext>, <split>/labels/<stem>.txt, <split>.yaml (ultralytics' data file)
  kitti: <split>/image_2/<stem>.png, <split>/label_2/<stem>.txt
manifest.csv maps every exported image to its split, job_id and source_id. Ignore regions (KITTI
DontCare, COCO crowd, a removed object) are COCO crowd annotations, KITTI DontCare, and left out of YOLO.
An edited image's stem is its job_id; a clean image's is "src-" + a hash of its source_id.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import storage
from ..dataset.encode import decode_rgb, encode_image, stored_trajectory
from ..dataset.sink import atomic_write_bytes
from ..dataset.where import scan
from ..errors import UserError
from ..scoring.metrics import resize_to, ssim
from .labels import for_categories, scale_box

FORMATS = ("coco", "yolo", "kitti")
CLEAN = "clean"
# rows per scanned batch: each holds two images (and a trajectory with --severity-ladder)
BATCH_ROWS = 16
_COLUMNS = ["job_id", "source_id", "scenario", "edit_id", "severity", "sample_index", "source_image",
            "edited_image", "annotations"]
_MAGIC = {b"\x89PNG": "png", b"\xff\xd8": "jpg", b"RIFF": "webp"}


def split_name(scenario: str, edit_id: str, severity: int | None, ladder: int | None = None) -> str:
    name = f"{scenario}__{edit_id}"
    return name + (f"__s{severity}" if severity is not None else "") + (f"__ladder{ladder}" if ladder else "")


def source_truth(rows_anns: list[list[dict]]) -> list[dict]:
    """The source frame's own labels from the annotations of its rows: the entries that came from the
    source, as they were before the edit (a removed object is an object again); the longest such list,
    since every policy but `drop` carries all of them."""
    best: list[dict] = []
    for anns in rows_anns:
        own = []
        for a in anns:
            if a["source_box"] is None:
                continue
            attrs = json.loads(a["attributes"])
            removed = attrs.pop("edit", None) == "removed"
            own.append({**a, "box": a["source_box"], "ignore": a["ignore"] and not removed, "synthetic": False,
                        "occlusion": None, "confidence": None, "attributes": json.dumps(attrs, sort_keys=True)})
        if len(own) > len(best):
            best = own
    return best


def _size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:  # reads the header only
        return img.size


def _ext(data: bytes) -> str:
    return next((ext for magic, ext in _MAGIC.items() if data.startswith(magic)), "png")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


class _Writer:
    """One format's files; `add` writes an image and remembers its labels, `finish` writes the indexes."""

    def __init__(self, out: Path, fmt: str):
        self.out, self.fmt = out, fmt
        self.images: dict[str, list[tuple[str, int, int, list[dict]]]] = defaultdict(list)  # split -> entries
        self.labels: set[str] = set()

    def add(self, split: str, stem: str, data: bytes, size: tuple[int, int], anns: list[dict]) -> str:
        ext = _ext(data)
        if self.fmt == "kitti" and ext != "png":  # KITTI's image_2 holds PNGs
            data, ext = encode_image(decode_rgb(data), "png"), "png"
        folder = {"coco": f"images/{split}", "yolo": f"{split}/images", "kitti": f"{split}/image_2"}[self.fmt]
        rel = f"{folder}/{stem}.{ext}"
        _write(self.out / rel, data)
        self.images[split].append((rel, size[0], size[1], anns))
        self.labels.update(a["label"] for a in anns if not a["ignore"])
        if self.fmt == "kitti":  # YOLO's label files are written in finish: class ids need every label
            _write(self.out / f"{split}/label_2/{stem}.txt", _kitti_lines(anns).encode())
        return rel

    def finish(self) -> list[str]:
        names = sorted(self.labels)
        ids = {name: i for i, name in enumerate(names)}
        if self.fmt == "coco":
            for split, entries in self.images.items():
                _write(self.out / f"annotations/instances_{split}.json",
                                   json.dumps(coco_dataset(entries, names), indent=1).encode())
        elif self.fmt == "yolo":
            for split, entries in self.images.items():
                for rel, w, h, anns in entries:
                    stem = Path(rel).stem
                    lines = [f"{ids[a['label']]} " + " ".join(f"{v:.6f}" for v in _yolo_box(a["box"], w, h))
                             for a in anns if not a["ignore"]]
                    _write(self.out / f"{split}/labels/{stem}.txt", "".join(x + "\n" for x in lines).encode())
                data = {"path": str(self.out.resolve()), "train": f"{CLEAN}/images", "val": f"{split}/images",
                        "names": {i: n for n, i in ids.items()}}
                _write(self.out / f"{split}.yaml", _yaml(data).encode())
        return names


def coco_dataset(entries, names: list[str]) -> dict:
    """A COCO instances dict of (file, width, height, annotations) entries, category ids 1.. in `names`'
    order; ignore regions are crowd annotations (export writes it, evaluate hands it to pycocotools)."""
    cat = {name: i + 1 for i, name in enumerate(names)}
    images, anns = [], []
    for image_id, (rel, w, h, boxes) in enumerate(entries, 1):
        images.append({"id": image_id, "file_name": Path(rel).name, "width": w, "height": h})
        for a in for_categories(boxes, cat):
            x0, y0, x1, y1 = a["box"]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat[a["label"]],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(a["ignore"]), "synthetic": bool(a["synthetic"])})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": n, "supercategory": n} for n, i in cat.items()]}


def _yolo_box(box, w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]


# the KITTI object devkit's reader (cpp/evaluate_object.cpp) scans each line with
# "%s %lf %d %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf": occluded is an integer; a float there shifts
# every later field. Its values for "unknown": occluded 3, alpha -10, no 3D box -1 -1 -1 / -1000 -1000 -1000
# / -10; DontCare lines carry -1 -1 -10. A source without truncation (not KITTI) gets 0: its box is in the image.
KITTI_UNKNOWN_OCCLUDED = 3


def _kitti_line(a: dict) -> str:
    attrs = json.loads(a["attributes"])
    if a["ignore"]:  # DontCare, as the devkit writes it
        head = ["DontCare", "-1.00", "-1", "-10.00"]
    else:
        # an inserted object is in front of what it hides and inside the image (its box is where it was found)
        occluded = 0 if a["synthetic"] else int(round(float(attrs.get("occluded", KITTI_UNKNOWN_OCCLUDED))))
        truncated = 0.0 if a["synthetic"] else float(attrs.get("truncated", 0.0))
        head = [a["label"].replace(" ", "_"), f"{truncated:.2f}", str(min(max(occluded, 0), 3)),
                f"{float(attrs.get('alpha', -10)):.2f}"]
    tail = [*a["box"], *attrs.get("dimensions_hwl", [-1, -1, -1]),
            *attrs.get("location_xyz", [-1000, -1000, -1000]), attrs.get("rotation_y", -10)]
    return " ".join(head + [f"{float(v):.2f}" for v in tail])


def _kitti_lines(anns: list[dict]) -> str:
    return "".join(_kitti_line(a) + "\n" for a in anns)


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _ladder(row: dict, n: int) -> list[tuple[int, np.ndarray]] | None:
    """N evenly spaced reasoning frames as severities 1..N, or None when SSIM to the source does not fall
    monotonically along them (the trajectory is not a ladder from the clean frame to the edit). The first
    reasoning frame is the source itself and is never a level."""
    frames = stored_trajectory(row)
    if frames is None or len(frames) < n + 1:
        return None
    picks = np.linspace(1, len(frames) - 1, n).round().astype(int)
    src = decode_rgb(row["source_image"]["bytes"])
    values = [ssim(resize_to(src, frames[i].shape[:2]), frames[i]) for i in picks]
    if any(b > a for a, b in zip(values, values[1:])):
        return None
    return [(k + 1, frames[i]) for k, i in enumerate(picks)]


def export_benchmark(dataset: Path, output: Path, fmt: str, where: list[str] = (), severity_ladder: int = 0,
                     echo=print) -> dict:
    """Write the benchmark; returns {split: images} (clean included)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if severity_ladder < 0 or severity_ladder == 1:
        raise UserError(f"--severity-ladder {severity_ladder}: at least 2 levels (0 = off)")
    columns = _COLUMNS + (["reasoning_frames", "reasoning_video"] if severity_ladder else [])
    # kept edits only unless --where says otherwise: a rejected edit is not benchmark data
    rows = scan(dataset, where, columns, BATCH_ROWS, echo, default=["outcome=kept"])
    output = storage.path(output)
    writer = _Writer(output, fmt)
    manifest: list[dict] = []
    sources: dict[str, dict] = {}  # source_id -> its image and its rows' annotations, for the clean split
    skipped = {"no_image": 0, "not_a_ladder": 0}
    for batch in rows:
        for row in batch:
            if row["edited_image"] is None:
                skipped["no_image"] += 1
                continue
            data = row["edited_image"]["bytes"]
            w, h = _size(data)
            split = split_name(row["scenario"], row["edit_id"], row["severity"])
            entry = {"job_id": row["job_id"], "source_id": row["source_id"], "scenario": row["scenario"],
                     "edit_id": row["edit_id"], "severity": row["severity"], "sample_index": row["sample_index"]}
            manifest.append({"split": split, "file": writer.add(split, row["job_id"], data, (w, h),
                                                                row["annotations"]), **entry})
            src = sources.setdefault(row["source_id"], {"image": row["source_image"], "anns": []})
            src["anns"].append(row["annotations"])
            if severity_ladder:
                # only where the labels hold all along: an object being inserted or removed is half there
                changed = any(a["synthetic"] or a["source_box"] is None or '"removed"' in a["attributes"]
                              for a in row["annotations"])
                ladder = None if changed else _ladder(row, severity_ladder)
                if ladder is None:
                    skipped["not_a_ladder"] += 1
                    continue
                for level, frame in ladder:
                    fh, fw = frame.shape[:2]
                    anns = [{**a, "box": scale_box(a["box"], fw / w, fh / h)} for a in row["annotations"]]
                    lsplit = split_name(row["scenario"], row["edit_id"], None, level)
                    rel = writer.add(lsplit, f"{row['job_id']}-l{level}", encode_image(frame, "png"), (fw, fh), anns)
                    manifest.append({"split": lsplit, "file": rel, **entry, "severity": level})
    for source_id, src in sorted(sources.items()):
        data = src["image"]["bytes"]
        w, h = _size(data)
        stem = "src-" + hashlib.sha256(source_id.encode()).hexdigest()[:20]
        rel = writer.add(CLEAN, stem, data, (w, h), source_truth(src["anns"]))
        manifest.append({"split": CLEAN, "file": rel, "job_id": "", "source_id": source_id, "scenario": "",
                         "edit_id": "", "severity": None, "sample_index": None})
    if not manifest:
        raise UserError(f"{dataset}: no rows with an edited image match; nothing to export")
    names = writer.finish()
    buf = io.StringIO()
    fields = ["split", "file", "job_id", "source_id", "scenario", "edit_id", "severity", "sample_index"]
    out = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    out.writeheader()
    out.writerows(manifest)
    _write(output / "manifest.csv", buf.getvalue().encode())
    counts = {split: len(entries) for split, entries in sorted(writer.images.items())}
    echo(f"{sum(counts.values())} image(s) in {len(counts)} split(s) ({fmt}) in {output}; labels: "
         f"{', '.join(names) or 'none'}; skipped: {skipped['no_image']} row(s) without an edited image"
         + (f", {skipped['not_a_ladder']} trajectory(ies) not a ladder (SSIM not falling, or an inserted or "
            "removed object)" if severity_ladder else ""))
    return counts
