"""Tests for chronoedit_sim.scenario: the shipped library, validation errors and deterministic expansion.

Pure Python: nothing here loads a model.
"""

from __future__ import annotations

import hashlib
import re
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from chronoedit_sim.config import ConfigError, ConfigLoader
from chronoedit_sim.scenario import (
    expand,
    expand_edit,
    load_scenario,
    make_job_id,
    make_seed,
    parse_scenario,
    stable_hash,
)

REPO = Path(__file__).resolve().parent.parent
SCENARIO_FILES = sorted((REPO / "scenarios").glob("**/*.yaml"))

# scenarios/README.md: the library, with edits x samples, temporal reasoning and scenario labels
LIBRARY = {
    "driving/insert_pedestrian": (
        [("crossing_road", 2), ("on_sidewalk", 1), ("emerging_occluded", 1)],
        True,
        {"inserted": "pedestrian", "actor_class": "pedestrian"},
    ),
    "driving/insert_cyclist": ([("riding_ahead", 2), ("crossing_road", 1)], True, {"inserted": "cyclist", "actor_class": "cyclist"}),
    "driving/insert_vehicle": ([("parked", 2), ("oncoming", 1)], True, {"inserted": "vehicle", "actor_class": "vehicle"}),
    "driving/rain": ([("steady_rain", 2), ("rain_on_windshield", 1)], False, {"condition": "rain"}),
    "driving/snow": ([("snowfall_clear_road", 2), ("snow_covered_road", 1)], False, {"condition": "snow"}),
    "driving/fog": ([("daytime_fog", 2), ("night_fog", 1)], False, {"condition": "fog"}),
    "driving/night": ([("lit_street_night", 2), ("unlit_road_night", 1), ("dusk", 1)], False, {"condition": "night"}),
    "driving/low_sun_glare": ([("sun_ahead", 2), ("sun_from_side", 1)], False, {"condition": "low_sun_glare"}),
    "driving/wet_road": ([("wet_after_rain", 2), ("standing_puddles", 1)], False, {"condition": "wet_road"}),
    "robotics/add_distractor_object": (
        [("single_distractor", 2), ("clutter", 1), ("lookalike_distractor", 1)],
        True,
        {"inserted": "distractor_object"},
    ),
    "robotics/remove_object": ([("remove_one", 2), ("remove_all_but_target", 1)], True, {"removed": "object"}),
    "robotics/change_lighting": (
        [("colour_and_direction", 2), ("dim_light", 1), ("hard_spotlight", 1)],
        False,
        {"changed": "lighting"},
    ),
    "robotics/change_table_surface": ([("new_material", 2), ("tablecloth", 1)], False, {"changed": "table_surface"}),
    "robotics/add_occluder": ([("human_hand", 2), ("foreground_object", 1)], True, {"inserted": "occluder"}),
    "driving/sketch_pedestrian": ([("on_road", 2)], False, {"inserted": "pedestrian", "actor_class": "pedestrian"}),
    "driving/sketch_cone": ([("on_road", 2)], False, {"inserted": "traffic_cone"}),
    "robotics/sketch_object": ([("bottle", 1), ("mug", 1), ("box", 1)], False, {"inserted": "distractor_object"}),
}

SOURCES = [f"cam_front/{i:06d}.jpg" for i in range(5)] + ["episode_3/wrist/000017.png"]

# a small inline scenario used for determinism and pinned values
RAIN = """\
name: rain
domain: driving
description: "Rain."
labels: {condition: rain, lens_droplets: unknown}
edits:
  - id: steady_rain
    prompt: "Make it rain {intensity} under {sky}."
    vars:
      intensity: {lightly: 1, steadily: 2, heavily: 1}
      sky: ["a grey sky", "dark clouds", "a white sky"]
    target_caption: "a street in the {intensity} rain"
    source_caption: "a dry street"
    samples: 2
    labels: {lens_droplets: false}
  - id: rain_on_windshield
    prompt: "Add {droplets} on the windshield."
    vars:
      droplets: [small droplets, large drops]
    target_caption: "rain on a windshield"
    source_caption: "a dry street"
"""


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO / "scenarios").with_suffix(""))


@pytest.fixture(scope="module")
def tiny_loader():
    return ConfigLoader(["model=tiny"])


# --------------------------------------------------------------------------- shipped library


