"""The backend family: the registry's refusals, the corruption backend's pixels against the libraries' own
functions, scenario keys, and where a run's rows are edited (no GPU actor for corruptions)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from chronoedit_sim.config import ConfigError, ConfigLoader, load_config
from chronoedit_sim.engine import backends
from chronoedit_sim.engine.backends.corruption import COCO_C, CorruptionBackend, spec_prompt
from chronoedit_sim.scenario import edit_settings, expand, parse_scenario

CORRUPTION_SCENARIO = """
name: mini_c
domain: driving
description: two corruptions
backend: corruption
annotations: keep
edits:
  - id: fog
    corruption: fog
    severity: [1, 3]
    target_caption: a foggy street
    source_caption: a street
  - id: noise
    corruption: impulse_noise
    severity: [2]
    target_caption: a noisy street
    source_caption: a street
"""


def test_an_unknown_backend_is_a_one_line_config_error(capsys):
    from chronoedit_sim.cli import main

    with pytest.raises(ConfigError, match="^command line: model.backend: 'dalle' is not one of chronoedit, corruption, "
                                          "qwen_image_edit, flux_kontext$"):
        load_config(["model.backend=dalle"])
    assert main(["run", "scenarios/driving/rain.yaml", "--input", "x", "--output", "y", "model.backend=dalle"]) == 2


def test_a_registered_backend_whose_module_is_absent_is_named_before_anything_loads(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "flux_kontext", "chronoedit_sim.engine.backends.not_here:Nope")
    scenario = parse_scenario("name: s\ndomain: driving\ndescription: d\nbackend: flux_kontext\nedits:\n"
                              "  - {id: e, prompt: p, target_caption: t, source_caption: c}\n", "s.yaml")
    with pytest.raises(ConfigError, match=r"^s.yaml: edits\[0\].backend: backend 'flux_kontext' is not part of this "
                                          r"installation \(no module chronoedit_sim.engine.backends.not_here\)$"):
        edit_settings(ConfigLoader(["model.path=x", "model.backend=flux_kontext"]), [scenario])


def test_a_scenario_names_corruptions_and_its_severities_expand_into_jobs():
    scenario = parse_scenario(CORRUPTION_SCENARIO, "mini_c.yaml")
    jobs = expand(scenario, "a.png", 0)
    assert [(j.edit_id, j.sample_index, j.prompt, j.severity) for j in jobs] == [
        ("fog", 0, "fog severity 1", 1), ("fog", 1, "fog severity 3", 3), ("noise", 0, "impulse_noise severity 2", 2)]
    settings = edit_settings(ConfigLoader(["model.path=x"]), [scenario])
    assert {k: s.backend for k, s in settings.items()} == {"mini_c/fog": "corruption", "mini_c/noise": "corruption"}


@pytest.mark.parametrize("text, message", [
    ("backend: corruption\nedits:\n  - {id: e, corruption: haze, severity: [1], target_caption: t, source_caption: c}",
     r"edits\[0\].corruption: 'haze' is not one of gaussian_noise, "),
    ("backend: corruption\nedits:\n  - {id: e, corruption: fog, severity: [0, 6], target_caption: t, source_caption: c}",
     r"edits\[0\].severity: expected a list of distinct levels in 1..5, got \[0, 6\]"),
    ("edits:\n  - {id: e, corruption: fog, severity: [1], target_caption: t, source_caption: c}",
     r"edits\[0\].corruption: needs backend: corruption \(on the edit or the scenario\)"),
    ("backend: corruption\nedits:\n  - {id: e, corruption: fog, severity: [1], prompt: p, target_caption: t, "
     "source_caption: c}", r"edits\[0\].prompt: unknown key"),
    ("backend: chatgpt\nedits:\n  - {id: e, prompt: p, target_caption: t, source_caption: c}",
     r"backend: 'chatgpt' is not one of chronoedit, corruption, qwen_image_edit, flux_kontext"),
])
def test_bad_corruption_keys_are_refused_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_scenario("name: s\ndomain: driving\ndescription: d\n" + text, "s.yaml")


def test_edits_of_a_second_generative_editor_or_a_prompt_for_the_corruption_backend_are_refused():
    other = parse_scenario("name: s\ndomain: driving\ndescription: d\nedits:\n  - {id: e, prompt: p, "
                           "backend: qwen_image_edit, target_caption: t, source_caption: c}\n", "s.yaml")
    with pytest.raises(ConfigError, match="differs from the run's generative editor model.backend=chronoedit"):
        edit_settings(ConfigLoader(["model.path=x"]), [other])
    rain = parse_scenario(open("scenarios/driving/rain.yaml").read(), "rain.yaml")
    with pytest.raises(ConfigError, match=r"rain.yaml: edits\[0\]: backend corruption needs `corruption:`"):
        edit_settings(ConfigLoader(["model=corruption"]), [rain])


# every COCO-C corruption but glass_blur, whose numba kernel takes ~10 s to compile (test_all_fifteen... in slow)
FAST = [n for n in COCO_C if n != "glass_blur"]


def _library(image, name, severity, seed):
    """The libraries' own functions, called as their documentation shows, with the seed convention the
    backend states (the job seed's low 32 bits)."""
    from imagecorruptions import corrupt

    s = seed % 2**32
    np.random.seed(s)
    extra = {"seed": s} if name in ("impulse_noise", "glass_blur") else {}
    return corrupt(image, corruption_name=name, severity=severity, **extra)


@pytest.mark.parametrize("name", FAST)
def test_corruption_pixels_equal_imagecorruptions_for_the_same_seed_and_severity(name, frame):
    seed = 2**40 + 12345
    (result,) = CorruptionBackend(None).edit_samples(frame, spec_prompt(name, 3), seeds=[seed])
    assert np.array_equal(result.edited, _library(frame, name, 3, seed))
    assert result.reasoning_frames is None and result.identity.random_weights is False
    assert result.settings == {"corruption": name, "severity": 3, "seed32": seed % 2**32}
    assert not np.array_equal(result.edited, frame)


def test_the_imagecorruptions_package_runs_on_headless_opencv():
    """imagecorruptions declares opencv-python; installed without it, it must import our headless cv2."""
    from importlib.metadata import PackageNotFoundError, distribution

    import cv2
    import imagecorruptions.corruptions as ic

    assert ic.cv2 is cv2
    with pytest.raises(PackageNotFoundError):
        distribution("opencv-python")
    assert distribution("opencv-python-headless")


def test_another_seed_or_severity_gives_other_pixels(frame):
    backend = CorruptionBackend(None)
    a, b = backend.edit_samples(frame, spec_prompt("gaussian_noise", 2), seeds=[1, 2])
    (c,) = backend.edit_samples(frame, spec_prompt("gaussian_noise", 5), seeds=[1])
    assert not np.array_equal(a.edited, b.edited) and not np.array_equal(a.edited, c.edited)
    with pytest.raises(ValueError, match="not a corruption spec: 'make it foggy'"):
        backend.edit_samples(frame, "make it foggy", seeds=[1])


def _stages(scenarios, overrides, tmp_path):
    from chronoedit_sim.runtime.pipeline import BuildContext, Cluster, build_stages
    from chronoedit_sim.runtime.plan import make_plan

    (tmp_path / "in").mkdir(exist_ok=True)
    Image.new("RGB", (32, 16)).save(tmp_path / "in" / "a.png")
    plan = make_plan(ConfigLoader([*overrides, f"input.path={tmp_path / 'in'}", "scoring.clip.enabled=false"]),
                     [str(s) for s in scenarios])
    stages = build_stages(BuildContext(plan, "run", Cluster(cpus=2, gpus=1)))
    return [(s.name, s.resources.actors, s.resources.gpus, getattr(s, "backend", None)) for s in stages]


def test_a_corruption_run_has_no_gpu_actor_and_a_mixed_run_edits_corruptions_in_cpu_tasks(tmp_path, one_edit_scenario):
    corruptions = tmp_path / "mini_c.yaml"
    corruptions.write_text(CORRUPTION_SCENARIO)
    only = _stages([corruptions], ["model.path=/nowhere"], tmp_path)
    assert [s for s in only if s[1]] == []  # no actor at all: nothing loads a model, nothing holds the GPU
    assert ("corrupt", 0, 0.0, "corruption") in only and "edit" not in [s[0] for s in only]
    mixed = _stages([one_edit_scenario, corruptions], ["model.path=/nowhere"], tmp_path)
    names = [s[0] for s in mixed]
    assert names.index("corrupt") < names.index("edit")
    assert ("corrupt", 0, 0.0, "corruption") in mixed and ("edit", 1, 1.0, "chronoedit") in mixed


def test_a_dry_run_of_corruptions_only_says_no_edit_actor_starts(tmp_path, one_edit_scenario):
    from chronoedit_sim.runtime.run import run

    corruptions = tmp_path / "mini_c.yaml"
    corruptions.write_text(CORRUPTION_SCENARIO)
    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 16)).save(tmp_path / "in" / "a.png")

    def ray_line(scenarios):
        lines = []
        assert run([str(s) for s in scenarios], str(tmp_path / "in"), str(tmp_path / "out"),
                   ["model.path=/nowhere"], dry_run=True, echo=lines.append) == 0
        return lines[-1]

    assert ray_line([corruptions]) == ("ray: no edit actor: every edit is a CPU backend's (corruption), run as "
                                       "tasks; address=local private instance")
    assert ray_line([one_edit_scenario, corruptions]).startswith("ray: one per GPU (1 without GPUs) edit actor(s)")


