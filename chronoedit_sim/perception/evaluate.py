"""The metrics and formats of `chronoedit-sim evaluate` (runtime/evaluate.py runs the detector on Ray): a
user's detector on the clean and edited images of a dataset, as robustness numbers.

The splits are export's: one per (scenario, edit, severity) plus `clean`, each source frame once with its
own labels. AP is COCO's (AP@[.5:.95], pycocotools' matching, ignore regions as crowd), per split.
Robustness is Michaelis et al. 2019, "Benchmarking Robustness in Object Detection" (arXiv:1907.07484,
the COCO-C / Cityscapes-C / Pascal-C definition): a corruption is a scenario's edit, its severities the
levels of the edit's ladder; mPC = mean over corruptions of the mean over their severities of AP, and
rPC = mPC / clean AP. Splits whose edit changes the ground truth (an object inserted, removed or drawn,
or boxes dropped: read from the rows' labels, not from names) are no corruption: they get a section of
their own (AP, inserted recall, removed objects still detected) and never enter mPC. A 95% percentile
interval comes from resampling source frames with replacement (the same frames in every split: the
splits share them), `bootstrap` times. A classifier (one label per image) is scored by accuracy against
its own prediction on the clean frame. Failed images and images whose detections are refused (invalid
numbers, boxes, labels) are counted with their reasons and left out of every number.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import storage
from ..dataset.where import scan
from ..errors import UserError
from .ap import SplitAP
from .export import CLEAN, split_name, source_truth
from .labels import iou

EVAL_FILE = "eval.json"
# what the driver reads to plan the evaluation: no image bytes (the reader tasks fetch those by job_id)
_INDEX_COLUMNS = ["job_id", "source_id", "scenario", "edit_id", "severity", "backend", "annotations", "__filename"]
# how far past the image's edge a box may reach, as a share of its width / height, before it is refused
OUTSIDE_TOLERANCE = 0.05
# the interval's level, and the failure and refusal reasons kept in eval.json
LEVEL, REASONS_KEPT = 0.95, 20


def changes_truth(anns: list[dict], frame_truth: list[dict]) -> bool:
    """Whether an edit's labels are not its frame's: an object inserted or drawn (synthetic), one removed,
    or boxes dropped (the `drop` policy)."""
    if any(a["synthetic"] or json.loads(a["attributes"]).get("edit") == "removed" for a in anns):
        return True
    return sum(a["source_box"] is not None for a in anns) < len(frame_truth)


def build_index(dataset: Path, where: list[str], echo):
    """(reader tasks, one per shard; split -> [(image key, ground truth)]; split -> scenario/edit/severity
    and whether it changes the truth; image key -> its frame's clean key).
    Kept edits only unless --where says otherwise; the clean split has each source frame once."""
    splits: dict[str, list] = defaultdict(list)
    info: dict[str, dict] = {}
    tasks: dict[str, dict] = {}
    sources: dict[str, dict] = {}
    frame_of: dict[str, str] = {}  # image key -> the clean split's key of its frame
    for batch in scan(dataset, where, _INDEX_COLUMNS, 256, echo, default=["outcome=kept"]):
        for row in batch:
            shard = storage.arrow_name(row["__filename"], dataset)  # an object store's key gets its URL back
            task = tasks.setdefault(shard, {"job_id": f"shard:{shard}", "error": None, "shard": shard,
                                            "edited": set(), "clean": set()})
            task["edited"].add(row["job_id"])
            split = split_name(row["scenario"], row["edit_id"], row["severity"])
            info.setdefault(split, {"scenario": row["scenario"], "edit_id": row["edit_id"], "severity": row["severity"],
                                    "backend": row["backend"], "changes_truth": False})
            splits[split].append((row["job_id"], row["annotations"]))
            src = sources.setdefault(row["source_id"], {"anns": [], "job": (row["job_id"], shard)})
            src["anns"].append(row["annotations"])
            src["job"] = min(src["job"], (row["job_id"], shard))  # the frame's image, from one fixed row
            frame_of[row["job_id"]] = row["source_id"]
    if not sources:
        raise UserError(f"{dataset}: no rows match; nothing to evaluate")
    clean_key, truth = {}, {}
    for source_id, src in sorted(sources.items()):
        job_id, shard = src["job"]
        tasks[shard]["clean"].add(job_id)
        clean_key[source_id] = "clean:" + job_id
        truth[source_id] = source_truth(src["anns"])
        splits[CLEAN].append((clean_key[source_id], truth[source_id]))
    for split, images in splits.items():
        if split != CLEAN:
            info[split]["changes_truth"] = any(changes_truth(anns, truth[frame_of[key]]) for key, anns in images)
    frame_of = {job_id: clean_key[source_id] for job_id, source_id in frame_of.items()}
    frame_of.update({key: key for key in clean_key.values()})
    return list(tasks.values()), dict(splits), info, frame_of


def refusal(dets, size: tuple[int, int], classes: set[str]) -> str | None:
    """Why an image's detections cannot be scored (None: they can). A classifier's label is a string."""
    if isinstance(dets, str):
        return None
    w, h = size
    for d in dets:
        box, score = d["box"], d["score"]
        if not all(math.isfinite(v) for v in [*box, score]):
            return f"a detection is not finite: box {box}, score {score}"
        if box[2] <= box[0] or box[3] <= box[1]:
            return f"an inverted or empty box {box} (expected x0 < x1, y0 < y1)"
        tx, ty = OUTSIDE_TOLERANCE * w, OUTSIDE_TOLERANCE * h
        if box[0] < -tx or box[1] < -ty or box[2] > w + tx or box[3] > h + ty:
            return f"a box {box} outside the {w}x{h} image by more than {OUTSIDE_TOLERANCE:.0%} of its size"
        if d["label"] not in classes:
            return f"an unknown label {d['label']!r} (the dataset's classes: {', '.join(sorted(classes))})"
    return None


def screen(splits: dict, results: dict[str, tuple]) -> tuple[dict, list[str]]:
    """(image key -> detections that can be scored, "key: reason" of each image refused) from the
    detector's (detections, image size) per image; a label must be one of the dataset's classes."""
    classes = {a["label"] for images in splits.values() for _, anns in images for a in anns if not a["ignore"]}
    dets, refused = {}, []
    for key, (found, size) in sorted(results.items()):
        reason = refusal(found, size, classes)
        if reason:
            refused.append(f"{key}: {reason}")
        else:
            dets[key] = found
    return dets, refused


def _nanmean(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # all-NaN columns are NaN by intent (no ground truth in that resample)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def mpc(values: dict[str, np.ndarray], info: dict) -> np.ndarray:
    """Michaelis et al. 2019's mPC of per-split values (arrays of the same length: the point estimate or one
    value per resample; NaN = undefined): severities averaged within each corruption (scenario/edit), then
    the corruptions averaged. Splits that change the truth are no corruption and are left out."""
    corruptions = defaultdict(list)
    for split, v in values.items():
        if split != CLEAN and not info[split]["changes_truth"]:
            corruptions[(info[split]["scenario"], info[split]["edit_id"])].append(v)
    if not corruptions:
        return np.full(len(values[CLEAN]), np.nan)
    return _nanmean(np.stack([_nanmean(np.stack(levels)) for levels in corruptions.values()]))


def _interval(samples: np.ndarray) -> list[float] | None:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None
    lo, hi = np.percentile(samples, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return [float(lo), float(hi)]


def _value(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _found(images, dets, pick) -> tuple[int, int]:
    """(objects `pick` selects that a detection of their label covers at IoU >= 0.5, how many there are)."""
    hit = total = 0
    for key, anns in images:
        for a in anns:
            if pick(a):
                total += 1
                hit += any(d["label"] == a["label"] and iou(d["box"], a["box"]) >= 0.5 for d in dets.get(key) or [])
    return hit, total


def _inserted(a) -> bool:
    return a["synthetic"] and not a["ignore"]


def _removed(a) -> bool:
    return json.loads(a["attributes"]).get("edit") == "removed"


def summarize(splits: dict, info: dict, frame_of: dict, dets: dict, spec: str, *, failed: list[str] = (),
              refused: list[str] = (), bootstrap: int = 1000, seed: int = 0) -> dict:
    """eval.json's content from the detections (or a classifier's labels) of the images that were scored:
    `dets` holds those only; failed and refused images are counted, never scored."""
    classifier = any(isinstance(d, str) for d in dets.values())
    scored = {s: [img for img in images if img[0] in dets] for s, images in splits.items()}
    frames = sorted({frame_of[key] for images in scored.values() for key, _ in images})
    column = {f: i for i, f in enumerate(frames)}
    rng = np.random.default_rng(seed)
    # resampled frames' multiplicities: one row per resample, the same frames for every split (paired)
    weights = rng.multinomial(len(frames), np.full(len(frames), 1 / len(frames)), size=bootstrap) if frames else None
    point, samples, per_split = {}, {}, {}
    for split, images in scored.items():
        cols = np.array([column[frame_of[key]] for key, _ in images], dtype=int)
        if classifier:
            hits = np.array([dets[key] == dets.get(frame_of[key]) for key, _ in images], dtype=float)
            measure = lambda w, hits=hits: float(w @ hits / w.sum()) if w.sum() else None  # noqa: E731
            value, ap50 = measure(np.ones(len(images))) if images else None, None
        else:
            ap = SplitAP(images, dets)
            measure = lambda w, ap=ap: ap.ap(w)[0]  # noqa: E731
            value, ap50 = ap.ap()
        point[split] = np.array([np.nan if value is None else value])
        if bootstrap and images:
            samples[split] = np.array([np.nan if (m := measure(w[cols])) is None else m for w in weights])
        else:
            samples[split] = np.full(max(bootstrap, 1), np.nan)
        per_split[split] = {"images": len(images), "unscored": len(splits[split]) - len(images),
                            "value": value, "ap50": ap50, "ci": _interval(samples[split]) if bootstrap else None}
    metric = "accuracy" if classifier else "ap"
    clean = per_split[CLEAN]["value"]
    out = {"detector": spec, "task": "classification" if classifier else "detection",
           "metric": "accuracy vs the clean prediction" if classifier else "COCO AP@[.5:.95] (pycocotools matching)",
           "robustness": "Michaelis et al. 2019 (arXiv:1907.07484): mPC = mean over corruptions (scenario/edit) "
                         "of the mean over its severities; rPC = mPC / clean",
           "bootstrap": {"resamples": bootstrap, "seed": seed, "unit": "source frame (paired across splits)",
                         "level": LEVEL} if bootstrap else None,
           "clean_ap": None if classifier else clean, "clean_ci": per_split[CLEAN]["ci"],
           "splits": {}, "truth_changing": {}, "by_scenario": {}, "by_severity": {},
           "images": sum(len(v) for v in splits.values()), "scored_images": sum(len(v) for v in scored.values()),
           "failed_images": len(failed), "failures": list(failed[:REASONS_KEPT]),
           "refused_images": len(refused), "refusals": list(refused[:REASONS_KEPT])}
    m_point, m_samples = mpc(point, info)[0], mpc(samples, info)
    out["mPC"], out["mPC_ci"] = _value(m_point), _interval(m_samples) if bootstrap else None
    clean_samples = samples[CLEAN]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rPC"] = None if out["mPC"] is None or not clean else out["mPC"] / clean
        out["rPC_ci"] = _interval(m_samples / clean_samples) if bootstrap else None
    # the same numbers per editor backend (a split is one edit's, so one backend's): "harder than COCO-C?"
    out["by_backend"] = {}
    for backend in sorted({v["backend"] for k, v in info.items() if k != CLEAN and not v["changes_truth"]}):
        own = lambda values: {k: v for k, v in values.items() if k == CLEAN or info[k]["backend"] == backend}  # noqa: E731
        b_point, b_samples = _value(mpc(own(point), info)[0]), mpc(own(samples), info)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["by_backend"][backend] = {
                "mPC": b_point, "mPC_ci": _interval(b_samples) if bootstrap else None,
                "rPC": None if b_point is None or not clean else b_point / clean,
                "rPC_ci": _interval(b_samples / clean_samples) if bootstrap else None}
    for split, v in per_split.items():
        entry = {metric: v["value"], "ci": v["ci"], "images": v["images"], "unscored": v["unscored"]}
        if not classifier:
            entry["ap50"] = v["ap50"]
        if split != CLEAN:
            entry.update(info[split])
            entry["drop"] = None if v["value"] is None or clean is None else clean - v["value"]
        out["splits"][split] = entry
        if split != CLEAN and info[split]["changes_truth"] and not classifier:
            ins = _found(scored[split], dets, _inserted)
            rem = _found(scored[split], dets, _removed)
            out["truth_changing"][split] = {"ap": v["value"], "ci": v["ci"], "inserted_found": ins[0],
                                            "inserted": ins[1], "removed_detected": rem[0], "removed": rem[1]}
    for key, field in (("by_scenario", "scenario"), ("by_severity", "severity")):
        groups = defaultdict(list)
        for split, v in out["splits"].items():
            if split != CLEAN and not v["changes_truth"] and v["drop"] is not None:
                groups[str(v[field])].append(v["drop"])
        out[key] = {k: {"mean_drop": sum(d) / len(d)} for k, d in sorted(groups.items())}
    tc = out["truth_changing"].values()
    out["inserted_objects"] = sum(v["inserted"] for v in tc)
    out["inserted_recall"] = (sum(v["inserted_found"] for v in tc) / out["inserted_objects"]
                              if out["inserted_objects"] else None)
    out["removed_objects"] = sum(v["removed"] for v in tc)
    out["removed_detected"] = sum(v["removed_detected"] for v in tc)
    return out


def lines(result: dict) -> list[str]:
    def fmt(v, ci=None):
        text = "n/a" if v is None else f"{v:.3f}"
        return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    metric = "accuracy" if result["task"] == "classification" else "ap"
    boot = result["bootstrap"]
    out = [f"{result['task']}: {result['metric']}; {result['scored_images']} of {result['images']} image(s) scored"
           + (f"; 95% intervals from {boot['resamples']} resamples of the source frames" if boot else ""),
           f"clean {fmt(result['splits'][CLEAN][metric], result['clean_ci'])}  mPC {fmt(result['mPC'], result['mPC_ci'])}"
           f"  rPC {fmt(result['rPC'], result['rPC_ci'])}"]
    if len(result.get("by_backend") or {}) > 1:
        out.append("by backend: " + "; ".join(f"{b} mPC {fmt(v['mPC'], v['mPC_ci'])} rPC {fmt(v['rPC'], v['rPC_ci'])}"
                                              for b, v in result["by_backend"].items()))
    for split, v in sorted(result["splits"].items()):
        if split != CLEAN and not v["changes_truth"]:
            out.append(f"  {split}: {metric} {fmt(v[metric], v['ci'])} (drop {fmt(v['drop'])}, {v['images']} image(s))")
    if result["truth_changing"]:
        out.append("edits that change the ground truth (not in mPC):")
        for split, v in sorted(result["truth_changing"].items()):
            found = [f"inserted found {v['inserted_found']} of {v['inserted']}" if v["inserted"] else "",
                     f"removed still detected {v['removed_detected']} of {v['removed']}" if v["removed"] else ""]
            out.append(f"  {split}: ap {fmt(v['ap'], v['ci'])}" + "".join(f", {x}" for x in found if x))
    if result["inserted_objects"]:
        out.append(f"inserted objects found at IoU 0.5: {fmt(result['inserted_recall'])} of {result['inserted_objects']}")
    return out
