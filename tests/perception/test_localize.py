"""Localisation and label policies with known answers: fake editors paste, darken and erase at known
places; the localize math and stage must find exactly that."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perception_helpers import PASTE_BOX, SCENES, background, fake_darken, fake_erase, fake_insert, ramp, scene

from chronoedit_sim.config import LocalizeConfig
from chronoedit_sim.perception.labels import box_area, carried, intersection, iou
from chronoedit_sim.perception.localize import LocalizeParams, localize
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.stages.localize import LocalizeStage

P = LocalizeParams()


def truth(name: str) -> list[dict]:
    return [{"label": label, "source_box": list(box), "ignore": False, "attributes": {}} for label, box in SCENES[name]]


def boxes(anns):
    return [(a["label"], a["box"], a["ignore"], a["synthetic"]) for a in anns]


@pytest.mark.parametrize("name", sorted(SCENES))
def test_an_inserted_object_is_found_where_it_was_pasted(name):
    src = scene(name)
    anns, scores = localize(src, fake_insert(src), None, truth(name), "keep_and_insert", {"inserted": "pedestrian"},
                            None, P)
    inserted = anns[-1]
    assert (inserted["label"], inserted["synthetic"], inserted["source_box"]) == ("pedestrian", True, None)
    assert iou(inserted["box"], PASTE_BOX) >= 0.9  # the issue asks for 0.7
    assert inserted["confidence"] > 0.9 and json.loads(inserted["attributes"]) == {"edit": "inserted"}
    # the source's boxes are carried unchanged (same size), each with the share the pasted object hides
    assert boxes(anns[:-1]) == [(label, list(map(float, box)), False, False) for label, box in SCENES[name]]
    hidden = [intersection(box, PASTE_BOX) / box_area(box) for _, box in SCENES[name]]
    assert [a["occlusion"] for a in anns[:-1]] == pytest.approx(hidden, abs=0.02)
    pasted = (PASTE_BOX[2] - PASTE_BOX[0]) * (PASTE_BOX[3] - PASTE_BOX[1]) / src.shape[0] / src.shape[1]
    assert scores["change_area"] == pytest.approx(pasted, rel=0.15)
    assert scores["change_outside"] == 0.0  # nothing changed outside the object (its box grown by 10%)


def test_the_trajectory_confirms_the_object_and_a_larger_edited_size_scales_every_box():
    import cv2

    src = scene("000000")
    edited = fake_insert(src)

    def stretched(img):  # the editor's own stretch to its size: here 2x wider, 1.5x taller
        return cv2.resize(img, (192, 96), interpolation=cv2.INTER_NEAREST)

    def scaled(box):
        return [box[0] * 2.0, box[1] * 1.5, box[2] * 2.0, box[3] * 1.5]

    anns, _ = localize(src, stretched(edited), [stretched(f) for f in ramp(src, edited, 7)], truth("000000"),
                       "keep_and_insert", {"inserted": "pedestrian"}, None, P)
    assert iou(anns[-1]["box"], scaled(PASTE_BOX)) >= 0.9
    assert [a["box"] for a in anns[:-1]] == [scaled(box) for _, box in SCENES["000000"]]
    assert [a["source_box"] for a in anns[:-1]] == [list(map(float, box)) for _, box in SCENES["000000"]]


def test_a_global_darkening_is_no_change_and_inserts_nothing():
    src = scene("000001")
    for policy in ("keep", "keep_and_insert"):
        anns, scores = localize(src, fake_darken(src), None, truth("000001"), policy, {"inserted": "car"}, None, P)
        assert boxes(anns) == [("Car", [50.0, 30.0, 90.0, 56.0], False, False)]
        assert scores["change_area"] < 0.01 and scores["change_outside"] < 0.01


def test_an_erased_object_becomes_an_ignore_region_and_the_others_stay():
    src = scene("000002")
    pedestrian = SCENES["000002"][0][1]
    anns, scores = localize(src, fake_erase(src, pedestrian, seed=2), None, truth("000002"), "remove", {}, None, P)
    assert boxes(anns) == [("Pedestrian", [20.0, 10.0, 32.0, 44.0], True, False),
                           ("Car", [56.0, 40.0, 86.0, 60.0], False, False)]
    assert json.loads(anns[0]["attributes"]) == {"edit": "removed"} and anns[0]["confidence"] > 0.5
    assert scores["change_outside"] == 0.0


def test_an_insertion_over_a_source_box_records_how_much_of_it_is_hidden():
    src = scene("000001")  # a car at (50, 30, 90, 56)
    edited = src.copy()
    edited[20:60, 70:86] = (240, 200, 30)  # a pole-like object over the car's right part
    anns, _ = localize(src, edited, None, truth("000001"), "keep_and_insert", {"inserted": "pole"}, None, P)
    car = anns[0]
    # the object covers x 70..86 of the car's 50..90 and y 30..56 of it: 16 x 26 of 40 x 26
    assert car["occlusion"] == pytest.approx(16 * 26 / (40 * 26), abs=0.05)


def test_region_scores_and_the_drop_policy():
    src = scene("000000")
    edited = fake_insert(src)  # pasted at x 36..52 of 96, y 8..40 of 64: the upper middle
    _, inside = localize(src, edited, None, truth("000000"), "keep_and_insert", {"inserted": "x"},
                         (0.3, 0.0, 0.7, 0.8), P)
    _, outside = localize(src, edited, None, truth("000000"), "keep_and_insert", {"inserted": "x"}, "road_ahead", P)
    assert inside["inserted_in_region"] > 0.95
    assert outside["inserted_in_region"] < 0.5  # road_ahead starts at 45% of the height
    anns, scores = localize(src, edited, None, truth("000000"), "drop", {}, None, P)
    assert anns == [] and scores["change_area"] > 0.05


def test_stray_changes_outside_the_object_are_change_outside():
    src = scene("000000")
    edited = fake_insert(src)
    edited[50:60, 80:92] = 255  # an unintended edit far from the object
    _, scores = localize(src, edited, None, truth("000000"), "keep_and_insert", {"inserted": "x"}, None, P)
    assert scores["change_outside"] == pytest.approx(10 * 12 / (96 * 64), rel=0.3)


def _row(src, edited, policy_labels="{}"):
    return {"scenario": "s", "edit_id": "e", "labels": policy_labels, "_source_rgb": src, "_edited_rgb": edited,
            "_reasoning_rgb": None, "_source_annotations": truth("000000"), "timings_ms": {}, "scores": None,
            "annotations": [], "sketch": None, "error": None}


@pytest.mark.parametrize("enabled", [True, False])
def test_the_stage_applies_the_edit_policy_and_can_be_switched_off(enabled):
    src = scene("000000")
    settings = {"s/e": EditSettings(None, None, None, "keep_and_insert", None)}
    stage = LocalizeStage(settings, LocalizeConfig(enabled=enabled), Resources())
    row = stage.process_batch([_row(src, fake_insert(src), '{"inserted": "pedestrian"}')])[0]
    assert row["error"] is None and row["timings_ms"]["localize_ms"] > 0
    if enabled:
        assert [a["label"] for a in row["annotations"]] == ["Car", "Pedestrian", "pedestrian"]
        assert set(row["scores"]) == {"change_area", "change_outside", "inserted_in_region"}
    else:  # the source's boxes only, and no change scores (a bound on them then rejects: no silent pass)
        assert row["annotations"] == carried(truth("000000"), (96, 64), (96, 64)) and row["scores"] is None


def test_background_is_what_the_eraser_paints():
    # the fake eraser's paint is the scene's own background: the removal leaves no trace of its own
    np.testing.assert_array_equal(fake_erase(scene("000001"), SCENES["000001"][0][1], seed=1), background(1))
