"""dataset.stats: the one place that counts rows (run.json, inspect and the report read it). Pure Python."""

from __future__ import annotations

from chronoedit_sim.config import SCORES
from chronoedit_sim.dataset.schema import CALL_FIELDS
from chronoedit_sim.dataset.stats import RunCounts, Tally, outcome
from chronoedit_sim.scoring.filter import rejection


def _row(scenario, edit, keep=False, stage=None, reasons=(), **score_values):
    return {"scenario": scenario, "edit_id": edit, "keep": keep, "error_stage": stage,
            "error": f"{stage}: boom" if stage else None, "reject_reasons": list(reasons),
            "scores": None if stage else {**dict.fromkeys(SCORES), **score_values}}


def _min(score, value, limit):
    return rejection(score, "min", value, limit, f"{score} {value} < {limit}")


def per_edit(rows):
    tally = Tally()
    for row in rows:
        tally.add(row)
    return tally.per_edit()


def test_counts_per_scenario_edit_and_rejections_by_bound():
    rows = [
        _row("rain", "steady", keep=True, clip_image=0.9),
        _row("rain", "steady", keep=True, clip_image=0.8),
        _row("rain", "steady", reasons=[_min("clip_image", 0.52, 0.7)], clip_image=0.52),
        _row("rain", "steady", reasons=[_min("clip_image", 0.1, 0.7), rejection("clip_text", "min", None, 0.2, "x")],
             clip_image=0.1),
        _row("rain", "steady", stage="edit"),
        _row("fog", "day", reasons=[rejection("ssim", "max", 0.99, 0.98, "ssim 0.99 > 0.98")], ssim=0.99),
    ]
    stats = per_edit(rows)
    assert list(stats) == ["fog/day", "rain/steady"]
    rain, fog = stats["rain/steady"], stats["fog/day"]
    keys = ("written", "kept", "rejected", "failed", "rejected_by", "failed_by_stage")
    assert {k: rain[k] for k in keys} == {"written": 5, "kept": 2, "rejected": 2, "failed": 1,
                                          "rejected_by": {"clip_image_min": 2, "clip_text_min": 1},
                                          "failed_by_stage": {"edit": 1}}
    assert {k: fog[k] for k in keys} == {"written": 1, "kept": 0, "rejected": 1, "failed": 0,
                                         "rejected_by": {"ssim_max": 1}, "failed_by_stage": {}}
    # the failed row has no scores: only clip_image has values in rain
    assert list(rain["scores"]) == ["clip_image"] and rain["scores"]["clip_image"]["n"] == 4


def test_quantiles_exact_and_rounded():
    rows = [_row("s", "e", keep=True, clip_image=v, psnr=p) for v, p in
            zip([0.5, 0.1, 0.4, 0.2, 0.3], [10.0, 20.0, 30.0, 40.0, 100.0])]
    stats = per_edit(rows)["s/e"]
    # numpy's linear interpolation over 0.1..0.5: p05 = 0.1 + 0.05 * 4 * 0.1
    assert stats["scores"]["clip_image"] == {"n": 5, "mean": 0.3, "p05": 0.12, "p25": 0.2, "p50": 0.3, "p75": 0.4,
                                             "p95": 0.48}
    assert stats["scores"]["psnr"]["p95"] == 88.0
    thirds = per_edit([_row("s", "e", keep=True, ssim=v) for v in (1 / 3, 2 / 3)])["s/e"]["scores"]["ssim"]
    assert thirds == {"n": 2, "mean": 0.5, "p05": 0.35, "p25": 0.4167, "p50": 0.5, "p75": 0.5833, "p95": 0.65}


def test_failed_is_decided_by_the_stage_column_and_counted_per_stage():
    tally = Tally()
    for stage in ("read", "edit", "edit", "score"):
        tally.add(_row("s", "e", stage=stage))
    assert tally.counts == {"written": 4, "kept": 0, "rejected": 0, "failed": 4}
    assert tally.failed_by_stage == {"edit": 2, "read": 1, "score": 1}
    assert outcome(_row("s", "e", keep=True)) == "kept" and outcome(_row("s", "e")) == "rejected"


def test_a_rejection_on_both_bounds_of_one_score_counts_each_bound_once():
    row = _row("s", "e", reasons=[_min("ssim", 0.1, 0.5), rejection("ssim", "max", 0.1, 0.05, "x"),
                                  _min("ssim", 0.1, 0.5)])
    assert per_edit([row])["s/e"]["rejected_by"] == {"ssim_max": 1, "ssim_min": 1}


def test_empty_and_none_reasons():
    assert Tally().per_edit() == {} and Tally().counts == {"written": 0, "kept": 0, "rejected": 0, "failed": 0}
    row = _row("s", "e", keep=True, ssim=0.5)
    row["reject_reasons"] = None
    assert per_edit([row])["s/e"]["rejected_by"] == {}


def test_run_counts_wrap_a_tally_without_scores():
    counts = RunCounts(planned=5, resumed_skipped=2)
    for row in (_row("s", "e", keep=True, ssim=0.5), _row("s", "e", stage="read"), _row("s", "e")):
        counts.add(row)
    assert counts.failed == 1
    assert counts.as_dict() == {"planned": 5, "resumed_skipped": 2, "written": 3, "kept": 1, "rejected": 1,
                                "failed": 1, "failed_by_stage": {"read": 1},
                                "component_calls": dict.fromkeys(CALL_FIELDS, 0)}
    assert counts.rows.per_edit()["s/e"]["scores"] == {}  # a run's own tally keeps no score values


def test_score_values_and_timings_for_the_report_charts():
    tally = Tally()
    rows = [_row("s", "a", keep=True, ssim=0.5), _row("s", "a", keep=True, ssim=0.7), _row("s", "b", stage="read")]
    rows[0]["timings_ms"] = {"read_ms": 2.0, "total_ms": 30.0, "score_ms": None}
    for row in rows:
        tally.add(row)
    assert tally.score_values() == {"s/a": {"ssim": [0.5, 0.7]}, "s/b": {}}
    assert tally.timings["read_ms"] == [2.0] and tally.timings["total_ms"] == [30.0] and tally.timings["score_ms"] == []
    # planned per edit: an edit with jobs planned and none written still shows
    planned = tally.per_edit({"s/a": 2, "s/b": 1, "s/c": 4})
    assert {k: (v["planned"], v["written"]) for k, v in planned.items()} == {"s/a": (2, 2), "s/b": (1, 1),
                                                                            "s/c": (4, 0)}
