"""The edit engine on the tiny random checkpoint: trajectory capture, determinism, settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from chronoedit_sim.dataset.encode import encode_image
from chronoedit_sim.engine import editor as editor_module
from chronoedit_sim.engine.editor import fit_resolution
from chronoedit_sim.engine.trajectory import decode_latents, to_uint8

PROMPT = "add a red car on the road ahead"


def plain_pipeline_frames(model_dir, settings, image, seed):
    """What diffusers' own pipeline returns for the same settings, loaded the plain way."""
    from diffusers import ChronoEditPipeline, UniPCMultistepScheduler

    pipe = ChronoEditPipeline.from_pretrained(model_dir)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=settings["flow_shift"])
    pipe.set_progress_bar_config(disable=True)
    pil = Image.fromarray(image).resize((settings["width"], settings["height"]), Image.Resampling.BICUBIC)
    out = pipe(
        image=pil,
        prompt=PROMPT,
        height=settings["height"],
        width=settings["width"],
        num_frames=settings["num_frames"],
        num_inference_steps=settings["num_inference_steps"],
        guidance_scale=settings["guidance_scale"],
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        enable_temporal_reasoning=settings["temporal_reasoning"],
        num_temporal_reasoning_steps=settings["reasoning_steps"],
    )
    return to_uint8(out.frames[0])


def gen(cfg, **changes):
    return dataclasses.replace(cfg.generation, **changes)


def test_full_reasoning_records_every_decoded_frame(editor, tiny_cfg, tiny_model_dir, frame):
    g = gen(tiny_cfg, temporal_reasoning=True, reasoning_steps=tiny_cfg.generation.num_inference_steps)
    result = editor.edit(frame, PROMPT, seed=7, gen=g)
    latent_frames = (g.num_frames - 1) // 4 + 1
    assert result.reasoning_kind == "decoded"
    assert len(result.reasoning_frames) == 1 + 4 * (latent_frames - 1) == 9
    expected = plain_pipeline_frames(tiny_model_dir, result.settings, frame, seed=7)
    np.testing.assert_array_equal(result.reasoning_frames, expected)
    np.testing.assert_array_equal(result.edited, expected[-1])


def test_partial_reasoning_captures_x0_without_changing_the_edit(editor, tiny_cfg, tiny_model_dir, frame):
    g = gen(tiny_cfg, temporal_reasoning=True, reasoning_steps=2, num_inference_steps=4)
    result = editor.edit(frame, PROMPT, seed=11, gen=g)
    assert result.reasoning_kind == "x0_at_step_k"
    assert result.reasoning_step == 2
    assert 0.0 < result.reasoning_sigma < 1.0
    assert result.reasoning_frames.shape == (9, result.settings["height"], result.settings["width"], 3)
    plain = plain_pipeline_frames(tiny_model_dir, result.settings, frame, seed=11)
    # the pipeline cut the in-between frames: it returns [input .. edit] from 2 latent frames
    assert len(plain) == 5
    np.testing.assert_array_equal(result.edited, plain[-1])
    # the clean estimate is a real trajectory, not copies of one frame
    assert np.abs(result.reasoning_frames[0].astype(int) - result.reasoning_frames[4]).mean() > 0


class PipeSpy:
    """Stands in for `editor.pipe`: forwards everything, and runs `observe(pipe, i, t, kwargs)` after
    Editor's own step callback (the TrajectoryRecorder), so the test sees the scheduler independently."""

    def __init__(self, pipe, observe):
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "_observe", observe)

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __setattr__(self, name, value):
        setattr(self._pipe, name, value)

    def __call__(self, **kwargs):
        recorder = kwargs["callback_on_step_end"]

        def both(pipe, i, t, callback_kwargs):
            out = recorder(pipe, i, t, callback_kwargs)
            self._observe(pipe, i, t, callback_kwargs)
            return out

        output = self._pipe(**{**kwargs, "callback_on_step_end": both})
        object.__setattr__(self, "output_frames", to_uint8(output.frames[0]))
        return output