def test_the_edit_stage_edits_its_backends_rows_and_passes_the_others_through(frame):
    from helpers import JOB

    from chronoedit_sim.config import ModelConfig
    from chronoedit_sim.dataset.schema import base_row
    from chronoedit_sim.scenario import EditSettings
    from chronoedit_sim.stages.base import Resources
    from chronoedit_sim.stages.edit import EditStage

    cfg = load_config(["model.path=x"])
    settings = {"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter, backend="corruption")}
    rows = [base_row({**JOB, "job_id": "c", "prompt": spec_prompt("fog", 2), "backend": "corruption"}, "r"),
            base_row({**JOB, "job_id": "g"}, "r")]
    for row in rows:
        row["_source_rgb"] = frame
    stage = EditStage(ModelConfig(path="x"), settings, Resources(cpus=None), backend="corruption", name="corrupt")
    stage.setup()
    out = {r["job_id"]: r for r in stage.process_batch(rows)}
    assert np.array_equal(out["c"]["_edited_rgb"], _library(frame, "fog", 2, JOB["seed"]))
    assert out["c"]["model_id"].startswith("corruption (imagecorruptions-imaug 1.1.5") and out["c"]["generation"] is None
    assert "_edited_rgb" not in out["g"] and out["g"]["model_id"] is None and not out["g"]["error"]