def test_library_has_the_readme_scenarios():
    assert len(SCENARIO_FILES) >= 14
    assert set(LIBRARY) <= {_rel(p) for p in SCENARIO_FILES}


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=_rel)
def test_shipped_scenario_loads_builds_and_expands(path, tiny_loader):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.domain == path.parent.name
    assert scenario.path == str(path)
    assert scenario.sha256 == hashlib.sha256(path.read_text().encode()).hexdigest()
    # a benchmark's ladder (coco_c: 15 corruptions) aside, a scenario is a few edits
    assert 1 <= len(scenario.edits) <= (15 if scenario.backend == "corruption" else 3)
    # every shipped scenario states what its draws are shared across (a sketch's placement and a COCO-C
    # corruption's noise: per frame, as the benchmark draws it)
    assert re.search(r"^consistent_across: (sequence|frame)$", path.read_text(), re.M)
    for edit in scenario.edits:
        assert edit.consistent_across == ("frame" if edit.sketch or edit.corruption else "sequence")
        cfg = tiny_loader.build(scenario.config_layers(edit))
        assert cfg.model.preset == "tiny"
        assert cfg.generation.num_inference_steps == 4  # no shipped scenario overrides sampler settings
        for choices in edit.vars.values():
            for choice, weight in choices:
                assert "{" not in choice and "}" not in choice, (edit.id, choice)
                assert weight > 0
    for run_seed in (0, 1):
        for source in SOURCES:
            jobs = expand(scenario, source, run_seed)
            assert len(jobs) == sum(e.samples for e in scenario.edits)
            for job in jobs:
                for text in (job.prompt, job.target_caption, job.source_caption, job.negative_prompt):
                    assert "{" not in text and "}" not in text, (job.edit_id, text)
                assert job.prompt.strip()
                assert set(job.choices) == set(scenario.edit(job.edit_id).vars)


@pytest.mark.parametrize("rel", sorted(LIBRARY))
def test_shipped_scenario_matches_readme_table(rel, tiny_loader):
    edits, reasoning, labels = LIBRARY[rel]
    scenario = load_scenario(REPO / "scenarios" / f"{rel}.yaml")
    assert [(e.id, e.samples) for e in scenario.edits] == edits
    assert scenario.labels == labels
    assert len(expand(scenario, "frame.png", 0)) == sum(n for _, n in edits)
    for edit in scenario.edits:
        cfg = tiny_loader.build(scenario.config_layers(edit))
        assert cfg.generation.temporal_reasoning is reasoning
        if reasoning:
            # README: local edits reason for 10 steps and guard the trajectory
            assert cfg.generation.reasoning_steps == 10
            assert cfg.filter.trajectory_min_adjacent_min == 0.8
            assert cfg.filter.clip_direction_min == 0.1


def test_readme_edit_labels():
    vehicle = load_scenario(REPO / "scenarios/driving/insert_vehicle.yaml")
    assert {e.id: e.labels["vehicle_state"] for e in vehicle.edits} == {"parked": "parked", "oncoming": "oncoming"}
    rain = load_scenario(REPO / "scenarios/driving/rain.yaml")
    jobs = expand(rain, "f.png", 0)
    assert [j.labels for j in jobs] == [
        {"condition": "rain", "lens_droplets": False},
        {"condition": "rain", "lens_droplets": False},
        {"condition": "rain", "lens_droplets": True},
    ]


def test_shipped_rain_edit_filter_overrides_scenario(tiny_loader):
    rain = load_scenario(REPO / "scenarios/driving/rain.yaml")
    steady = tiny_loader.build(rain.config_layers(rain.edit("steady_rain")))
    windshield = tiny_loader.build(rain.config_layers(rain.edit("rain_on_windshield")))
    assert steady.filter.clip_image_min == 0.75
    assert windshield.filter.clip_image_min == 0.7
    assert steady.filter.clip_direction_min == windshield.filter.clip_direction_min == 0.2  # from default.yaml


# --------------------------------------------------------------------------- validation errors


def _base() -> dict:
    return {
        "name": "demo",
        "domain": "driving",
        "description": "Add one person.",
        "edits": [
            {
                "id": "a",
                "prompt": "add {age} person",
                "vars": {"age": ["a young", "an old"]},
                "target_caption": "a street with a person",
                "source_caption": "a street",
            }
        ],
    }


def _write(tmp_path: Path, data, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _load_error(tmp_path: Path, data, name: str = "demo") -> tuple[Path, str]:
    path = _write(tmp_path, data, name)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return path, str(info.value)


def test_base_scenario_is_valid(tmp_path):
    scenario = load_scenario(_write(tmp_path, _base()))
    assert scenario.name == "demo"
    assert scenario.edits[0].vars == {"age": (("a young", 1.0), ("an old", 1.0))}
    assert scenario.edits[0].samples == 1
    assert scenario.edits[0].negative_prompt == ""


def test_template_variable_without_choices(tmp_path):
    data = _base()
    del data["edits"][0]["vars"]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].prompt: template variable {{age}} has no choices in vars"