def spy_on(editor, monkeypatch):
    """Per step: the latents after the step, the scheduler's newest x0 estimate and the sigma it was made at."""
    steps = {}

    def observe(pipe, i, t, callback_kwargs):
        scheduler = pipe.scheduler
        steps[i] = {
            "latents": callback_kwargs["latents"].detach().clone(),
            "x0": scheduler.model_outputs[-1].detach().clone(),
            # the step has run: step_index already points at the next one
            "sigma": float(scheduler.sigmas[scheduler.step_index - 1]),
            "t": float(t),
        }

    spy = PipeSpy(editor.pipe, observe)
    monkeypatch.setattr(editor, "pipe", spy)
    return spy, steps


@pytest.mark.parametrize("reasoning", [True, False], ids=["full_reasoning", "no_reasoning"])
def test_decode_latents_matches_the_pipelines_own_decode(editor, tiny_cfg, frame, monkeypatch, reasoning):
    """decode_latents (used for the x0 trajectory and previews) must be exactly the pipeline's decode:
    full reasoning decodes 3 latent frames in two parts, no reasoning 2 latent frames in one."""
    steps_n = tiny_cfg.generation.num_inference_steps
    g = gen(tiny_cfg, temporal_reasoning=reasoning, reasoning_steps=steps_n)
    spy, steps = spy_on(editor, monkeypatch)
    result = editor.edit(frame, PROMPT, seed=9, gen=g)
    final = steps[steps_n - 1]["latents"]
    assert final.shape[2] == (3 if reasoning else 2)
    decoded = decode_latents(editor.pipe, final)
    assert decoded.shape == spy.output_frames.shape == ((9 if reasoning else 5), 96, 160, 3)
    np.testing.assert_array_equal(decoded, spy.output_frames)
    np.testing.assert_array_equal(decoded[-1], result.edited)
    if reasoning:
        np.testing.assert_array_equal(decoded, result.reasoning_frames)


def test_partial_reasoning_keeps_the_schedulers_x0_and_sigma_at_step_k(editor, tiny_cfg, frame, monkeypatch):
    k, n = 2, 4
    g = gen(tiny_cfg, temporal_reasoning=True, reasoning_steps=k, num_inference_steps=n)
    recorded = {}
    real_recorder = editor_module.TrajectoryRecorder

    def keep_recorder(*args, **kwargs):
        recorded["recorder"] = real_recorder(*args, **kwargs)
        return recorded["recorder"]

    monkeypatch.setattr(editor_module, "TrajectoryRecorder", keep_recorder)
    spy, steps = spy_on(editor, monkeypatch)
    result = editor.edit(frame, PROMPT, seed=11, gen=g)
    recorder = recorded["recorder"]
    at_k = steps[k - 1]
    # the last step before the cut still sees all 3 latent frames; the step after sees only [input, edit]
    assert at_k["x0"].shape[2] == 3 and steps[k]["x0"].shape[2] == 2
    # the kept tensor is the scheduler's x0 estimate at step k-1, not the noisy latents
    torch.testing.assert_close(recorder.x0, at_k["x0"], rtol=0, atol=0)
    assert not torch.equal(at_k["x0"], at_k["latents"])
    # its noise level: the scheduler's sigma at that step (= timestep / 1000 for flow sigmas)
    assert recorder.x0_sigma == at_k["sigma"]
    assert result.reasoning_sigma == recorder.x0_sigma
    assert at_k["sigma"] == pytest.approx(at_k["t"] / editor.pipe.scheduler.config.num_train_timesteps, abs=1e-3)
    assert at_k["sigma"] != steps[k]["sigma"] and at_k["sigma"] != steps[k - 2]["sigma"]
    # what Editor.edit returns as the trajectory is that estimate, decoded
    np.testing.assert_array_equal(result.reasoning_frames, decode_latents(editor.pipe, at_k["x0"]))
    # and the edit itself is the pipeline's own last frame
    np.testing.assert_array_equal(result.edited, spy.output_frames[-1])


