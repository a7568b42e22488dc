"""Where an edit changed the frame, without weights: a change mask, the box of what appeared or
disappeared, and the labels the edit leaves.

The edited frame is compared with the source at the edited resolution after a per-channel linear fit
of edited on source (robust: refitted without the worst-fitting pixels), so a global brightness,
contrast or colour change (night, a darker frame) is not a change everywhere; what the fit cannot
explain is. With reasoning frames, a pixel counts as changed only when it is changed in most of the
trajectory's second half too: the object appears along it and stays, noise does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from ..scoring.metrics import resize_to
from .labels import box_area, carried, intersection, record, region_box

# pixels left out of the second fit: the edit itself must not pull the photometric fit towards it
_TRIM = 0.3


@dataclass(frozen=True)
class LocalizeParams:
    # mean absolute difference (0-255, after the photometric fit and blur) above which a pixel changed
    threshold: float = 24.0
    # Gaussian blur sigma in pixels before thresholding: codec noise and texture flicker are not change
    blur_sigma: float = 1.5
    # smallest object box, as a fraction of the frame
    min_area: float = 0.001


def residual(source: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """|edited - (a * source + b)| per pixel, mean over channels, with (a, b) fitted per channel."""
    src = source.reshape(-1, 3).astype(np.float32)
    edt = edited.reshape(-1, 3).astype(np.float32)
    keep = np.ones(len(src), bool)
    for _ in range(2):
        fit = np.empty_like(edt)
        for c in range(3):
            x, y = src[keep, c], edt[keep, c]
            var = x.var()
            a = float(((x - x.mean()) * (y - y.mean())).mean() / var) if var > 1e-6 else 0.0
            fit[:, c] = a * src[:, c] + (y.mean() - a * x.mean())
        err = np.abs(edt - fit).mean(1)
        keep = err <= np.quantile(err, 1 - _TRIM)
    return err.reshape(source.shape[:2])


def change_mask(source: np.ndarray, edited: np.ndarray, p: LocalizeParams) -> np.ndarray:
    err = residual(source, edited)
    smooth = cv2.GaussianBlur(err, (0, 0), p.blur_sigma) if p.blur_sigma > 0 else err
    # changed where the neighbourhood changed (noise does not) and the pixel itself did too (the blur
    # would otherwise grow a high-contrast object by its radius)
    mask = ((smooth > p.threshold) & (err > p.threshold / 2)).astype(np.uint8)
    # opening drops isolated speckles; closing fills the holes inside an object's silhouette
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    return mask.astype(bool)


# trajectory frames that vote: each costs a photometric fit over the frame (about 90 ms at 832x480), and
# 29 reasoning frames would make localize the row's costliest CPU step for little more certainty
_VOTERS = 4


def trajectory_mask(source: np.ndarray, final: np.ndarray, frames: list[np.ndarray], p: LocalizeParams) -> np.ndarray:
    """The final mask, kept where most of the trajectory's second half agrees (up to _VOTERS frames of it,
    evenly spaced)."""
    late = frames[len(frames) // 2:]
    if not late:
        return final
    late = [late[i] for i in np.unique(np.linspace(0, len(late) - 1, min(_VOTERS, len(late))).round().astype(int))]
    votes = np.mean([change_mask(source, resize_to(f, source.shape[:2]), p) for f in late], axis=0)
    return final & (votes >= 0.5)


def object_box(mask: np.ndarray, min_area: float) -> tuple[list[float] | None, float | None]:
    """The largest changed component's box, grown by the components touching it (a shadow, a limb cut
    off by a thin gap); confidence = the share of all changed pixels the box explains."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None, None
    order = 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA])
    h, w = mask.shape
    x, y, bw, bh = (int(v) for v in stats[order[0], :4])
    box = [x, y, x + bw, y + bh]
    for k in order[1:]:
        kx, ky, kw, kh = (int(v) for v in stats[k, :4])
        mx, my = 0.1 * (box[2] - box[0]), 0.1 * (box[3] - box[1])
        grown = (box[0] - mx, box[1] - my, box[2] + mx, box[3] + my)
        if intersection(grown, (kx, ky, kx + kw, ky + kh)) > 0:
            box = [min(box[0], kx), min(box[1], ky), max(box[2], kx + kw), max(box[3], ky + kh)]
    if box_area(box) < min_area * h * w:
        return None, None
    inside = int(mask[box[1]:box[3], box[0]:box[2]].sum())
    return [float(v) for v in box], inside / max(int(mask.sum()), 1)