@pytest.mark.parametrize("key", ["target_caption", "source_caption", "negative_prompt"])
def test_template_variable_in_other_templates(tmp_path, key):
    data = _base()
    data["edits"][0][key] = "with {colour}"
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].{key}: template variable {{colour}} has no choices in vars"


def test_variable_used_only_in_caption_counts_as_used(tmp_path):
    data = _base()
    data["edits"][0]["vars"]["colour"] = ["red"]
    data["edits"][0]["target_caption"] = "a street with a person in {colour}"
    job = expand(load_scenario(_write(tmp_path, data)), "f.png", 0)[0]
    assert job.target_caption == "a street with a person in red"
    assert job.choices["colour"] == "red"


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("add {age!r} person", "placeholder {age} must be a plain lower-case name"),
        ("add {age:>5} person", "placeholder {age} must be a plain lower-case name"),
        ("add {Age} person", "placeholder {Age} must be a plain lower-case name"),
        ("add {} person", "placeholder {} must be a plain lower-case name"),
        ("add {age person", "bad template: "),
    ],
)
def test_bad_placeholders(tmp_path, prompt, expected):
    data = _base()
    data["edits"][0]["prompt"] = prompt
    path, msg = _load_error(tmp_path, data)
    assert msg.startswith(f"{path}: edits[0].prompt: {expected}")


def test_unknown_top_level_key(tmp_path):
    data = _base()
    data["colour"] = "red"
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: colour: unknown key (allowed: annotations, backend, class_names, consistent_across, description, domain, edits, filter, generation, labels, name)"


def test_unknown_edit_key(tmp_path):
    data = _base()
    data["edits"][0]["promt"] = "typo"
    path, msg = _load_error(tmp_path, data)
    assert msg == (
        f"{path}: edits[0].promt: unknown key (allowed: annotations, backend, consistent_across, corruption, filter, generation, id, "
        "labels, negative_prompt, prompt, region, samples, severity, sketch, source_caption, target_caption, vars)"
    )


def test_duplicate_edit_id(tmp_path):
    data = _base()
    data["edits"].append(dict(data["edits"][0]))
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[1].id: duplicate edit id 'a'"


@pytest.mark.parametrize("empty", [[], {}])
def test_empty_choice_list(tmp_path, empty):
    data = _base()
    data["edits"][0]["vars"]["age"] = empty
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].vars.age: empty choice list"


@pytest.mark.parametrize("weight, shown", [(0, "0"), (-1, "-1"), (-0.5, "-0.5"), ("x", "'x'"), (True, "True"), (None, "None")])
def test_non_positive_weight(tmp_path, weight, shown):
    data = _base()
    data["edits"][0]["vars"]["age"] = {"a young": 1, "an old": weight}
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].vars.age: weight of 'an old' must be a positive number, got {shown}"


@pytest.mark.parametrize("weight", [".nan", ".inf"])
def test_non_finite_weight_rejected(tmp_path, weight):
    text = yaml.safe_dump(_base(), sort_keys=False).replace(
        "    age:\n    - a young\n    - an old\n", f"    age: {{a young: 1, an old: {weight}}}\n"
    )
    assert weight in text
    path, msg = _load_error(tmp_path, text)
    assert msg.startswith(f"{path}: edits[0].vars.age: weight of 'an old' must be a positive number")


def test_bool_choice_rejected(tmp_path):
    # YAML turns bare yes/no into booleans (README pitfall)
    path = _write(tmp_path, yaml.safe_dump(_base(), sort_keys=False).replace("- a young", "- yes"))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: edits[0].vars.age: choice True must be a string or number"


def test_choices_not_list_or_mapping(tmp_path):
    data = _base()
    data["edits"][0]["vars"]["age"] = "young"
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].vars.age: choices must be a list or a mapping choice -> weight"


def test_vars_not_a_mapping(tmp_path):
    data = _base()
    data["edits"][0]["vars"] = ["age"]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].vars: expected a mapping of variable -> choices"


def test_bad_domain(tmp_path):
    data = _base()
    data["domain"] = "space"
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: domain: 'space' is not one of driving, robotics"


def test_name_differs_from_file_stem(tmp_path):
    path, msg = _load_error(tmp_path, _base(), name="other")
    assert msg == f"{path}: name: 'demo' differs from the file name 'other'"


@pytest.mark.parametrize("name", ["Demo", "de-mo", "de mo"])
def test_bad_name(tmp_path, name):
    data = _base()
    data["name"] = name
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: name: {name!r} must match [a-z0-9_]+"