def test_without_reasoning_there_are_no_reasoning_frames(editor, tiny_cfg, frame):
    result = editor.edit(frame, PROMPT, seed=1, gen=gen(tiny_cfg, temporal_reasoning=False))
    assert result.reasoning_frames is None and result.reasoning_kind is None
    assert result.settings["num_frames"] == 5 and result.settings["reasoning_steps"] == 0


def test_same_job_twice_gives_byte_identical_encodings(editor, tiny_cfg, frame):
    g = gen(tiny_cfg, temporal_reasoning=True)
    a = editor.edit(frame, PROMPT, seed=5, gen=g)
    b = editor.edit(frame, PROMPT, seed=5, gen=g)
    assert encode_image(a.edited, "png") == encode_image(b.edited, "png")
    assert [encode_image(f, "webp") for f in a.reasoning_frames] == [encode_image(f, "webp") for f in b.reasoning_frames]
    c = editor.edit(frame, PROMPT, seed=6, gen=g)
    assert not np.array_equal(a.edited, c.edited)


def test_denoise_previews_every_n_steps(editor, tiny_cfg, frame):
    result = editor.edit(frame, PROMPT, seed=2, gen=gen(tiny_cfg, num_inference_steps=4, denoise_preview_every=2))
    assert [step for step, _, _ in result.previews] == [1, 3]
    sigmas = [sigma for _, sigma, _ in result.previews]
    assert sigmas[0] > sigmas[1]
    assert all(p.shape == result.edited.shape for _, _, p in result.previews)


def test_settings_and_identity_are_recorded(editor, tiny_cfg, frame):
    result = editor.edit(frame, PROMPT, seed=3, gen=tiny_cfg.generation)
    # 72x128 fitted into 128x128-equivalent area: aspect kept, multiples of 16
    assert (result.settings["width"], result.settings["height"]) == fit_resolution(128, 72, 16384) == (160, 96)
    assert result.edited.shape == (96, 160, 3)
    assert result.identity.random_weights is True
    assert result.identity.preset == "tiny" and len(result.identity.model_hash) == 16
    assert set(result.timings_ms) >= {"denoise_ms", "decode_ms", "total_ms"}


@pytest.mark.parametrize(
    "size, area, expected",
    [((1280, 720), 720 * 1280, (1280, 720)), ((832, 480), 480 * 832, (832, 480)), ((100, 100), 16384, (128, 128)),
     ((1920, 1080), 480 * 832, (832, 464))],
)
def test_fit_resolution_keeps_aspect_and_multiples_of_16(size, area, expected):
    assert fit_resolution(*size, area) == expected


def test_explicit_height_width_bypass_max_area(editor, tiny_cfg, frame):
    result = editor.edit(frame, PROMPT, seed=3, gen=gen(tiny_cfg, height=64, width=64))
    assert result.edited.shape == (64, 64, 3)


def test_an_in_memory_pipeline_edits_as_the_loaded_one_and_counts_as_random(editor, tiny_cfg, frame):
    """bench/gpu.py hands the Editor a pipeline built in memory (the true-size architecture):
    the same weights must give the same edit as the checkpoint on disk, marked random."""
    from chronoedit_sim.engine.editor import Editor
    from chronoedit_sim.engine.tiny import build_tiny_pipeline

    in_memory = Editor(tiny_cfg.model, pipeline=build_tiny_pipeline(seed=0))
    assert in_memory.identity.random_weights and in_memory.identity.model_hash == "in-memory"
    a = in_memory.edit(frame, PROMPT, seed=3, gen=tiny_cfg.generation)
    b = editor.edit(frame, PROMPT, seed=3, gen=tiny_cfg.generation)
    np.testing.assert_array_equal(a.edited, b.edited)
