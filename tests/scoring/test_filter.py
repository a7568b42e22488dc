"""Tests for chronoedit_sim.scoring.filter: bounds and their structured rejections.

Pure Python: nothing here loads a model.
"""

from __future__ import annotations

import pytest

from chronoedit_sim.config import SCORES, ConfigLoader, FilterConfig
from chronoedit_sim.scenario import parse_scenario
from chronoedit_sim.scoring import metrics
from chronoedit_sim.scoring import filter as filter_module

NO_BOUNDS = {f"{name}_{side}": None for name in SCORES for side in ("min", "max")}


def bounds(**active) -> FilterConfig:
    """A FilterConfig with only the given bounds active (the defaults switched off)."""
    return FilterConfig(**{**NO_BOUNDS, **active})


def scores(**values) -> dict:
    return {**dict.fromkeys(SCORES, 0.5), **values}


def apply_filter(*args):
    """(keep, the rejections' texts): most tests pin the texts; test_rejections_are_structured the rest."""
    keep, rejections = filter_module.apply_filter(*args)
    return keep, [r["text"] for r in rejections]


def test_rejections_are_structured():
    cfg = bounds(clip_image_min=0.7, ssim_max=0.9, psnr_min=20.0)
    keep, rejections = filter_module.apply_filter(scores(clip_image=0.52, ssim=0.95, psnr=None), cfg)
    assert keep is False
    assert rejections == [
        {"score": "clip_image", "bound": "min", "value": 0.52, "limit": 0.7, "text": "clip_image 0.52 < 0.70"},
        {"score": "ssim", "bound": "max", "value": 0.95, "limit": 0.9, "text": "ssim 0.95 > 0.90"},
        {"score": "psnr", "bound": "min", "value": None, "limit": 20.0,
         "text": "psnr unavailable (bound psnr_min 20.00)"},
    ]


# ---- single bounds ------------------------------------------------------------


def test_example_from_the_docstring():
    cfg = FilterConfig(clip_image_min=0.7, clip_text_min=None, clip_direction_min=None)
    assert apply_filter({"clip_image": 0.52}, cfg) == (False, ["clip_image 0.52 < 0.70"])


@pytest.mark.parametrize("name", SCORES)
def test_below_min_rejects_with_exact_reason(name):
    assert apply_filter(scores(**{name: 0.25}), bounds(**{f"{name}_min": 0.4})) == (False, [f"{name} 0.25 < 0.40"])


@pytest.mark.parametrize("name", SCORES)
def test_above_max_rejects_with_exact_reason(name):
    assert apply_filter(scores(**{name: 0.875}), bounds(**{f"{name}_max": 0.6})) == (False, [f"{name} 0.88 > 0.60"])


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("side", ["min", "max"])
def test_value_on_the_bound_is_kept(name, side):
    assert apply_filter(scores(**{name: 0.4}), bounds(**{f"{name}_{side}": 0.4})) == (True, [])


@pytest.mark.parametrize("name", SCORES)
def test_value_inside_min_and_max_is_kept(name):
    cfg = bounds(**{f"{name}_min": 0.3, f"{name}_max": 0.6})
    assert apply_filter(scores(**{name: 0.45}), cfg) == (True, [])
    assert apply_filter(scores(**{name: 0.61}), cfg) == (False, [f"{name} 0.61 > 0.60"])
    assert apply_filter(scores(**{name: 0.29}), cfg) == (False, [f"{name} 0.29 < 0.30"])


def test_inactive_bounds_ignore_any_value():
    extreme = {name: v for name, v in zip(SCORES, (-5.0, 1e6, -1.0, 99.0, -3.0, 0.0, -1.0, 0.0, 1e9))}
    assert apply_filter(extreme, bounds()) == (True, [])
    # inactive bounds ignore missing scores too
    assert apply_filter({}, bounds()) == (True, [])
    assert apply_filter(dict.fromkeys(SCORES), bounds()) == (True, [])


def test_psnr_bounds_in_db():
    cfg = bounds(psnr_min=20.0, psnr_max=60.0)
    assert apply_filter(scores(psnr=metrics.PSNR_CAP), cfg) == (False, ["psnr 100.00 > 60.00"])
    assert apply_filter(scores(psnr=12.345), cfg) == (False, ["psnr 12.35 < 20.00"])
    assert apply_filter(scores(psnr=35.0), cfg) == (True, [])


def test_negative_values_and_thresholds_are_formatted_with_sign():
    cfg = bounds(clip_direction_min=-0.1)
    assert apply_filter(scores(clip_direction=-0.3), cfg) == (False, ["clip_direction -0.30 < -0.10"])


