"""The tiny checkpoint's round trip through plain diffusers, and LoRA loading (DiffSynth keys)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import write_diffsynth_lora

from chronoedit_sim.config import load_config
from chronoedit_sim.engine.editor import Editor
from chronoedit_sim.engine.lora import normalize_lora_keys
from chronoedit_sim.engine.tiny import build_tiny_pipeline, write_tiny_model


def _run(pipe, seed=0):
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(np.full((32, 48, 3), 120, np.uint8))
    out = pipe(image=image, prompt="add a car", height=32, width=48, num_inference_steps=2,
               generator=torch.Generator().manual_seed(seed), output_type="np")
    return out.frames[0]


def test_round_trip_through_plain_from_pretrained(tiny_model_dir):
    from diffusers import ChronoEditPipeline

    first = _run(ChronoEditPipeline.from_pretrained(tiny_model_dir), seed=3)
    np.testing.assert_array_equal(first, _run(ChronoEditPipeline.from_pretrained(tiny_model_dir), seed=3))
    # against the in-memory original only float32 rounding differs (freshly allocated vs loaded tensors)
    np.testing.assert_allclose(first, _run(build_tiny_pipeline(seed=0), seed=3), rtol=0, atol=1e-6)
    assert np.abs(first - _run(ChronoEditPipeline.from_pretrained(tiny_model_dir), seed=4)).max() > 1e-3


def test_layout_matches_the_real_checkpoint_and_is_small(tiny_model_dir):
    import json

    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "ChronoEditPipeline"
    for name in ("tokenizer", "text_encoder", "image_encoder", "image_processor", "transformer", "vae", "scheduler"):
        assert (tiny_model_dir / name).is_dir(), name
    assert index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]
    size = sum(f.stat().st_size for f in tiny_model_dir.rglob("*") if f.is_file())
    assert size < 1_000_000


def test_same_seed_writes_identical_weights(tiny_model_dir, tmp_path):
    again = write_tiny_model(tmp_path / "again", seed=0)
    for rel in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors"):
        assert (again / rel).read_bytes() == (tiny_model_dir / rel).read_bytes(), rel
    other = write_tiny_model(tmp_path / "other", seed=1)
    assert (other / "transformer/diffusion_pytorch_model.safetensors").read_bytes() != (
        tiny_model_dir / "transformer/diffusion_pytorch_model.safetensors").read_bytes()


def test_normalize_lora_keys():
    assert normalize_lora_keys({"blocks.0.self_attn.q.lora_A.default.weight": 1}) == {
        "diffusion_model.blocks.0.self_attn.q.lora_A.weight": 1}
    already = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": 1}
    assert normalize_lora_keys(already) is already


def test_stacked_diffsynth_loras_load_and_change_the_edit(tiny_model_dir, tmp_path, editor, frame):
    import shutil

    base_cfg = load_config(["model=tiny", f"model.path={tiny_model_dir}"])
    # a relative path resolves against the model root, as the distill preset's does; the LoRA goes
    # into a copy of the checkpoint, never the session's shared one (model_hash covers every file there)
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "tiny-chronoedit")
    (model_dir / "lora").mkdir()
    write_diffsynth_lora(model_dir / "lora" / "style.safetensors", 1)
    second = write_diffsynth_lora(tmp_path / "second.safetensors", 2)
    cfg = load_config(["model=tiny", f"model.path={model_dir}",
                       f"model.loras=[{{path: lora/style.safetensors, scale: 1.0}}, {{path: {second}, scale: 0.5, name: b}}]"])
    with_lora = Editor(cfg.model)
    assert with_lora.pipe.get_active_adapters() == ["style", "b"]
    assert with_lora.identity.loras == ["style:1", "b:0.5"]
    assert with_lora.identity.model_hash != editor.identity.model_hash
    a = with_lora.edit(frame, "add a car", seed=1, gen=cfg.generation)
    b = editor.edit(frame, "add a car", seed=1, gen=base_cfg.generation)
    assert np.abs(a.edited.astype(int) - b.edited).mean() > 1.0
    assert not (tiny_model_dir / "lora").exists()


def _cached(cache, repo: str, name: str, make) -> None:
    """A file as the Hugging Face cache holds it after `hf download repo name` (refs/main -> a snapshot)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    make(folder / "snapshots" / ("0" * 40) / name)


def test_the_lora_presets_take_nvidias_lora_repos_from_the_cache(tiny_model_dir, tmp_path, monkeypatch, frame):
    import huggingface_hub

    from chronoedit_sim.config import configs_dir
    from chronoedit_sim.errors import MissingWeightsError

    paintbrush = load_config(config_files=[str(configs_dir() / "lora" / "paintbrush.yaml")])
    assert [(l.name, l.path) for l in paintbrush.model.loras] == [
        ("distill", "lora/chronoedit_distill_lora.safetensors"),
        ("paintbrush", "nvidia/ChronoEdit-14B-Diffusers-Paint-Brush-Lora:paintbrush_lora_diffusers.safetensors")]
    g = paintbrush.generation
    assert (g.num_inference_steps, g.guidance_scale, g.flow_shift) == (8, 1.0, 2.0)
    upscaler = load_config(config_files=[str(configs_dir() / "lora" / "upscaler.yaml")])
    repo, _, name = upscaler.model.loras[0].path.partition(":")
    assert (repo, name) == ("nvidia/ChronoEdit-14B-Diffusers-Upscaler-Lora", "upsample_lora_diffusers.safetensors")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    overrides = ["model=tiny", f"model.path={tiny_model_dir}", f"model.loras=[{{path: '{repo}:{name}'}}]"]
    with pytest.raises(MissingWeightsError, match=f"`hf download {repo} --local-dir DIR`"):
        Editor(load_config(overrides).model)
    _cached(tmp_path / "hub", repo, name, lambda p: write_diffsynth_lora(p, 3))
    editor = Editor(load_config(overrides).model)
    assert editor.pipe.get_active_adapters() == ["upsample_lora_diffusers"]
    assert editor.edit(frame, "sharper", seed=0, gen=load_config(overrides).generation).edited.shape[2] == 3
