"""The metrics and formats of `chronoedit-sim evaluate` (runtime/evaluate.py runs the detector on Ray): a
user's detector on the clean and edited images of a dataset, as robustness numbers.

The splits are export's: one per (scenario, edit, severity) plus `clean`, each source frame once with its
own labels. AP is COCO's (AP@[.5:.95] by pycocotools, ignore regions as crowd), per split; then, as
COCO-C and KITTI-C report them: mPC = mean AP over the edited splits, rPC = mPC / clean AP, the drop per
scenario and per severity, and the recall of inserted objects at IoU 0.5. A classifier (one label per
image) is scored by accuracy against its own prediction on the clean frame: the share of edits that do
not flip it. Results go to DIR/eval.json, and into the report when it exists.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path

from ..dataset.where import scan
from ..errors import UserError
from .export import CLEAN, coco_dataset, split_name, source_truth
from .labels import iou

EVAL_FILE = "eval.json"
# what the driver reads to plan the evaluation: no image bytes (the reader tasks fetch those by job_id)
_INDEX_COLUMNS = ["job_id", "source_id", "scenario", "edit_id", "severity", "annotations", "__filename"]


def coco_ap(images: list[tuple[str, list[dict]]], detections: dict[str, list[dict]]) -> dict:
    """{"ap", "ap50"} of detections against (key, ground truth) images; None where the split has no
    (non-ignored) ground truth, since AP is undefined there."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = sorted({a["label"] for _, anns in images for a in anns if not a["ignore"]})
    gt = coco_dataset([(key, None, None, anns) for key, anns in images], labels)
    cat = {c["name"]: c["id"] for c in gt["categories"]}
    dets = []
    for image_id, (key, _) in enumerate(images, 1):  # coco_dataset numbers the images 1.. in this order
        for d in detections.get(key) or []:
            if d["label"] in cat:  # a class the ground truth never has cannot be matched or scored
                x0, y0, x1, y1 = d["box"]
                dets.append({"image_id": image_id, "category_id": cat[d["label"]], "bbox": [x0, y0, x1 - x0, y1 - y0],
                             "score": d["score"]})
    if not any(not a["iscrowd"] for a in gt["annotations"]):
        return {"ap": None, "ap50": None}
    if not dets:
        return {"ap": 0.0, "ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth = COCO()
        truth.dataset = gt
        truth.createIndex()
        result = COCOeval(truth, truth.loadRes(dets), "bbox")
        result.evaluate()
        result.accumulate()
        result.summarize()
    return {"ap": max(float(result.stats[0]), 0.0), "ap50": max(float(result.stats[1]), 0.0)}


def inserted_recall(images: list[tuple[str, list[dict]]], detections: dict[str, list[dict]]) -> tuple[float | None, int]:
    """(share of inserted objects found by a detection of their label at IoU >= 0.5, how many there are)."""
    found = total = 0
    for key, anns in images:
        for a in anns:
            if a["synthetic"] and not a["ignore"]:
                total += 1
                found += any(d["label"] == a["label"] and iou(d["box"], a["box"]) >= 0.5
                             for d in detections.get(key) or [])
    return (found / total if total else None), total


def build_index(dataset: Path, where: list[str], echo):
    """(reader tasks, one per shard; split -> [(image key, ground truth)]; split -> scenario/edit/severity;
    image key -> its frame's clean key).
    Kept edits only unless --where says otherwise; the clean split has each source frame once."""
    splits: dict[str, list] = defaultdict(list)
    info: dict[str, dict] = {}
    tasks: dict[str, dict] = {}
    sources: dict[str, dict] = {}
    frame_of: dict[str, str] = {}  # image key -> the clean split's key of its frame
    for batch in scan(dataset, where, _INDEX_COLUMNS, 256, echo, default=["outcome=kept"]):
        for row in batch:
            shard = row["__filename"]
            task = tasks.setdefault(shard, {"job_id": f"shard:{shard}", "error": None, "shard": shard,
                                            "edited": set(), "clean": set()})
            task["edited"].add(row["job_id"])
            split = split_name(row["scenario"], row["edit_id"], row["severity"])
            info.setdefault(split, {"scenario": row["scenario"], "edit_id": row["edit_id"], "severity": row["severity"]})
            splits[split].append((row["job_id"], row["annotations"]))
            src = sources.setdefault(row["source_id"], {"anns": [], "job": (row["job_id"], shard)})
            src["anns"].append(row["annotations"])
            src["job"] = min(src["job"], (row["job_id"], shard))  # the frame's image, from one fixed row
            frame_of[row["job_id"]] = row["source_id"]
    clean_key = {}
    for source_id, src in sorted(sources.items()):
        job_id, shard = src["job"]
        tasks[shard]["clean"].add(job_id)
        clean_key[source_id] = "clean:" + job_id
        splits[CLEAN].append((clean_key[source_id], source_truth(src["anns"])))
    if not sources:
        raise UserError(f"{dataset}: no rows match; nothing to evaluate")
    frame_of = {job_id: clean_key[source_id] for job_id, source_id in frame_of.items()}
    frame_of.update({key: key for key in clean_key.values()})
    return list(tasks.values()), dict(splits), info, frame_of


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(splits: dict, info: dict, frame_of: dict, dets: dict, failed: list[str], spec: str) -> dict:
    """eval.json's content from the detections (or a classifier's labels)."""
    classifier = any(isinstance(d, str) for d in dets.values())
    if classifier:
        per_split = {}
        for split, images in splits.items():
            hits = [dets.get(key) == dets.get(frame_of[key]) for key, _ in images if key in dets]
            per_split[split] = {"accuracy": sum(hits) / len(hits) if hits else None, "images": len(images)}
        metric, clean_value = "accuracy", 1.0
    else:
        per_split = {split: {**coco_ap(images, dets), "images": len(images)} for split, images in splits.items()}
        metric, clean_value = "ap", per_split[CLEAN]["ap"]
    edited = {s: v for s, v in per_split.items() if s != CLEAN}
    for split, v in edited.items():
        v.update(info[split])
        v["drop"] = None if v[metric] is None or clean_value is None else clean_value - v[metric]
    mpc = _mean(v[metric] for v in edited.values())
    out = {"detector": spec, "task": "classification" if classifier else "detection",
           "metric": "accuracy vs the clean prediction" if classifier else "COCO AP@[.5:.95] (pycocotools)",
           "clean_ap": None if classifier else clean_value, "splits": per_split, "mPC": mpc,
           "rPC": None if mpc is None or not clean_value else mpc / clean_value,
           "by_scenario": {}, "by_severity": {}, "inserted_recall": None, "inserted_objects": 0,
           "images": sum(len(v) for v in splits.values()), "failed_images": len(failed), "failures": failed[:20]}
    for key, field in (("by_scenario", "scenario"), ("by_severity", "severity")):
        groups = defaultdict(list)
        for v in edited.values():
            groups[str(v[field])].append(v["drop"])
        out[key] = {k: {"mean_drop": _mean(d)} for k, d in sorted(groups.items())}
    if not classifier:
        everything = [img for split, images in splits.items() if split != CLEAN for img in images]
        out["inserted_recall"], out["inserted_objects"] = inserted_recall(everything, dets)
    return out


def lines(result: dict) -> list[str]:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    metric = "accuracy" if result["task"] == "classification" else "ap"
    out = [f"{result['task']}: {result['metric']}; {result['images']} image(s), {result['failed_images']} failed",
           f"clean {fmt(result['splits'][CLEAN][metric])}  mPC {fmt(result['mPC'])}  rPC {fmt(result['rPC'])}"]
    for split, v in sorted(result["splits"].items()):
        if split != CLEAN:
            out.append(f"  {split}: {metric} {fmt(v[metric])} (drop {fmt(v['drop'])}, {v['images']} image(s))")
    if result["inserted_objects"]:
        out.append(f"inserted objects found at IoU 0.5: {fmt(result['inserted_recall'])} of {result['inserted_objects']}")
    return out
