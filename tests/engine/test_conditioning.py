"""Never twice: per-editor caches of text, image and VAE conditioning, counted calls, batched samples,
and the text encoder offloaded after the run's prompts are encoded. Tiny RANDOM-WEIGHT checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chronoedit_sim.dataset.schema import CALL_FIELDS
from chronoedit_sim.engine.conditioning import LRU
from chronoedit_sim.runtime.adapter import StageAdapter, from_payload, to_payload
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.stages.edit import EditStage
from helpers import JOB

P, Q = "add a red car on the road ahead", "make it rain"


def small(tiny_cfg, **changes):
    """The tiny preset at 80x48: what these tests check does not depend on the size."""
    return dataclasses.replace(tiny_cfg.generation, height=48, width=80, **changes)


def calls_of(editor, work) -> dict:
    before = editor.cond.snapshot()
    work()
    return editor.cond.since(before)


@pytest.fixture
def cold(editor):
    """The session's editor with empty caches (the counters run on)."""
    editor.cond.clear()
    yield editor
    editor.cond.clear()


def test_each_prompt_and_frame_is_encoded_once_and_every_call_is_counted(cold, tiny_cfg, frame):
    gen = small(tiny_cfg)
    steps, guided = gen.num_inference_steps, gen.guidance_scale > 1
    other = np.ascontiguousarray(frame[::-1])

    def four_edits():
        for image, prompt, seed in ((frame, P, 1), (frame, P, 2), (frame, Q, 1), (other, P, 1)):
            cold.edit(image, prompt, seed=seed, gen=gen)

    calls = calls_of(cold, four_edits)
    texts = 3 if guided else 2  # P, Q and, under guidance, the negative prompt they share
    assert calls == {"text_encoder_calls": texts, "image_encoder_calls": 2, "vae_encode_calls": 2,
                     "transformer_forwards": 4 * steps * (2 if guided else 1), "vae_decode_calls": 4}
    # a warm cache runs no encoder at all, and each edit reports its own calls
    again = cold.edit(frame, P, seed=1, gen=gen)
    assert again.calls == {**dict.fromkeys(CALL_FIELDS, 0), "transformer_forwards": steps * (2 if guided else 1),
                           "vae_decode_calls": 1}


def test_cached_conditioning_gives_the_uncached_result(cold, tiny_cfg, frame):
    gen = small(tiny_cfg, temporal_reasoning=True, reasoning_steps=2, num_inference_steps=4)
    first = cold.edit(frame, P, seed=5, gen=gen)
    assert first.calls["image_encoder_calls"] == 1 and first.calls["vae_encode_calls"] == 1
    second = cold.edit(frame, P, seed=5, gen=gen)
    assert second.calls["image_encoder_calls"] == second.calls["vae_encode_calls"] == 0
    assert second.calls["text_encoder_calls"] == 0
    np.testing.assert_array_equal(first.edited, second.edited)
    np.testing.assert_array_equal(first.reasoning_frames, second.reasoning_frames)


def test_a_resolution_or_frame_count_of_its_own_is_encoded_apart(cold, tiny_cfg, frame):
    gen = small(tiny_cfg)
    cold.edit(frame, P, seed=1, gen=gen)
    reasoning = dataclasses.replace(gen, temporal_reasoning=True, reasoning_steps=gen.num_inference_steps)
    calls = calls_of(cold, lambda: cold.edit(frame, P, seed=1, gen=reasoning))
    assert calls["vae_encode_calls"] == 1 and calls["image_encoder_calls"] == 0  # 9 frames, not 5; same image
    smaller = dataclasses.replace(gen, height=32, width=48)
    calls = calls_of(cold, lambda: cold.edit(frame, P, seed=1, gen=smaller))
    assert calls["vae_encode_calls"] == 1 and calls["image_encoder_calls"] == 1


def test_the_caches_are_bounded():
    made = []
    cache = LRU(2)
    for key in "abab" "cab":
        cache.get(key, lambda k=key: made.append(k) or k)
    # c pushes out a (b was used last); a then pushes out b, and b pushes out c
    assert made == ["a", "b", "c", "a", "b"]
    assert list(cache.items) == ["a", "b"]


def test_samples_batched_in_one_call_match_the_single_calls_to_float_noise(cold, tiny_cfg, frame):
    gen = small(tiny_cfg, temporal_reasoning=True, reasoning_steps=2, num_inference_steps=4)
    singles = [cold.edit(frame, P, seed=s, gen=gen) for s in (3, 4)]
    guided = gen.guidance_scale > 1
    before = cold.cond.snapshot()
    batched = cold.edit_samples(frame, P, seeds=[3, 4], gen=gen)
    calls = cold.cond.since(before)
    # one call: the transformer runs once per step (per guidance pass) for both samples
    assert calls["transformer_forwards"] == 4 * (2 if guided else 1)
    assert batched[0].calls == calls and batched[1].calls == dict.fromkeys(CALL_FIELDS, 0)
    for one, both in zip(singles, batched):
        assert np.abs(one.edited.astype(int) - both.edited).max() <= 1
        assert np.abs(one.reasoning_frames.astype(int) - both.reasoning_frames).max() <= 1
    assert np.abs(batched[0].edited.astype(int) - batched[1].edited).mean() > 1  # two samples, not one twice
    again = cold.edit_samples(frame, P, seeds=[3, 4], gen=gen)
    for a, b in zip(batched, again):  # deterministic for a batch composition
        np.testing.assert_array_equal(a.edited, b.edited)


