"""Qwen-Image-Edit (2509) and FLUX.1 Kontext as editor backends, on their tiny RANDOM checkpoints: written in
the released repos' diffusers layouts, loaded offline through from_pretrained, one pipeline call per seed list."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from chronoedit_sim.config import CALL_NAMES, load_config
from chronoedit_sim.dataset.schema import generation_struct
from chronoedit_sim.engine.backends.flux_kontext import FluxKontextBackend
from chronoedit_sim.engine.backends.qwen_image_edit import QwenImageEditBackend
from chronoedit_sim.engine.tiny_editors import write_tiny_editor
from chronoedit_sim.engine.weights import CHECKPOINTS, model_hash
from chronoedit_sim.errors import MissingWeightsError

# backend -> (class, tiny preset, pipeline class, its settings for a 128x72 frame at the tiny preset's area:
# exactly what the pipeline is called with, besides image, prompt and generators)
BACKENDS = {
    "qwen_image_edit": (QwenImageEditBackend, "tiny-qwen-image-edit", "QwenImageEditPlusPipeline",
                        # guidance_scale -> true CFG, with Qwen's " " negative prompt when none is given
                        {"height": 96, "width": 160, "num_inference_steps": 2, "true_cfg_scale": 5.0,
                         "negative_prompt": " "}),
    "flux_kontext": (FluxKontextBackend, "tiny-flux-kontext", "FluxKontextPipeline",
                     # guidance_scale -> the guidance embedding; the pipeline's max_area is the output's area
                     {"height": 96, "width": 160, "num_inference_steps": 2, "guidance_scale": 2.5,
                      "max_area": 96 * 160, "_auto_resize": False}),
}
STEPS = 2


@pytest.fixture(scope="module", params=list(BACKENDS))
def loaded(request, tmp_path_factory):
    """(backend name, checkpoint folder, loaded backend, tiny generation config with STEPS steps)."""
    name = request.param
    cls, preset = BACKENDS[name][:2]
    folder = write_tiny_editor(name, tmp_path_factory.mktemp(name) / "tiny", seed=0)
    cfg = load_config([f"model={preset}", f"model.path={folder}"])
    return name, folder, cls(cfg.model), replace(cfg.generation, num_inference_steps=STEPS)


def test_the_tiny_checkpoint_has_the_released_layout(loaded):
    name, folder, _, _ = loaded
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == BACKENDS[name][2]
    listed = {k for k, v in index.items() if not k.startswith("_") and v[0] is not None}
    assert listed == set(CHECKPOINTS[name].components)
    assert all((folder / c).is_dir() for c in listed)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 2 << 20  # small: under 2 MiB


def test_an_edit_is_the_frame_at_model_resolution_with_exactly_the_settings_called(loaded, frame):
    name, folder, backend, gen = loaded
    first, second = backend.edit_samples(frame, "make it rain", seeds=[7, 8], gen=gen)
    for result in (first, second):
        assert result.edited.shape == (96, 160, 3) and result.edited.dtype == np.uint8
        assert result.settings == BACKENDS[name][3]
        assert (result.reasoning_frames, result.reasoning_kind, result.reasoning_step, result.reasoning_sigma,
                result.previews) == (None, None, None, None, [])
        assert result.identity.random_weights is True and result.identity.loras == []
        assert result.identity.model_hash == model_hash(folder, [])
        assert result.timings_ms["total_ms"] > 0
    # one pipeline call: the calls go to the first sample; Qwen runs CFG (two passes a step, two text
    # encodes), FLUX one pass a step and its two text encoders (CLIP, T5)
    passes = 2 if name == "qwen_image_edit" else 1
    assert first.calls == {"text_encoder_calls": 2, "image_encoder_calls": 0, "vae_encode_calls": 1,
                           "transformer_forwards": STEPS * passes, "vae_decode_calls": 1}
    assert second.calls == dict.fromkeys(CALL_NAMES, 0)
    # the row's generation column: no ChronoEdit-only setting, guidance as configured
    assert generation_struct(first.settings) == {
        "steps": STEPS, "guidance": gen.guidance_scale, "flow_shift": None, "reasoning": None,
        "reasoning_steps": None, "num_frames": None, "height": 96, "width": 160, "loras": []}
    # different seeds, different pixels; the same seeds, the same pixels
    assert not np.array_equal(first.edited, second.edited)
    again = backend.edit_samples(frame, "make it rain", seeds=[7, 8], gen=gen)
    assert np.array_equal(again[0].edited, first.edited) and np.array_equal(again[1].edited, second.edited)


def test_guidance_maps_onto_each_pipelines_own_knob(loaded):
    name, _, backend, gen = loaded
    plain = backend.settings_for((128, 72), replace(gen, guidance_scale=1.0), negative_prompt="blurry")
    if name == "qwen_image_edit":  # <= 1: no CFG, so no negative prompt either
        assert plain == {"height": 96, "width": 160, "num_inference_steps": STEPS, "true_cfg_scale": 1.0}
        assert backend.settings_for((128, 72), gen, "blurry")["negative_prompt"] == "blurry"
    else:  # a guidance embedding: a negative prompt has nothing to act on
        assert plain["guidance_scale"] == 1.0 and "negative_prompt" not in plain


@pytest.mark.parametrize("name", list(BACKENDS))
def test_missing_weights_say_how_to_get_them(name, tmp_path):
    cls, preset = BACKENDS[name][:2]
    with pytest.raises(MissingWeightsError) as err:
        cls(load_config([f"model={preset}", f"model.path={tmp_path / 'nowhere'}"]).model)
    msg = str(err.value)
    assert msg.startswith(f"{CHECKPOINTS[name].title} weights not found: directory ")
    assert f"hf download {CHECKPOINTS[name].repo} --local-dir DIR" in msg
    assert f"`chronoedit-sim make-tiny-model --backend {name} DIR`" in msg and f"model={preset} " in msg


def test_an_incomplete_checkpoint_names_the_missing_component(loaded, tmp_path):
    name, folder, _, _ = loaded
    copy = shutil.copytree(folder, tmp_path / "ckpt")
    missing = "processor" if name == "qwen_image_edit" else "text_encoder_2"
    shutil.rmtree(copy / missing)
    with pytest.raises(MissingWeightsError, match=f"component '{missing}' folder {missing}/ is missing"):
        BACKENDS[name][0](load_config([f"model={BACKENDS[name][1]}", f"model.path={copy}"]).model)


@pytest.mark.slow  # a Ray run per backend (make test-slow); needs the edit stage's model.backend routing (#25)
@pytest.mark.ray
@pytest.mark.parametrize("name", list(BACKENDS))
def test_a_tiny_run_through_ray_writes_rows_verify_finds_whole(name, ray_session, one_edit_scenario, tmp_path):
    import pyarrow.parquet as pq
    from helpers import NO_CLIP_BOUNDS
    from PIL import Image
    from verify_helpers import assert_whole

    from chronoedit_sim.dataset.sink import all_shards
    from chronoedit_sim.runtime.run import run

    folder = write_tiny_editor(name, tmp_path / "tiny", seed=0)
    frames = tmp_path / "frames"
    frames.mkdir()
    y, x = np.mgrid[0:48, 0:80]
    for i in range(2):
        Image.fromarray(np.stack([(x * 3 + i * 40) % 256, y * 5, np.full_like(x, 50 + i)], -1).astype(np.uint8)
                        ).save(frames / f"frame_{i}.png")
    out = tmp_path / "out"
    overrides = [f"model={BACKENDS[name][1]}", f"model.path={folder}", "scoring.clip.enabled=false",
                 "report.enabled=false", *NO_CLIP_BOUNDS]
    assert run([str(one_edit_scenario)], str(frames), str(out), overrides, quiet=True, echo=lambda *_: None) == 0
    assert_whole(out)
    rows = [r for shard in all_shards(out) for r in pq.read_table(shard).to_pylist()]
    assert len(rows) == 2 and not any(r["error_stage"] for r in rows)  # 2 frames x 1 sample
    for row in rows:
        assert (row["model_id"], row["model_hash"], row["random_weights"]) == (str(folder), model_hash(folder, []),
                                                                               True)
        assert (row["generation"]["height"], row["generation"]["width"]) == (96, 160)  # 80x48 at 16384


def test_a_backend_loads_its_checkpoint_from_s3_through_the_nodes_copy_and_edits_alike(loaded, s3, frame, tmp_path):
    from chronoedit_sim import storage

    name, folder, backend, gen = loaded
    url = f"{s3}/{name}"
    storage.path(url).fs.put(str(folder) + "/", storage.path(url).path, recursive=True)
    remote = type(backend)(replace(backend.cfg, path=url, cache_dir=str(tmp_path / "cache")))
    assert remote.identity.model_id == url and remote.identity.model_hash == backend.identity.model_hash
    assert np.array_equal(remote.edit_samples(frame, "make it rain", seeds=[7], gen=gen)[0].edited,
                          backend.edit_samples(frame, "make it rain", seeds=[7], gen=gen)[0].edited)
