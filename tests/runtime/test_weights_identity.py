"""Weights identity (#24 item 1): the model hash covers the weights themselves, a resume with other weights at the
same paths is refused naming the component, and a refused config names the keys that differ. No Ray: the
pipeline is stubbed, what is checked happens before it."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from chronoedit_sim.engine.tiny import write_tiny_model
from chronoedit_sim.engine.weights import file_digest, model_hash
from chronoedit_sim.runtime import run as run_module
from chronoedit_sim.runtime.output import OutputConflict


@pytest.fixture
def no_pipeline(monkeypatch):
    monkeypatch.setattr(run_module, "execute", lambda *a, **k: (0.0, {"actors": ""}))


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def swap_transformer(model, tmp_path) -> None:
    """Another seed's weights written over the same files, as a user copying another checkpoint in."""
    other = write_tiny_model(tmp_path / "other", seed=1)
    for f in (other / "transformer").glob("*.safetensors"):
        shutil.copyfile(f, model / "transformer" / f.name)


def test_the_model_hash_covers_the_weights_not_only_sizes_and_configs(model_copy, tiny_model_dir, tmp_path):
    before = model_hash(model_copy, [])
    assert before == model_hash(tiny_model_dir, [])  # same files, same hash wherever they are
    swap_transformer(model_copy, tmp_path)
    assert model_hash(model_copy, []) != before  # same names, sizes and configs: only the data changed


def test_a_digest_is_cached_by_path_size_and_mtime(model_copy):
    weights = next((model_copy / "transformer").glob("*.safetensors"))
    cache: dict = {}
    digest = file_digest(weights, cache)
    cache[str(weights.resolve())]["digest"] = "from-the-cache"
    assert file_digest(weights, cache) == "from-the-cache"  # no read while size and mtime hold
    weights.touch()
    assert file_digest(weights, cache) == digest


def test_a_resume_with_other_weights_is_refused_naming_the_component(no_pipeline, model_copy, tiny_clip_dir,
                                                                   one_edit_scenario, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (64, 48), (10, 90, 120)).save(frames / "f0.png")
    out = tmp_path / "out"
    overrides = ["model=tiny", f"model.path={model_copy}", f"scoring.clip.model=local-dir:{tiny_clip_dir}",
                 "report.enabled=false"]
    args = ([str(one_edit_scenario)], str(frames), str(out))
    assert run_module.run(*args, overrides, quiet=True, echo=lambda *_: None) == 0
    weights = json.loads((out / "run.json").read_text())["weights"]
    assert {"editor transformer", "editor vae", "editor text_encoder", "CLIP"} <= set(weights)
    assert (out / "_state" / "weights.json").exists()  # the digests, for the next run
    assert run_module.run(*args, overrides, quiet=True, echo=lambda *_: None) == 0  # same weights: resumes
    # a resume on a cluster checks no weights on the driver, and keeps the record for the next local one
    assert run_module.run(*args, [*overrides, "runtime.address=auto"], quiet=True, echo=lambda *_: None) == 0
    assert json.loads((out / "run.json").read_text())["weights"] == weights
    swap_transformer(model_copy, tmp_path)
    with pytest.raises(OutputConflict, match=r"the weights changed since the output was made: editor transformer "
                                             r"\(same paths, other files\)"):
        run_module.run(*args, overrides, quiet=True, echo=lambda *_: None)
    with pytest.raises(OutputConflict, match=r"different config or scenarios \(generation.guidance_scale 5.0 -> 3.0, "
                                             r"seed 0 -> 9; config hash"):
        run_module.run(*args, [*overrides, "seed=9", "generation.guidance_scale=3"], quiet=True, echo=lambda *_: None)
    edited = tmp_path / one_edit_scenario.name
    edited.write_text(one_edit_scenario.read_text().replace("test scenario", "an edited scenario"))
    with pytest.raises(OutputConflict, match=r"different config or scenarios \(scenario tiny_edit edited; config hash"):
        run_module.run([str(edited)], *args[1:], overrides, quiet=True, echo=lambda *_: None)