@pytest.mark.parametrize("edit_id", ["A", "has-dash", "has space"])
def test_bad_edit_id(tmp_path, edit_id):
    data = _base()
    data["edits"][0]["id"] = edit_id
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].id: {edit_id!r} must match [a-z0-9_]+"


def test_edit_id_with_trailing_newline_rejected(tmp_path):
    data = _base()
    data["edits"][0]["id"] = "a\n"
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].id: 'a\\n' must match [a-z0-9_]+"


@pytest.mark.parametrize("key", ["name", "domain", "description", "edits"])
def test_missing_required_top_level_key(tmp_path, key):
    data = _base()
    del data[key]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: {key}: missing required value"


def test_empty_description_is_missing(tmp_path):
    data = _base()
    data["description"] = ""
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: description: missing required value"


@pytest.mark.parametrize("key", ["id", "prompt", "target_caption", "source_caption"])
def test_missing_required_edit_key(tmp_path, key):
    data = _base()
    del data["edits"][0][key]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].{key}: missing required value"


def test_error_names_the_right_edit_index(tmp_path):
    data = _base()
    second = dict(data["edits"][0], id="b")
    del second["source_caption"]
    data["edits"].append(second)
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[1].source_caption: missing required value"


@pytest.mark.parametrize("edits", [[], "a"])
def test_edits_must_be_a_non_empty_list(tmp_path, edits):
    data = _base()
    data["edits"] = edits
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits: expected a non-empty list"


def test_edit_not_a_mapping(tmp_path):
    data = _base()
    data["edits"].append("b")
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[1]: expected a mapping"


@pytest.mark.parametrize("samples, shown", [(0, "0"), (-1, "-1"), (1.5, "1.5"), (True, "True"), ("2", "'2'")])
def test_bad_samples(tmp_path, samples, shown):
    data = _base()
    data["edits"][0]["samples"] = samples
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].samples: must be an integer >= 1, got {shown}"


def test_unused_variable(tmp_path):
    data = _base()
    data["edits"][0]["vars"]["colour"] = ["red", "blue"]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].vars.colour: variable is never used in a template"


def test_template_not_a_string(tmp_path):
    data = _base()
    data["edits"][0]["negative_prompt"] = ["blurry"]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].negative_prompt: expected a string"


@pytest.mark.parametrize("key", ["labels", "generation", "filter"])
def test_section_not_a_mapping(tmp_path, key):
    data = _base()
    data[key] = [1]
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: {key}: expected a mapping, got list"
    data = _base()
    data["edits"][0][key] = "x"
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: edits[0].{key}: expected a mapping, got str"


