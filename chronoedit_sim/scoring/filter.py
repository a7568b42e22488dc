"""Keep/reject from score bounds: one structured rejection for every failed bound."""

from __future__ import annotations

from ..config import SCORES, FilterConfig


def rejection(score: str, bound: str, value: float | None, limit: float, text: str) -> dict:
    """One failed bound, as the `reject_reasons` column stores it."""
    return {"score": score, "bound": bound, "value": value, "limit": limit, "text": text}


def apply_filter(scores: dict, bounds: FilterConfig, notes: dict | None = None,
                 names: tuple[str, ...] = SCORES) -> tuple[bool, list[dict]]:
    """(keep, rejections) under the bounds of the scores `names`. An active bound on a missing score rejects:
    no silent pass without CLIP.

    `notes` maps a score to why it is undefined (e.g. a zero-length CLIP direction); that text is
    the rejection's text when a bound on it is active.
    """
    notes = notes or {}
    rejected = []
    for name in names:
        for side, op in (("min", "<"), ("max", ">")):
            limit = getattr(bounds, f"{name}_{side}")
            if limit is None:
                continue
            value = scores.get(name)
            if name in notes:
                # an undefined score is one reason, whichever of its bounds are active
                if not any(r["score"] == name for r in rejected):
                    rejected.append(rejection(name, side, value, limit, notes[name]))
            elif value is None:
                rejected.append(rejection(name, side, None, limit,
                                          f"{name} unavailable (bound {name}_{side} {limit:.2f})"))
            elif (value < limit) if side == "min" else (value > limit):
                rejected.append(rejection(name, side, value, limit, f"{name} {value:.2f} {op} {limit:.2f}"))
    return not rejected, rejected
