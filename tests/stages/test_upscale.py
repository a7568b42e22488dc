"""upscale.enabled: the Upscaler LoRA's second pass in the edit actor, at the source camera's size (or a
given area), the base edit kept, the labels scaled with it. Tiny RANDOM-WEIGHT model and LoRA: the pixels
are noise; sizes, what is recorded and the labels are what this checks."""

from __future__ import annotations

import pytest

from helpers import stage_rows, write_diffsynth_lora
from perception_helpers import SCENES, write_kitti

from chronoedit_sim.config import ConfigError, load_config
from chronoedit_sim.engine.editor import fit_resolution
from chronoedit_sim.runtime.pipeline import edit_stage, encode_stage, localize_stage


def _run(tmp_path, one_edit_scenario, overrides):
    return stage_rows([one_edit_scenario], tmp_path / "kitti", [*overrides, "input.max_frames=1"],
                      [edit_stage, encode_stage, localize_stage])


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    return write_diffsynth_lora(tmp_path_factory.mktemp("upscaler") / "upsample.safetensors", 5)


def test_the_upscaled_edit_has_the_source_size_and_the_labels_follow(tmp_path, one_edit_scenario, tiny_overrides, lora,
                                                                     editor):
    import numpy as np

    write_kitti(tmp_path / "kitti")
    (row,) = _run(tmp_path, one_edit_scenario, [*tiny_overrides, "upscale.enabled=true", f"upscale.lora={lora}",
                                                 "upscale.num_inference_steps=2"])
    assert row["error"] is None
    base = (row["generation"]["height"], row["generation"]["width"])
    assert base == (96, 144) and row["_edited_base_rgb"].shape[:2] == base  # the model's own resolution
    # the loaded upscaler takes no part in the edit: the base edit is what a model without it makes
    plain = editor.edit(row["_source_rgb"], row["prompt"], seed=row["seed"], gen=load_config(tiny_overrides).generation)
    np.testing.assert_array_equal(row["_edited_base_rgb"], plain.edited)
    assert row["_edited_rgb"].shape == (64, 96, 3)  # the source camera's
    assert row["edited_base_image"]["path"] == "edited_base.png" and row["timings_ms"]["upscale_ms"] > 0
    # the pass is a second pipeline call: its 2 steps x 2 (guidance) forwards add to the edit's 4 x 2
    assert row["component_calls"]["transformer_forwards"] == 8 + 4
    # at the source's size the boxes are the label file's own
    assert [(a["label"], a["box"]) for a in row["annotations"]] == [
        (label, list(map(float, box))) for label, box in SCENES["000000"]]


def test_an_area_instead_of_the_source_size(tmp_path, one_edit_scenario, tiny_overrides, lora):
    write_kitti(tmp_path / "kitti")
    (row,) = _run(tmp_path, one_edit_scenario, [*tiny_overrides, "upscale.enabled=true", f"upscale.lora={lora}",
                                                 "upscale.to_source_size=false", "upscale.max_area=55296",
                                                 "upscale.num_inference_steps=1"])
    w, h = fit_resolution(144, 96, 55296)
    assert row["_edited_rgb"].shape == (h, w, 3) == (192, 288, 3)
    sx = 288 / 96
    assert row["annotations"][0]["box"] == pytest.approx([v * sx for v in SCENES["000000"][0][1]])


def test_an_upscale_without_a_size_is_refused():
    with pytest.raises(ConfigError, match="upscale.max_area: set the upscaled size"):
        load_config(["model=tiny", "model.path=/m", "upscale.enabled=true", "upscale.to_source_size=false"])