def test_offloaded_text_encoder_serves_the_runs_prompts_and_refuses_others(cold, tiny_cfg, frame, monkeypatch):
    monkeypatch.setattr(cold.cond, "pinned", None)  # restored for the session's other tests
    gen = small(tiny_cfg)
    guided = gen.guidance_scale > 1
    moved = []
    before = cold.cond.snapshot()
    # the move, with how many texts had been encoded when it came
    monkeypatch.setattr(cold.pipe.text_encoder, "to",
                        lambda device: moved.append((device, cold.cond.since(before)["text_encoder_calls"])))
    texts = [P, ""] if guided else [P]
    calls = calls_of(cold, lambda: cold.offload_text_encoder([*texts, P]))
    assert calls["text_encoder_calls"] == len(texts)  # each text once
    assert moved == [("cpu", len(texts))]  # after every text is encoded: the GPU's copy would be gone
    reference = cold.edit(frame, P, seed=1, gen=gen)
    assert reference.calls["text_encoder_calls"] == 0
    with pytest.raises(RuntimeError, match="model.offload_text_encoder"):
        cold.edit(frame, Q, seed=1, gen=gen)
    monkeypatch.setattr(cold.cond, "pinned", None)
    np.testing.assert_array_equal(reference.edited, cold.edit(frame, P, seed=1, gen=gen).edited)


class SpyEditor:
    """The real editor, with each pipeline call's seeds recorded."""

    def __init__(self, editor):
        self.editor, self.identity, self.seeds = editor, editor.identity, []

    def edit_samples(self, image, prompt, *, seeds, gen, negative_prompt=""):
        self.seeds.append(list(seeds))
        return self.editor.edit_samples(image, prompt, seeds=seeds, gen=gen, negative_prompt=negative_prompt)


def frame_jobs(tiny_cfg, frame, jobs, **stage_options):
    """An edit stage and the rows of one frame's jobs, (edit, prompt, seed) each."""
    from chronoedit_sim.dataset.schema import base_row
    from chronoedit_sim.scenario import EditSettings

    settings = {f"s/{e}": EditSettings(small(tiny_cfg), tiny_cfg.trajectory, tiny_cfg.filter) for e in "ab"}
    rows = []
    for i, (edit, prompt, seed) in enumerate(jobs):
        row = base_row({**JOB, "job_id": f"j{i}", "edit_id": edit, "sample_index": seed, "seed": seed,
                        "prompt": prompt}, "run")
        row.update(_source_rgb=frame, timings_ms={})
        rows.append(row)
    return EditStage(tiny_cfg.model, settings, Resources(), **stage_options), rows


def test_a_frames_edits_leave_the_actor_one_by_one(editor, tiny_cfg, frame):
    """A frame's jobs arrive as one batch; each edit is passed on before the next one starts, so the
    encode stage works on it meanwhile."""
    stage, rows = frame_jobs(tiny_cfg, frame, [("a", P, 0), ("a", P, 1)])
    adapter = StageAdapter(stage)  # its setup loads an editor: replaced by the spy
    stage.editor = spy = SpyEditor(editor)
    payloads = adapter(to_payload([rows]))
    assert [r["job_id"] for r in from_payload(next(payloads))] == ["j0"] and spy.seeds == [[0]]
    assert [r["job_id"] for p in payloads for r in from_payload(p)] == ["j1"] and spy.seeds == [[0], [1]]


def test_batch_samples_puts_the_samples_of_one_frame_edit_and_prompt_in_one_call(editor, tiny_cfg, frame):
    jobs = [("a", P, 0), ("a", P, 1), ("b", P, 0), ("a", Q, 2), ("a", P, 3)]
    stage, rows = frame_jobs(tiny_cfg, frame, jobs, batch_samples=True)
    stage.editor = spy = SpyEditor(editor)
    out = stage.process_batch(rows)
    assert spy.seeds == [[0, 1, 3], [0], [2]]
    # each call's rows as they are done
    assert [r["job_id"] for r in out] == ["j0", "j1", "j4", "j2", "j3"] and not any(r["error"] for r in out)
    assert sum(r["component_calls"]["transformer_forwards"] for r in out) == 3 * tiny_cfg.generation.num_inference_steps \
        * (2 if tiny_cfg.generation.guidance_scale > 1 else 1)