def test_several_failures_listed_in_scores_order():
    # bounds given in reverse order: the reasons still follow SCORES
    cfg = bounds(flow_warp_error_max=0.1, ssim_max=0.95, clip_direction_min=0.2, clip_text_min=0.3)
    values = scores(clip_text=0.1, clip_direction=0.05, ssim=0.99, flow_warp_error=0.2)
    keep, reasons = apply_filter(values, cfg)
    assert keep is False
    assert reasons == ["clip_text 0.10 < 0.30", "clip_direction 0.05 < 0.20", "ssim 0.99 > 0.95",
                       "flow_warp_error 0.20 > 0.10"]


def test_every_score_failing_at_once_gives_one_reason_each_in_order():
    cfg = bounds(**{f"{name}_min": 0.5 for name in SCORES})
    keep, reasons = apply_filter(dict.fromkeys(SCORES, 0.1), cfg)
    assert keep is False
    assert reasons == [f"{name} 0.10 < 0.50" for name in SCORES]


# ---- defaults -------------------------------------------------------------------


def test_defaults_are_instructpix2pix_bounds():
    cfg = FilterConfig()
    active = {f"{n}_{s}": getattr(cfg, f"{n}_{s}") for n in SCORES for s in ("min", "max")
              if getattr(cfg, f"{n}_{s}") is not None}
    assert active == {"clip_text_min": 0.2, "clip_image_min": 0.7, "clip_direction_min": 0.2}


def test_defaults_keep_a_good_edit():
    good = scores(clip_text=0.25, clip_image=0.8, clip_direction=0.3, ssim=0.1, psnr=5.0, flow_warp_error=0.9)
    assert apply_filter(good, FilterConfig()) == (True, [])


def test_defaults_keep_values_exactly_on_the_bounds():
    assert apply_filter(scores(clip_text=0.2, clip_image=0.7, clip_direction=0.2), FilterConfig()) == (True, [])


def test_defaults_reject_each_bound():
    cfg = FilterConfig()
    base = dict(clip_text=0.25, clip_image=0.8, clip_direction=0.3)
    assert apply_filter(scores(**{**base, "clip_text": 0.19}), cfg) == (False, ["clip_text 0.19 < 0.20"])
    assert apply_filter(scores(**{**base, "clip_image": 0.52}), cfg) == (False, ["clip_image 0.52 < 0.70"])
    assert apply_filter(scores(**{**base, "clip_direction": 0.1}), cfg) == (False, ["clip_direction 0.10 < 0.20"])
    assert apply_filter(scores(clip_text=0.0, clip_image=0.0, clip_direction=0.0), cfg) == (
        False, ["clip_text 0.00 < 0.20", "clip_image 0.00 < 0.70", "clip_direction 0.00 < 0.20"])


def test_defaults_without_clip_reject_every_clip_bound_as_unavailable():
    weight_free = {"ssim": 0.9, "psnr": 30.0, "flow_warp_error": None, **dict.fromkeys(SCORES[:6])}
    assert apply_filter(weight_free, FilterConfig()) == (False, [
        "clip_text unavailable (bound clip_text_min 0.20)",
        "clip_image unavailable (bound clip_image_min 0.70)",
        "clip_direction unavailable (bound clip_direction_min 0.20)",
    ])


# ---- missing scores and notes ---------------------------------------------------------


def test_missing_score_with_active_bound_rejects():
    cfg = bounds(clip_text_min=0.2)
    expected = (False, ["clip_text unavailable (bound clip_text_min 0.20)"])
    assert apply_filter(scores(clip_text=None), cfg) == expected
    # absent from the dict is the same as None
    assert apply_filter({}, cfg) == expected


def test_missing_score_with_active_max_bound_names_the_max():
    assert apply_filter(scores(ssim=None), bounds(ssim_max=0.98)) == (
        False, ["ssim unavailable (bound ssim_max 0.98)"])


def test_missing_score_with_both_bounds_gives_one_reason_per_bound():
    assert apply_filter(scores(psnr=None), bounds(psnr_min=10.0, psnr_max=50.0)) == (
        False, ["psnr unavailable (bound psnr_min 10.00)", "psnr unavailable (bound psnr_max 50.00)"])


def test_missing_score_without_bound_is_kept():
    assert apply_filter(scores(clip_text=None), bounds(clip_image_min=0.1)) == (True, [])


