"""evaluate's numbers without Ray: AP recomputed from pycocotools' per-image matches equals pycocotools' own,
mPC / rPC as Michaelis et al. 2019 define them (recomputed here by hand), bootstrap intervals, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perception_helpers import pycocotools_ap

from chronoedit_sim.perception.ap import SplitAP
from chronoedit_sim.perception.evaluate import lines, mpc, refusal, screen, summarize


def _ann(label, box, ignore=False, synthetic=False, removed=False, source=True):
    return {"label": label, "box": list(box), "source_box": list(box) if source else None, "ignore": ignore,
            "synthetic": synthetic, "confidence": None, "occlusion": None,
            "attributes": json.dumps({"edit": "removed"} if removed else {})}


def _random_split(seed: int, n: int = 12):
    """Images with two classes, a crowd region, and noisy detections with tied scores across images."""
    rng = np.random.default_rng(seed)
    images, dets = [], {}
    for i in range(n):
        anns = []
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 60, 2)
            anns.append(_ann(["car", "person"][rng.integers(2)], (x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30))))
        if i % 5 == 0:
            anns.append(_ann("DontCare", (0, 0, 10, 10), ignore=True))
        images.append((f"k{i}", anns))
        dets[f"k{i}"] = [{"label": a["label"], "score": float(rng.choice([0.3, 0.5, 0.9])),
                          "box": [v + rng.normal(0, 3) for v in a["box"]]} for a in anns if not a["ignore"]
                         and rng.random() < 0.8]
        dets[f"k{i}"] += [{"label": "car", "score": 0.5, "box": [70.0, 70.0, 90.0, 90.0]}] * int(rng.random() < 0.4)
    return images, dets


def _pycocotools(images, dets):
    return pycocotools_ap(images, dets)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_from_per_image_matches_equals_pycocotools(seed):
    images, dets = _random_split(seed)
    ap, ap50 = SplitAP(images, dets).ap()
    ref, ref50 = _pycocotools(images, dets)
    assert abs(ap - ref) < 1e-12 and abs(ap50 - ref50) < 1e-12 and 0 < ap < 1


def test_a_resample_weight_is_the_image_repeated():
    """Weight 2 on an image = the split with that image twice, as pycocotools scores it."""
    images, dets = _random_split(3, n=6)
    weights = np.array([2, 0, 1, 1, 3, 1])
    repeated = [(f"{key}#{c}", anns) for (key, anns), w in zip(images, weights) for c in range(w)]
    rdets = {f"{key}#{c}": dets[key] for (key, _), w in zip(images, weights) for c in range(w)}
    assert SplitAP(images, dets).ap(weights)[0] == pytest.approx(_pycocotools(repeated, rdets)[0], abs=1e-9)


def _info(scenario, edit, severity, changes=False, backend="chronoedit"):
    return {"scenario": scenario, "edit_id": edit, "severity": severity, "changes_truth": changes, "backend": backend}


def test_mpc_averages_severities_within_a_corruption_first():
    """Unequal severity sets: rain has 3 levels, fog 1. The paper: mean over corruptions of the mean over
    their severities; a flat mean over the splits weights rain 3:1 and differs."""
    ap = {"clean": 0.8, "rain__r__s1": 0.7, "rain__r__s3": 0.5, "rain__r__s5": 0.3, "fog__f__s2": 0.6,
          "ins__p": 0.1}
    info = {"rain__r__s1": _info("rain", "r", 1), "rain__r__s3": _info("rain", "r", 3),
            "rain__r__s5": _info("rain", "r", 5), "fog__f__s2": _info("fog", "f", 2),
            "ins__p": _info("ins", "p", None, changes=True)}
    paper = ((0.7 + 0.5 + 0.3) / 3 + 0.6) / 2  # 0.55; the flat mean would be 0.525 (0.44 with ins__p)
    got = mpc({k: np.array([v]) for k, v in ap.items()}, info)[0]
    assert got == pytest.approx(paper, abs=1e-15) and got != pytest.approx((0.7 + 0.5 + 0.3 + 0.6) / 4)


def _dataset():
    """Four frames, a darkening at two severities and an insertion; a detector perfect on clean, worse in
    the dark, finding the inserted pedestrian on two of four frames."""
    car = (10, 10, 40, 40)
    ped = (50, 5, 60, 35)
    splits = {"clean": [], "w__d__s1": [], "w__d__s3": [], "ins__p": []}
    dets, frame_of = {}, {}
    for f in range(4):
        clean = f"clean:f{f}"
        splits["clean"].append((clean, [_ann("Car", car)]))
        dets[clean] = [{"box": list(car), "label": "Car", "score": 0.9}]
        frame_of[clean] = clean
        for split, shift in (("w__d__s1", 4 * f), ("w__d__s3", 8 * f)):
            key = f"{split}:f{f}"
            splits[split].append((key, [_ann("Car", car)]))
            dets[key] = [{"box": [car[0] + shift, car[1], car[2] + shift, car[3]], "label": "Car", "score": 0.8}]
            frame_of[key] = clean
        key = f"ins:f{f}"
        splits["ins__p"].append((key, [_ann("Car", car), _ann("Pedestrian", ped, synthetic=True, source=False)]))
        dets[key] = [{"box": list(car), "label": "Car", "score": 0.9}] + (
            [{"box": list(ped), "label": "Pedestrian", "score": 0.7}] if f < 2 else [])
        frame_of[key] = clean
    info = {"w__d__s1": _info("w", "d", 1), "w__d__s3": _info("w", "d", 3), "ins__p": _info("ins", "p", None, True)}
    return splits, info, frame_of, dets


def test_summary_keeps_truth_changing_splits_out_of_mpc_and_gives_intervals():
    splits, info, frame_of, dets = _dataset()
    out = summarize(splits, info, frame_of, dets, "d:f", bootstrap=100, seed=1)
    s = out["splits"]
    want = (s["w__d__s1"]["ap"] + s["w__d__s3"]["ap"]) / 2  # one corruption, two severities
    assert out["clean_ap"] == pytest.approx(1.0) and out["mPC"] == pytest.approx(want, abs=1e-12)
    assert out["rPC"] == pytest.approx(want / out["clean_ap"], abs=1e-12)
    assert set(out["truth_changing"]) == {"ins__p"} and "ins__p" not in out["by_scenario"]
    assert (out["inserted_recall"], out["inserted_objects"]) == (0.5, 4)
    for name in ("clean_ci", "mPC_ci", "rPC_ci"):
        lo, hi = out[name]
        assert lo <= out[name[:-3] if name != "clean_ci" else "clean_ap"] <= hi
    assert out["mPC_ci"][0] < out["mPC_ci"][1]
    again = summarize(splits, info, frame_of, dets, "d:f", bootstrap=100, seed=1)
    assert again["mPC_ci"] == out["mPC_ci"]  # seeded
    assert summarize(splits, info, frame_of, dets, "d:f", bootstrap=0)["mPC_ci"] is None


def test_invalid_detections_are_refused_with_the_reason():
    classes = {"Car"}
    ok = {"box": [1, 1, 5, 5], "label": "Car", "score": 0.5}
    assert refusal([ok], (100, 50), classes) is None
    cases = [({"score": float("nan")}, "not finite"), ({"box": [1, 1, float("inf"), 5]}, "not finite"),
             ({"box": [5, 1, 1, 5]}, "inverted or empty box"), ({"box": [1, 1, 120, 5]}, "outside the 100x50 image"),
             ({"label": "car"}, "an unknown label 'car' (the dataset's classes: Car)")]
    for change, reason in cases:
        assert reason in refusal([ok, {**ok, **change}], (100, 50), classes)
    assert refusal([{**ok, "box": [-4, -2, 104, 52]}], (100, 50), classes) is None  # within 5%
    splits = {"clean": [("a", [_ann("Car", (1, 1, 5, 5))]), ("b", [])]}
    dets, refused = screen(splits, {"a": ([ok], (100, 50)), "b": ([{**ok, "label": "Bus"}], (100, 50))})
    assert list(dets) == ["a"] and refused == ["b: an unknown label 'Bus' (the dataset's classes: Car)"]


def test_the_report_shows_intervals_the_truth_changing_section_and_what_was_not_scored():
    from chronoedit_sim.report.html import evaluation_section

    splits, info, frame_of, dets = _dataset()
    out = summarize(splits, info, frame_of, dets, "d:f", failed=["x: boom"], refused=["y: nan", "z: nan"],
                    bootstrap=20, seed=0)
    page = evaluation_section(out)
    lo, hi = out["mPC_ci"]
    assert f"mPC {out['mPC']:.3f} [{lo:.3f}, {hi:.3f}]" in page and "Intervals: 95%, 20 resamples" in page
    assert "1 image(s) failed and 2 had their detections refused" in page
    assert "<h3>Edits that change the ground truth (not in mPC)</h3>" in page and "<td>2 of 4</td>" in page
    assert page.count("<td>ins__p</td>") == 1  # in its own table only


def test_mpc_per_backend_averages_each_backends_own_corruptions():
    """Two backends over the same frames: each gets Michaelis et al.'s mPC of its own splits, and the overall
    mPC stays the mean over every corruption."""
    splits, info, frame_of, dets = _dataset()
    car = (10.0, 10.0, 40.0, 30.0)
    for split, shift in (("coco_c__fog__s1", 2), ("coco_c__fog__s5", 12), ("coco_c__noise__s2", 6)):
        info[split] = _info("coco_c", split.split("__")[1], int(split[-1]), backend="corruption")
        splits[split] = []
        for f in range(4):
            key = f"{split}:f{f}"
            splits[split].append((key, [_ann("Car", car)]))
            dets[key] = [{"box": [car[0] + shift * f / 3, car[1], car[2] + shift * f / 3, car[3]], "label": "Car",
                          "score": 0.8}]
            frame_of[key] = f"clean:f{f}"
    out = summarize(splits, info, frame_of, dets, "d:f", bootstrap=0)
    s = out["splits"]
    generative = (s["w__d__s1"]["ap"] + s["w__d__s3"]["ap"]) / 2
    corruption = ((s["coco_c__fog__s1"]["ap"] + s["coco_c__fog__s5"]["ap"]) / 2 + s["coco_c__noise__s2"]["ap"]) / 2
    assert out["by_backend"]["chronoedit"]["mPC"] == pytest.approx(generative)
    assert out["by_backend"]["corruption"]["mPC"] == pytest.approx(corruption)
    assert out["by_backend"]["corruption"]["rPC"] == pytest.approx(corruption / out["clean_ap"])
    assert out["mPC"] == pytest.approx((s["w__d__s1"]["ap"] + s["w__d__s3"]["ap"]) / 6
                                       + (s["coco_c__fog__s1"]["ap"] + s["coco_c__fog__s5"]["ap"]) / 6
                                       + s["coco_c__noise__s2"]["ap"] / 3)
    assert generative != pytest.approx(corruption)
    assert any(line.startswith("by backend: chronoedit mPC ") and "; corruption mPC " in line for line in lines(out))
