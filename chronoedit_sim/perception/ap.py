"""COCO AP from pycocotools' per-image matches, for any resample of a split's images (the bootstrap).

pycocotools' COCOeval.evaluate() matches each image's detections to its ground truth once (per category,
IoU threshold .50:.05:.95, area "all", 100 detections); accumulate() then pools the images' matches,
sorts them by score and reads precision at 101 recall points. SplitAP runs evaluate() once and redoes
accumulate's arithmetic in numpy with a weight per image: weight 1 everywhere gives pycocotools' AP
(to ~1e-12, tests/perception/test_robustness.py), integer weights give the AP of the split with each
image repeated that many times, which is what an image-resampling bootstrap needs without rerunning
pycocotools per resample (a repeated image's detections are ordered as pycocotools' stable sort orders
the repeated split: tests/perception/test_robustness.py checks it).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from .export import coco_dataset

# pycocotools' recall points (params.recThrs) and the detections kept per image (maxDets[-1])
RECALL = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
MAX_DETS = 100


def coco_inputs(images: list[tuple[str, list[dict]]], detections: dict[str, list[dict]]) -> tuple[dict, list[dict]]:
    """(COCO ground truth, COCO results) of (key, annotations) images, numbered 1.. in their order; the
    categories are the ground truth's (a detection of another label can be neither matched nor scored:
    evaluate refuses such a label before it gets here)."""
    labels = sorted({a["label"] for _, anns in images for a in anns if not a["ignore"]})
    gt = coco_dataset([(key, None, None, anns) for key, anns in images], labels)
    cat = {c["name"]: c["id"] for c in gt["categories"]}
    dets = [{"image_id": i, "category_id": cat[d["label"]], "score": d["score"],
             "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
            for i, (key, _) in enumerate(images, 1) for d in detections.get(key) or [] if d["label"] in cat]
    return gt, dets


class SplitAP:
    """One split's matches; `ap(weights)` is (AP@[.5:.95], AP@.5) of the weighted images, None where no
    (non-ignored) ground truth is left."""

    def __init__(self, images: list[tuple[str, list[dict]]], detections: dict[str, list[dict]]):
        gt, dets = coco_inputs(images, detections)
        n = len(images)
        # per category: non-ignored ground truth per image; detections' image, score, matches and ignores
        self.truth = {c["id"]: np.zeros(n) for c in gt["categories"]}
        for a in gt["annotations"]:
            if not a["iscrowd"]:
                self.truth[a["category_id"]][a["image_id"] - 1] += 1
        self.dets = {}
        if dets and any(t.sum() for t in self.truth.values()):
            self._match(gt, dets)

    def _match(self, gt: dict, dets: list[dict]) -> None:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            truth = COCO()
            truth.dataset = gt
            truth.createIndex()
            ev = COCOeval(truth, truth.loadRes(dets), "bbox")
            # AP@[.5:.95] is area "all"'s: the other area ranges would triple evaluate's time for nothing
            ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], [ev.params.areaRngLbl[0]]
            ev.evaluate()
        p = ev.params
        n_area, n_img = len(p.areaRng), len(p.imgIds)
        all_area = p.areaRngLbl.index("all")
        for k, cat_id in enumerate(p.catIds):
            per_image = [ev.evalImgs[k * n_area * n_img + all_area * n_img + i] for i in range(n_img)]
            found = [(i, e) for i, e in zip(p.imgIds, per_image) if e is not None and len(e["dtScores"])]
            if not found:
                continue
            image = np.concatenate([np.full(len(e["dtScores"][:MAX_DETS]), i - 1) for i, e in found])
            score = np.concatenate([e["dtScores"][:MAX_DETS] for _, e in found])
            match = np.concatenate([e["dtMatches"][:, :MAX_DETS] for _, e in found], axis=1) != 0
            ignore = np.concatenate([e["dtIgnore"][:, :MAX_DETS] for _, e in found], axis=1) != 0
            order = np.argsort(-score, kind="mergesort")  # accumulate's order
            image, score = image[order], score[order]
            # tie groups: detections of one image with one score (a repeated image's copies go group by group)
            group = np.cumsum(np.r_[True, (np.diff(score) != 0) | (np.diff(image) != 0)])
            self.dets[cat_id] = (image, group, match[:, order], ignore[:, order])

    def ap(self, weights: np.ndarray | None = None) -> tuple[float | None, float | None]:
        per_cat = []
        for cat_id, truth in self.truth.items():
            w = np.ones(len(truth)) if weights is None else weights
            positives = float(truth @ w)
            if positives == 0:
                continue  # pycocotools' precision -1: the category does not count
            if cat_id not in self.dets:
                per_cat.append(np.zeros((10, len(RECALL))))
                continue
            image, group, match, ignore = self.dets[cat_id]
            take = _repeated(group, w[image].astype(int))
            tp = np.cumsum(match[:, take] & ~ignore[:, take], axis=1, dtype=float)
            fp = np.cumsum(~match[:, take] & ~ignore[:, take], axis=1, dtype=float)
            per_cat.append(_precision_at_recall(tp, fp, positives))
        if not per_cat:
            return None, None
        stacked = np.stack(per_cat)  # category x IoU threshold x recall point
        return float(stacked.mean()), float(stacked[:, 0].mean())


def _repeated(group: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """Indices of the sorted detections with each repeated `copies` times, in the order pycocotools sorts
    the split with each image repeated: by score, then image, then copy, then the image's own order."""
    take = np.repeat(np.arange(len(group)), copies)
    if (copies <= 1).all():
        return take
    starts = np.cumsum(copies) - copies
    copy = np.arange(len(take)) - np.repeat(starts, copies)
    return take[np.lexsort((take, copy, group[take]))]


def _precision_at_recall(tp: np.ndarray, fp: np.ndarray, positives: float) -> np.ndarray:
    """accumulate()'s interpolated precision (IoU threshold x recall point) of one category."""
    out = np.zeros((tp.shape[0], len(RECALL)))
    if tp.shape[1] == 0:
        return out
    recall = tp / positives
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the envelope from the right
    for t in range(tp.shape[0]):
        idx = np.searchsorted(recall[t], RECALL, side="left")
        ok = idx < tp.shape[1]
        out[t, ok] = precision[t, idx[ok]]
    return out