def test_note_replaces_the_numeric_reason():
    cfg = FilterConfig()
    notes = {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    values = scores(clip_text=0.25, clip_image=1.0, clip_direction=0.0)
    assert apply_filter(values, cfg, notes) == (False, ["clip_direction undefined: zero image change"])
    # without the note the same 0.0 is an ordinary failed bound
    assert apply_filter(values, cfg) == (False, ["clip_direction 0.00 < 0.20"])


def test_note_rejects_even_when_the_value_passes():
    notes = {"clip_direction": metrics.REASON_IDENTICAL_CAPTIONS}
    assert apply_filter(scores(clip_direction=0.9), bounds(clip_direction_min=0.2), notes) == (
        False, ["clip_direction undefined: identical captions"])


def test_note_is_listed_once_with_both_bounds_active():
    notes = {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    cfg = bounds(clip_direction_min=0.2, clip_direction_max=0.9)
    assert apply_filter(scores(clip_direction=0.0), cfg, notes) == (False, [metrics.REASON_ZERO_IMAGE_CHANGE])


def test_note_keeps_its_place_in_scores_order():
    notes = {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    cfg = bounds(clip_text_min=0.2, clip_direction_min=0.2, ssim_max=0.98)
    values = scores(clip_text=0.1, clip_direction=0.0, ssim=1.0)
    assert apply_filter(values, cfg, notes) == (False, [
        "clip_text 0.10 < 0.20", "clip_direction undefined: zero image change", "ssim 1.00 > 0.98"])


def test_note_without_an_active_bound_adds_nothing():
    notes = {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    assert apply_filter(scores(clip_direction=0.0), bounds(clip_image_min=0.3), notes) == (True, [])
    assert apply_filter(scores(clip_direction=0.0), bounds(), notes) == (True, [])


def test_apply_filter_does_not_mutate_its_inputs():
    values = scores(clip_text=None)
    notes = {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    before_values, before_notes = dict(values), dict(notes)
    apply_filter(values, FilterConfig(), notes)
    assert values == before_values and notes == before_notes


# ---- scenario and edit overrides -------------------------------------------------------

SCENARIO = """
name: strict_rain
domain: driving
description: rain with a strict image bound, relaxed for one edit
filter: {clip_image_min: 0.9}
edits:
  - id: strict
    prompt: Add rain.
    target_caption: a street in the rain
    source_caption: a street
  - id: relaxed
    prompt: Add heavy rain.
    target_caption: a street in heavy rain
    source_caption: a street
    filter: {clip_image_min: 0.5}
"""


def test_scenario_and_edit_filter_overrides():
    scenario = parse_scenario(SCENARIO)
    loader = ConfigLoader(["model=tiny"])
    strict = loader.build(scenario.config_layers(scenario.edit("strict"))).filter
    relaxed = loader.build(scenario.config_layers(scenario.edit("relaxed"))).filter
    assert (strict.clip_image_min, relaxed.clip_image_min) == (0.9, 0.5)
    # the other defaults stay in force in both
    assert (strict.clip_text_min, strict.clip_direction_min) == (0.2, 0.2)
    assert (relaxed.clip_text_min, relaxed.clip_direction_min) == (0.2, 0.2)
    values = scores(clip_text=0.3, clip_image=0.6, clip_direction=0.3)
    assert apply_filter(values, strict) == (False, ["clip_image 0.60 < 0.90"])
    assert apply_filter(values, relaxed) == (True, [])
    # the base config (no scenario) uses the default 0.7
    assert apply_filter(values, loader.build().filter) == (False, ["clip_image 0.60 < 0.70"])


def test_command_line_filter_beats_scenario_and_edit():
    scenario = parse_scenario(SCENARIO)
    loader = ConfigLoader(["model=tiny", "filter.clip_image_min=0.65"])
    for edit in scenario.edits:
        cfg = loader.build(scenario.config_layers(edit)).filter
        assert apply_filter(scores(clip_text=0.3, clip_image=0.6, clip_direction=0.3), cfg) == (
            False, ["clip_image 0.60 < 0.65"])


def test_edit_can_switch_a_bound_off():
    scenario = parse_scenario(SCENARIO.replace("filter: {clip_image_min: 0.5}", "filter: {clip_image_min: null}"))
    cfg = ConfigLoader(["model=tiny"]).build(scenario.config_layers(scenario.edit("relaxed"))).filter
    assert cfg.clip_image_min is None
    assert apply_filter(scores(clip_text=0.3, clip_image=0.01, clip_direction=0.3), cfg) == (True, [])