def _changed_in(mask: np.ndarray, box) -> float:
    """Fraction of the box's pixels that changed."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    part = mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return float(part.mean()) if part.size else 0.0


def localize(source: np.ndarray, edited: np.ndarray, reasoning: list[np.ndarray] | None, source_anns: list[dict],
             policy: str, labels: dict, region, p: LocalizeParams) -> tuple[list[dict], dict]:
    """(the row's annotations, {change_area, change_outside, inserted_in_region}) for one edit."""
    h, w = edited.shape[:2]
    src = resize_to(source, (h, w))
    mask = change_mask(src, edited, p)
    if reasoning is not None and len(reasoning) > 2:
        mask = trajectory_mask(src, mask, list(reasoning[1:-1]), p)
    anns = carried(source_anns, (source.shape[1], source.shape[0]), (w, h))
    scores = {"change_area": float(mask.mean()), "change_outside": None, "inserted_in_region": None}
    allowed = np.zeros_like(mask)
    rbox = region_box(region, w, h) if region is not None else None
    if rbox is not None:
        allowed[int(rbox[1]):int(np.ceil(rbox[3])), int(rbox[0]):int(np.ceil(rbox[2]))] = True
    elif policy in ("keep", "drop"):
        allowed[:] = True  # a whole-frame edit (weather, light) is meant to change everything
    found, confidence = object_box(mask, p.min_area) if policy in ("keep_and_insert", "remove") else (None, None)
    if found is not None and policy == "keep_and_insert":
        for a in anns:
            a["occlusion"] = _changed_in(mask, [max(a["box"][0], found[0]), max(a["box"][1], found[1]),
                                                min(a["box"][2], found[2]), min(a["box"][3], found[3])]) \
                * intersection(a["box"], found) / max(box_area(a["box"]), 1e-9)
        anns.append(record(labels.get("inserted", "object"), found, None, synthetic=True, confidence=confidence,
                           attributes={"edit": "inserted"}))
        if rbox is not None:
            scores["inserted_in_region"] = intersection(found, rbox) / max(box_area(found), 1e-9)
    elif found is not None and policy == "remove":
        # the removed object is the source box the change covers most; failing one, the change's own box
        cover = [(_changed_in(mask, a["box"]) * (intersection(a["box"], found) > 0), i)
                 for i, a in enumerate(anns) if not a["ignore"]]
        best = max(cover, default=(0.0, -1))
        if best[0] >= 0.25:
            gone = anns[best[1]]
            gone.update(ignore=True, confidence=best[0], attributes=_with(gone["attributes"], edit="removed"))
            found = gone["box"]
        else:
            anns.append(record(labels.get("removed", "object"), found, None, ignore=True, confidence=confidence,
                               attributes={"edit": "removed"}))
    if found is not None:
        mx, my = 0.1 * (found[2] - found[0]), 0.1 * (found[3] - found[1])
        allowed[max(int(found[1] - my), 0):int(found[3] + my) + 1, max(int(found[0] - mx), 0):int(found[2] + mx) + 1] = True
    scores["change_outside"] = float((mask & ~allowed).mean())
    return ([] if policy == "drop" else anns), scores


def _with(attributes: str, **extra) -> str:
    return json.dumps({**json.loads(attributes), **extra}, sort_keys=True)
