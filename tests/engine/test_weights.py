"""Weights resolution: local dirs, cached repo ids, and the one clear error when anything is missing."""

from __future__ import annotations

import shutil

import pytest

from chronoedit_sim.config import load_config
from chronoedit_sim.engine.editor import Editor
from chronoedit_sim.engine.weights import MissingWeightsError, model_hash, resolve_model_root


def test_missing_directory_names_the_path_and_how_to_get_weights(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingWeightsError) as err:
        resolve_model_root(str(missing))
    msg = str(err.value)
    assert f"directory {str(missing)!r} does not exist" in msg
    assert "hf download nvidia/ChronoEdit-14B-Diffusers" in msg and "make-tiny-model" in msg


def _use_hub_cache(monkeypatch, path):
    # huggingface_hub reads HF_HUB_CACHE once at import; snapshot_download reads this constant per call
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(path))


def test_repo_id_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    _use_hub_cache(monkeypatch, tmp_path / "empty-cache")
    with pytest.raises(MissingWeightsError) as err:
        resolve_model_root("nvidia/ChronoEdit-14B-Diffusers")
    msg = str(err.value)
    assert "repo id 'nvidia/ChronoEdit-14B-Diffusers' is not in the local Hugging Face cache" in msg
    assert "model.allow_download is false" in msg


def test_unreleased_2b_preset_says_so(tmp_path, monkeypatch):
    _use_hub_cache(monkeypatch, tmp_path / "empty-cache")
    cfg = load_config(["model=chronoedit-2b"])
    with pytest.raises(MissingWeightsError, match="ChronoEdit-2B is announced by NVIDIA but not released"):
        Editor(cfg.model)


@pytest.mark.parametrize(
    "remove, problem",
    [
        ("vae/diffusion_pytorch_model.safetensors", "component 'vae' has no (or an incomplete set of) weight files"),
        ("transformer", "component 'transformer' folder transformer/ is missing"),
        ("model_index.json", "has no model_index.json"),
        ("scheduler/scheduler_config.json", "component 'scheduler' has no config file"),
    ],
)
def test_incomplete_checkpoint_names_the_missing_component(tiny_model_dir, tmp_path, remove, problem):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "ckpt")
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(MissingWeightsError) as err:
        Editor(load_config(["model=tiny", f"model.path={copy}"]).model)
    assert problem in str(err.value) and str(copy) in str(err.value)


def test_missing_lora_file_is_named(tiny_model_dir):
    cfg = load_config(["model=tiny", f"model.path={tiny_model_dir}", "model.loras=[{path: lora/absent.safetensors}]"])
    with pytest.raises(MissingWeightsError, match="LoRA weights not found: 'lora/absent.safetensors'"):
        Editor(cfg.model)


def test_cached_repo_id_loads_offline(tiny_model_dir, tmp_path, monkeypatch):
    """A repo id resolves through a populated hub cache with no network (the cluster setup)."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-chronoedit" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (cache / "models--acme--tiny-chronoedit" / "refs").mkdir()
    (cache / "models--acme--tiny-chronoedit" / "refs" / "main").write_text("0" * 40)
    _use_hub_cache(monkeypatch, cache)
    assert resolve_model_root("acme/tiny-chronoedit") == snapshot


def test_model_hash_tracks_configs_and_loras(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "ckpt")
    base = model_hash(copy, [])
    assert model_hash(tiny_model_dir, []) == base  # location-independent
    lora = tmp_path / "x.safetensors"
    lora.write_bytes(b"fake lora bytes")
    assert model_hash(copy, [(lora, 1.0)]) != base
    assert model_hash(copy, [(lora, 0.5)]) != model_hash(copy, [(lora, 1.0)])
    cfg = copy / "transformer" / "config.json"
    cfg.write_text(cfg.read_text().replace('"num_layers": 2', '"num_layers": 3'))
    assert model_hash(copy, []) != base
