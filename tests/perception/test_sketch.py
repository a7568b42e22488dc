"""Sketch insertion at a known place: the drawing goes where the job says, at the size its distance gives,
the model edits the drawn frame, and the row's inserted box is the drawn one. Tiny RANDOM-WEIGHT model: its
pixels are noise; placement, drawing and labels are what this checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import stage_rows
from perception_helpers import scene, write_kitti

from chronoedit_sim.config import ConfigError
from chronoedit_sim.perception.sketch import SketchSpec, box_px, draw, load_shape, place
from chronoedit_sim.runtime.pipeline import edit_stage, encode_stage, localize_stage, sketch_stage
from chronoedit_sim.scenario import expand, load_scenario, parse_scenario

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
SPEC = SketchSpec("pedestrian", "road_ahead", height_at_bottom=(0.4, 0.5), height_at_horizon=(0.02, 0.04), horizon=0.45)


def test_a_nearer_object_is_drawn_larger_and_stands_in_the_region():
    far, near = place(SPEC, (0.0, 0.5, 0.5)), place(SPEC, (0.999, 0.5, 0.5))
    assert far["base"] == 0.45 and far["height"] == pytest.approx(0.03)  # at the horizon
    assert near["base"] == pytest.approx(0.99945) and near["height"] == pytest.approx(0.45, abs=1e-3)
    for u in ((0.3, 0.1, 0.0), (0.7, 0.9, 0.999)):
        p = place(SPEC, u)
        assert 0.2 <= p["center_x"] <= 0.8 and 0.45 <= p["base"] <= 1.0  # road_ahead: x 0.2..0.8, y 0.45..1
    # the box keeps the drawing's aspect in pixels whatever the frame's shape
    x0, y0, x1, y1 = box_px(near, 832, 480)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.4) and y1 == pytest.approx(0.99945 * 480)


def test_the_drawing_is_black_strokes_inside_its_box_only():
    src = scene("000000")
    box = [30.0, 10.0, 50.0, 60.0]
    out = draw(src, load_shape("pedestrian"), box)
    ink = np.argwhere((out != src).any(-1))
    assert len(ink) > 50 and (out[tuple(ink.T)] == 0).all()
    assert ink[:, 1].min() >= 30 - 1 and ink[:, 1].max() <= 50 and ink[:, 0].min() >= 10 - 1 and ink[:, 0].max() <= 60
    assert not (src == 0).all(-1).any()  # the input is left as it was


def test_shipped_sketch_scenarios_place_their_jobs_deterministically():
    s = load_scenario(REPO / "scenarios/driving/sketch_pedestrian.yaml")
    jobs = expand(s, "a.png", 0)
    assert [j.sketch for j in jobs] == [
        {"shape": "pedestrian", "center_x": 0.685357, "base": 0.568077, "height": 0.105807, "aspect": 0.4},
        {"shape": "pedestrian", "center_x": 0.48355, "base": 0.830003, "height": 0.268416, "aspect": 0.4}]
    assert expand(s, "a.png", 1)[0].sketch != jobs[0].sketch  # another run seed, another place
    for rel in ("driving/sketch_cone", "robotics/sketch_object"):
        assert all(j.sketch for j in expand(load_scenario(REPO / "scenarios" / f"{rel}.yaml"), "a.png", 0))


def test_a_bad_sketch_is_a_config_error(tmp_path):
    base = ("name: s\ndomain: driving\ndescription: d\nlabels: {inserted: cone}\nedits:\n  - id: e\n    prompt: p\n"
            "    target_caption: t\n    source_caption: s\n    sketch: ")
    for sketch, message in (("{shape: unicorn, height_at_bottom: [0.1, 0.2], height_at_horizon: [0.01, 0.02]}",
                             "sketch.shape: sketch shape 'unicorn': cannot read"),
                            ("{shape: box, height_at_bottom: [0.3, 0.2], height_at_horizon: [0.01, 0.02]}",
                             r"height_at_bottom: expected \[min, max\]")):
        with pytest.raises(ConfigError, match=message):
            parse_scenario(base + sketch)
    bad = tmp_path / "zigzag.txt"
    bad.write_text("0.1,0.1 0.5,1.5\n")
    with pytest.raises(ValueError, match=f"{bad}:1: a stroke is two or more x,y points within 0..1"):
        load_shape("zigzag", tmp_path)


def test_the_model_edits_the_drawn_frame_and_the_row_holds_the_drawn_box(tmp_path, tiny_overrides):
    write_kitti(tmp_path / "kitti")
    rows = stage_rows([REPO / "scenarios/driving/sketch_cone.yaml"], tmp_path / "kitti",
                      [*tiny_overrides, "input.max_frames=1"], [sketch_stage, edit_stage, encode_stage, localize_stage])
    assert len(rows) == 2 and all(r["error"] is None for r in rows)
    for row in rows:
        sketch = json.loads(row["sketch"])
        src, drawn = row["_source_rgb"], row["_edit_input_rgb"]
        x0, y0, x1, y1 = box_px(sketch, src.shape[1], src.shape[0])
        changed = np.argwhere((drawn != src).any(-1))  # only the drawing, only in its box
        assert len(changed) and changed[:, 1].min() >= int(x0) - 1 and changed[:, 1].max() <= x1
        assert row["edit_input_image"]["path"] == "edit_input.png"
        (inserted,) = [a for a in row["annotations"] if a["synthetic"]]
        eh, ew = row["_edited_rgb"].shape[:2]
        assert inserted["label"] == "traffic_cone" and inserted["box"] == pytest.approx(box_px(sketch, ew, eh))
        assert json.loads(inserted["attributes"]) == {"edit": "inserted", "from": "sketch"}
        assert row["scores"]["inserted_in_region"] is None or 0 <= row["scores"]["inserted_in_region"] <= 1
    assert rows[0]["sketch"] != rows[1]["sketch"]  # each sample its own place