def test_a_non_utf8_or_binary_scenario_is_one_line(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_bytes(b"name: d\xe9mo\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: not a scenario: not UTF-8 text (byte 0xe9 at offset 7)"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=f"{path}: not a scenario: not UTF-8 text"):
        load_scenario(path)


def test_a_key_given_twice_is_refused(tmp_path):
    path, msg = _load_error(tmp_path, "name: demo\ndomain: driving\ndomain: robotics\ndescription: x\nedits: []\n")
    assert msg == f"{path}: line 3: domain: the key is given twice"


def test_an_alias_bomb_in_labels_is_refused_before_it_expands(tmp_path):
    bomb = "".join(f"l{i + 1}: &l{i + 1} [*l{i}, *l{i}, *l{i}, *l{i}, *l{i}, *l{i}, *l{i}, *l{i}, *l{i}]\n"
                   for i in range(12))
    text = (f"name: demo\ndomain: driving\ndescription: x\nlabels:\n  l0: &l0 [a]\n"
            + "".join(f"  {line}" for line in bomb.splitlines(True)) + "edits: []\n")
    path, msg = _load_error(tmp_path, text)
    assert msg == f"{path}: its aliases (*name) expand to more than 100,000 values: not a scenario"
    data = _base()
    data["labels"] = {"inserted": ["a", "list"]}
    path, msg = _load_error(tmp_path, data)
    assert msg == f"{path}: labels.inserted: a label value is a string or a number, got list"
    shared = _base()
    shared["edits"].append({**shared["edits"][0], "id": "b"})
    shared["edits"][1]["vars"] = shared["edits"][0]["vars"]  # PyYAML writes a shared value as an alias
    assert "*id001" in yaml.safe_dump(shared)
    assert load_scenario(_write(tmp_path, shared)).edits[1].vars == load_scenario(_write(tmp_path, _base())).edits[0].vars


def test_invalid_yaml(tmp_path):
    path, msg = _load_error(tmp_path, "name: demo\nedits: [\n  - id: a\n")
    assert msg.startswith(f"{path}: not valid YAML: ")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_not_a_mapping(tmp_path, text):
    path, msg = _load_error(tmp_path, text)
    assert msg == f"{path}: a scenario is a mapping with name, domain, description and edits"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: cannot read scenario: No such file or directory"


def test_parse_scenario_default_path_in_errors():
    with pytest.raises(ConfigError) as info:
        parse_scenario("name: demo\n")
    assert str(info.value) == "<string>: domain: missing required value"


# --------------------------------------------------------------------------- config layers


def test_invalid_generation_override_fails_at_build(tmp_path, tiny_loader):
    data = _base()
    data["generation"] = {"num_inference_step": 8}  # typo
    path = _write(tmp_path, data)
    scenario = load_scenario(path)  # the scenario schema does not know config keys
    with pytest.raises(ConfigError) as info:
        tiny_loader.build(scenario.config_layers(scenario.edits[0]))
    assert str(info.value).startswith(
        f"{path}: generation.num_inference_step: Key 'num_inference_step' not in 'GenerationConfig'"
    )


def test_invalid_edit_override_names_the_edit(tmp_path, tiny_loader):
    data = _base()
    data["edits"].append(dict(data["edits"][0], id="b", filter={"clip_img_min": 0.5}))
    path = _write(tmp_path, data)
    scenario = load_scenario(path)
    tiny_loader.build(scenario.config_layers(scenario.edits[0]))  # edit a is fine
    with pytest.raises(ConfigError) as info:
        tiny_loader.build(scenario.config_layers(scenario.edit("b")))
    assert str(info.value).startswith(f"{path}: edits[1]: filter.clip_img_min: Key 'clip_img_min' not in 'FilterConfig'")


def test_invalid_generation_value_names_the_scenario(tmp_path, tiny_loader):
    data = _base()
    data["generation"] = {"num_frames": 6}
    path = _write(tmp_path, data)
    scenario = load_scenario(path)
    with pytest.raises(ConfigError) as info:
        tiny_loader.build(scenario.config_layers(scenario.edits[0]))
    assert str(info.value) == (
        f"{path}: generation.num_frames: 6 must be 1 + 4k with k >= 1 (the VAE's 4x time compression)"
    )


def test_config_layers_and_merge_order(tmp_path):
    data = _base()
    data["generation"] = {"num_inference_steps": 3, "temporal_reasoning": True}
    data["filter"] = {"ssim_min": 0.5}
    data["edits"].append(dict(data["edits"][0], id="b", generation={"num_inference_steps": 6}))
    path = _write(tmp_path, data)
    scenario = load_scenario(path)
    a, b = scenario.edits
    assert scenario.config_layers(a) == [
        (str(path), {"generation": {"num_inference_steps": 3, "temporal_reasoning": True}, "filter": {"ssim_min": 0.5}})
    ]
    assert scenario.config_layers(b) == [
        (str(path), {"generation": {"num_inference_steps": 3, "temporal_reasoning": True}, "filter": {"ssim_min": 0.5}}),
        (f"{path}: edits[1]", {"generation": {"num_inference_steps": 6}}),
    ]
    loader = ConfigLoader(["model=tiny"])
    assert loader.build(scenario.config_layers(a)).generation.num_inference_steps == 3  # scenario over preset
    cfg_b = loader.build(scenario.config_layers(b))
    assert cfg_b.generation.num_inference_steps == 6  # edit over scenario
    assert cfg_b.generation.temporal_reasoning is True
    assert cfg_b.filter.ssim_min == 0.5
    cli = ConfigLoader(["model=tiny", "generation.num_inference_steps=7"])
    assert cli.build(scenario.config_layers(b)).generation.num_inference_steps == 7  # command line over all


def test_no_config_layers_without_overrides(tmp_path):
    scenario = load_scenario(_write(tmp_path, _base()))
    assert scenario.config_layers(scenario.edits[0]) == []


def test_parsed_scenario_layer_source_is_the_name():
    scenario = parse_scenario(RAIN.replace("labels: {condition", "generation: {flow_shift: 1.5}\nlabels: {condition"))
    assert scenario.path == "<string>"
    assert scenario.config_layers(scenario.edits[0]) == [("<string>", {"generation": {"flow_shift": 1.5}})]


def test_edit_lookup():
    scenario = parse_scenario(RAIN, "rain.yaml")
    assert scenario.edit("rain_on_windshield") is scenario.edits[1]
    with pytest.raises(KeyError, match="rain: no edit 'zzz'"):
        scenario.edit("zzz")


def test_weighted_vars_parsed_in_file_order():
    scenario = parse_scenario(RAIN, "rain.yaml")
    assert scenario.edits[0].vars == {
        "intensity": (("lightly", 1.0), ("steadily", 2.0), ("heavily", 1.0)),
        "sky": (("a grey sky", 1.0), ("dark clouds", 1.0), ("a white sky", 1.0)),
    }
    assert scenario.text == RAIN
    assert scenario.sha256 == hashlib.sha256(RAIN.encode()).hexdigest()


# --------------------------------------------------------------------------- expansion


def test_expansion_structure():
    scenario = parse_scenario(RAIN, "rain.yaml")
    jobs = expand(scenario, "cam/000.png", 0)
    assert [(j.scenario, j.edit_id, j.sample_index, j.source_id) for j in jobs] == [
        ("rain", "steady_rain", 0, "cam/000.png"),
        ("rain", "steady_rain", 1, "cam/000.png"),
        ("rain", "rain_on_windshield", 0, "cam/000.png"),
    ]
    for job in jobs:
        edit = scenario.edit(job.edit_id)
        assert job.job_id == make_job_id("rain", job.edit_id, job.sample_index, "cam/000.png")
        assert job.seed == make_seed(0, job.job_id)
        assert job.prompt == edit.prompt.format(**job.choices)
        assert job.target_caption == edit.target_caption.format(**job.choices)
        assert job.source_caption == "a dry street"
        assert job.negative_prompt == ""
    # the same draw fills prompt and target caption
    assert jobs[0].target_caption == f"a street in the {jobs[0].choices['intensity']} rain"


def test_pinned_hash_values():
    # Changing the hashing scheme changes every job id and seed and breaks resuming existing datasets.
    job_id = make_job_id("rain", "steady_rain", 0, "cam/000.png")
    assert job_id == "1b0df25d6b59b2ad8f6f"
    assert make_seed(0, job_id) == 2833888376358193983
    assert make_seed(1, job_id) == 3617073367003179884
    assert stable_hash("a", 1).hex() == hashlib.sha256(b"a\x1f1").hexdigest()


def test_pinned_expansion():
    jobs = expand(parse_scenario(RAIN, "rain.yaml"), "cam/000.png", 0)
    assert [(j.job_id, j.seed, j.prompt, j.choices) for j in jobs] == [
        (
            "1b0df25d6b59b2ad8f6f",
            2833888376358193983,
            "Make it rain heavily under dark clouds.",
            {"intensity": "heavily", "sky": "dark clouds"},
        ),
        (
            "55b0ce64da0139f103f7",
            2645047315119433017,
            "Make it rain heavily under a grey sky.",
            {"intensity": "heavily", "sky": "a grey sky"},
        ),
        ("b6f0fd71d9736f6f2ece", 6878993986742974978, "Add small droplets on the windshield.", {"droplets": "small droplets"}),
    ]


def test_stable_hash_separates_parts():
    assert stable_hash("ab", "c") != stable_hash("a", "bc")
    assert stable_hash("a", 1) == stable_hash("a", "1")


def test_seed_range():
    seeds = [make_seed(s, make_job_id("rain", "steady_rain", i, "f.png")) for s in range(20) for i in range(20)]
    assert all(0 <= s < 2**63 for s in seeds)
    assert max(seeds) >= 2**62  # uses the 63 bits, not fewer
    assert len(set(seeds)) == len(seeds)


def test_job_id_format():
    job_id = make_job_id("rain", "steady_rain", 0, "cam/000.png")
    assert len(job_id) == 20 and all(c in "0123456789abcdef" for c in job_id)


def test_expand_is_deterministic():
    scenario = parse_scenario(RAIN, "rain.yaml")
    first = expand(scenario, "cam/001.png", 7)
    second = expand(parse_scenario(RAIN, "elsewhere/rain.yaml"), "cam/001.png", 7)
    assert first == second
    assert first == expand(scenario, "cam/001.png", 7)


_SUBPROCESS_CODE = """
import json, sys
from chronoedit_sim.scenario import expand, parse_scenario
scenario = parse_scenario(sys.stdin.read(), "rain.yaml")
rows = [(j.job_id, j.seed, j.prompt) for s in range(20) for j in expand(scenario, f"cam/{s:03d}.png", 3)]
print(json.dumps({"rows": rows, "hash": hash("chronoedit")}))
"""


def test_expansion_independent_of_python_hash_seed():
    scenario = parse_scenario(RAIN, "rain.yaml")
    here = [[j.job_id, j.seed, j.prompt] for s in range(20) for j in expand(scenario, f"cam/{s:03d}.png", 3)]
    hashes = set()
    for hash_seed in ("1", "987654"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS_CODE],
            input=RAIN,
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        result = json.loads(out.stdout)
        assert result["rows"] == here
        hashes.add(result["hash"])
    assert len(hashes) == 2  # the two subprocesses really had different str hashes


def test_expansion_order_independent():
    scenario = parse_scenario(RAIN, "rain.yaml")
    sources = [f"cam/{i:03d}.png" for i in range(30)]
    forward = {
        (j.source_id, j.edit_id, j.sample_index): j for s in sources for e in scenario.edits for j in expand_edit(scenario, e, s, 5)
    }
    shuffled = list(sources)
    random.Random(11).shuffle(shuffled)
    assert shuffled != sources
    backward = {
        (j.source_id, j.edit_id, j.sample_index): j
        for s in shuffled
        for e in reversed(scenario.edits)
        for j in expand_edit(scenario, e, s, 5)
    }
    assert len(forward) == 30 * 3
    assert forward == backward
    # a single source expanded alone equals the same source within a batch
    assert expand(scenario, "cam/017.png", 5) == [forward[("cam/017.png", e, i)] for e, i in (("steady_rain", 0), ("steady_rain", 1), ("rain_on_windshield", 0))]


def test_run_seed_changes_seeds_not_job_ids():
    scenario = parse_scenario(RAIN, "rain.yaml")
    a = expand(scenario, "cam/000.png", 0)
    b = expand(scenario, "cam/000.png", 1)
    assert [j.job_id for j in a] == [j.job_id for j in b]
    assert all(x.seed != y.seed for x, y in zip(a, b))
    # over many frames the run seed also changes the variable draws
    draws = lambda seed: [j.choices for s in range(50) for j in expand(scenario, f"f{s}", seed)]  # noqa: E731
    assert draws(0) != draws(1)


def test_samples_differ():
    scenario = parse_scenario(RAIN, "rain.yaml")
    s0, s1 = expand_edit(scenario, scenario.edit("steady_rain"), "cam/000.png", 0)
    assert (s0.sample_index, s1.sample_index) == (0, 1)
    assert s0.job_id != s1.job_id
    assert s0.seed != s1.seed


def test_job_identity_parts_all_matter():
    base = make_job_id("rain", "steady_rain", 0, "cam/000.png")
    others = {
        make_job_id("snow", "steady_rain", 0, "cam/000.png"),
        make_job_id("rain", "rain_on_windshield", 0, "cam/000.png"),
        make_job_id("rain", "steady_rain", 1, "cam/000.png"),
        make_job_id("rain", "steady_rain", 0, "cam/001.png"),
    }
    assert base not in others and len(others) == 4


def test_raising_samples_keeps_existing_jobs():
    one = parse_scenario(RAIN.replace("samples: 2", "samples: 1"), "rain.yaml")
    two = parse_scenario(RAIN.replace("samples: 2", "samples: 3"), "rain.yaml")
    for s in range(10):
        a = expand(one, f"f{s}", 0)
        b = expand(two, f"f{s}", 0)
        assert a[0] == b[0]
        assert a[-1] == b[-1]  # the other edit is untouched too
        assert len(b) == 4


def test_rewording_keeps_seeds_and_choices():
    reworded = RAIN.replace("Make it rain {intensity} under {sky}.", "Under {sky}, rain falls {intensity}.")
    a = expand(parse_scenario(RAIN, "rain.yaml"), "cam/000.png", 0)
    b = expand(parse_scenario(reworded, "rain.yaml"), "cam/000.png", 0)
    assert [(j.job_id, j.seed, j.choices) for j in a] == [(j.job_id, j.seed, j.choices) for j in b]
    assert b[0].prompt == "Under dark clouds, rain falls heavily."


def test_removing_an_edit_keeps_other_jobs():
    full = parse_scenario(RAIN, "rain.yaml")
    only_windshield = parse_scenario(RAIN[: RAIN.index("  - id: steady_rain")] + RAIN[RAIN.index("  - id: rain_on_windshield") :], "rain.yaml")
    assert [e.id for e in only_windshield.edits] == ["rain_on_windshield"]
    for s in range(10):
        assert expand(only_windshield, f"f{s}", 2) == expand(full, f"f{s}", 2)[-1:]


def _single_var_scenario(choices) -> str:
    return yaml.safe_dump(
        {
            "name": "w",
            "domain": "robotics",
            "description": "d",
            "edits": [{"id": "e", "prompt": "{v}", "vars": {"v": choices}, "target_caption": "t", "source_caption": "s"}],
        }
    )


def test_weighted_choices():
    scenario = parse_scenario(_single_var_scenario({"a": 3, "b": 1}))
    counts = Counter(expand(scenario, f"src/{i:05d}.png", 0)[0].prompt for i in range(4000))
    assert set(counts) == {"a", "b"}
    assert 0.70 <= counts["a"] / 4000 <= 0.80, counts


def test_list_choices_are_uniform():
    scenario = parse_scenario(_single_var_scenario(["x", "y", "z"]))
    counts = Counter(expand(scenario, f"src/{i:05d}.png", 0)[0].prompt for i in range(3000))
    assert set(counts) == {"x", "y", "z"}
    for choice in "xyz":
        assert 0.28 <= counts[choice] / 3000 <= 0.39, counts


def test_rare_weighted_choice_still_drawn():
    scenario = parse_scenario(_single_var_scenario({"common": 99, "rare": 1}))
    counts = Counter(expand(scenario, f"src/{i:05d}.png", 0)[0].prompt for i in range(4000))
    assert 10 <= counts["rare"] <= 80, counts


def test_numeric_choices_become_strings():
    scenario = parse_scenario(_single_var_scenario([1, 2.5]))
    assert scenario.edits[0].vars == {"v": (("1", 1.0), ("2.5", 1.0))}
    assert {expand(scenario, f"f{i}", 0)[0].prompt for i in range(40)} == {"1", "2.5"}


def test_vars_drawn_independently():
    text = yaml.safe_dump(
        {
            "name": "w",
            "domain": "driving",
            "description": "d",
            "edits": [
                {
                    "id": "e",
                    "prompt": "{p} {q}",
                    "vars": {"p": ["0", "1"], "q": ["0", "1"]},
                    "target_caption": "t",
                    "source_caption": "s",
                }
            ],
        }
    )
    scenario = parse_scenario(text)
    counts = Counter(expand(scenario, f"f{i}", 0)[0].prompt for i in range(2000))
    assert set(counts) == {"0 0", "0 1", "1 0", "1 1"}
    assert all(400 <= n <= 600 for n in counts.values()), counts


def test_labels_merge():
    scenario = parse_scenario(RAIN, "rain.yaml")
    jobs = expand(scenario, "cam/000.png", 0)
    # edit labels override scenario labels on a shared key; other scenario labels are kept
    assert jobs[0].labels == {"condition": "rain", "lens_droplets": False}
    # an edit without labels gets the scenario's
    assert jobs[2].labels == {"condition": "rain", "lens_droplets": "unknown"}
    # merging does not modify the scenario or the edit
    assert scenario.labels == {"condition": "rain", "lens_droplets": "unknown"}
    assert scenario.edit("steady_rain").labels == {"lens_droplets": False}
    jobs[0].labels["condition"] = "changed"
    assert expand(scenario, "cam/000.png", 0)[0].labels["condition"] == "rain"


def test_weights_are_proportional_not_ordered():
    # the weight of a choice, not its position, decides its share
    a = parse_scenario(_single_var_scenario({"b": 1, "a": 3}))
    counts = Counter(expand(a, f"src/{i:05d}.png", 0)[0].prompt for i in range(4000))
    assert 0.70 <= counts["a"] / 4000 <= 0.80, counts
    assert set(counts) == {"a", "b"}


def test_class_names_map_the_inserted_object_to_the_sources_class(tmp_path):
    from chronoedit_sim.perception.taxonomy import map_labels

    data = {**_base(), "class_names": {"kitti": "Person_sitting"}}
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_scenario(path).class_names == {"kitti": "Person_sitting"}
    labels = {"inserted": "pedestrian", "condition": "rain"}
    assert map_labels(labels, "kitti", {}) == {**labels, "inserted": "Pedestrian", "inserted_canonical": "pedestrian"}
    assert map_labels(labels, "nuscenes", {})["inserted"] == "human.pedestrian.adult"
    assert map_labels(labels, "coco", {})["inserted"] == "person"
    assert map_labels(labels, None, {}) == labels  # LeRobot, plain folders: no taxonomy
    assert map_labels({"inserted": "traffic_cone"}, "kitti", {}) == {"inserted": "traffic_cone"}  # no KITTI class
    assert map_labels(labels, "kitti", {"kitti": "Person_sitting"})["inserted"] == "Person_sitting"
    data["class_names"] = {"kiti": "Pedestrian"}
    _, msg = _load_error(tmp_path, data)
    assert msg.endswith("class_names: kiti: not a source taxonomy (kitti, nuscenes, coco)")
