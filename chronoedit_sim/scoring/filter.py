"""Keep/reject from score bounds, with a reason for every failed bound, and per-edit statistics."""

from __future__ import annotations

import numpy as np

from ..config import SCORES, FilterConfig


def apply_filter(scores: dict, bounds: FilterConfig, notes: dict | None = None) -> tuple[bool, list[str]]:
    """(keep, reasons). An active bound on a missing score rejects: no silent pass without CLIP.

    `notes` maps a score to why it is undefined (e.g. a zero-length CLIP direction); that text is
    the reason when a bound on it is active.
    """
    notes = notes or {}
    reasons = []
    for name in SCORES:
        for side, op in (("min", "<"), ("max", ">")):
            threshold = getattr(bounds, f"{name}_{side}")
            if threshold is None:
                continue
            value = scores.get(name)
            if name in notes:
                reasons.append(notes[name])
            elif value is None:
                reasons.append(f"{name} unavailable (bound {name}_{side} {threshold:.2f})")
            elif (value < threshold) if side == "min" else (value > threshold):
                reasons.append(f"{name} {value:.2f} {op} {threshold:.2f}")
    return not reasons, list(dict.fromkeys(reasons))


def reason_key(reason: str) -> str:
    """The bound a reason names: "clip_image 0.52 < 0.70" -> "clip_image_min";
    "clip_text unavailable (...)" -> "clip_text_unavailable"."""
    name, rest = reason.split(" ", 1)
    if " < " in rest:
        return f"{name}_min"
    if " > " in rest:
        return f"{name}_max"
    return f"{name}_{rest.split()[0].rstrip(':')}"


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def filter_stats(rows: list[dict]) -> dict:
    """Per "scenario/edit": rows, kept, rejected, failed, rejections by bound, score quantiles."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(f"{row['scenario']}/{row['edit_id']}", []).append(row)
    stats = {}
    for key, members in sorted(groups.items()):
        failed = sum(1 for r in members if r["error"])
        kept = sum(1 for r in members if r["keep"])
        by_reason: dict[str, int] = {}
        for r in members:
            for reason in r["reject_reasons"] or []:
                k = reason_key(reason)
                by_reason[k] = by_reason.get(k, 0) + 1
        distributions = {}
        for name in SCORES:
            values = np.array([r["scores"][name] for r in members if r["scores"] and r["scores"][name] is not None])
            if values.size:
                qs = np.quantile(values, QUANTILES)
                distributions[name] = {"n": int(values.size), "mean": round(float(values.mean()), 4),
                                       **{f"p{int(q * 100):02d}": round(float(v), 4) for q, v in zip(QUANTILES, qs)}}
        stats[key] = {"rows": len(members), "kept": kept, "failed": failed, "rejected": len(members) - kept - failed,
                      "rejected_by": dict(sorted(by_reason.items())), "scores": distributions}
    return stats
