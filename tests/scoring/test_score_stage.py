"""Tests for chronoedit_sim.scoring.scores and stages.score: compute_scores, the source-embedding cache and ScoreStage (no Ray).

A tiny random CLIP is written once per module; its scores mean nothing, so the tests check
structure, exact values where they are defined (identical images) and the keep/reject logic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from chronoedit_sim.config import JUDGE_SCORES, LOCALIZE_SCORES, SCORES, SEQUENCE_SCORES, ClipConfig, FilterConfig, load_config
from chronoedit_sim.dataset.schema import COLUMNS, base_row, fail_row, finish_row
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.scoring import metrics
from chronoedit_sim.scoring.clip import ClipEmbedder
from chronoedit_sim.scoring.filter import apply_filter
from chronoedit_sim.scoring.scores import NO_CLIP, CachedEmbedder, compute_scores
from chronoedit_sim.stages.score import ScoreStage

TRAJECTORY = ("trajectory_min_adjacent", "trajectory_monotonic")
CLIP_SCORES = ("clip_text", "clip_text_source", "clip_image", "clip_direction")
NO_BOUNDS = {f"{name}_{side}": None for name in SCORES for side in ("min", "max")}
# what the score stage computes; the localize stage's scores pass through it (tested below)
COMPUTED = tuple(name for name in SCORES if name not in LOCALIZE_SCORES + JUDGE_SCORES + SEQUENCE_SCORES)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip_cfg(tiny_clip_dir):
    return ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu")


@pytest.fixture(scope="module")
def clip(clip_cfg):
    return ClipEmbedder(clip_cfg)


@pytest.fixture
def embedder(clip):
    return CachedEmbedder(clip)


@pytest.fixture(scope="module")
def base_cfg():
    return load_config(["model=tiny", "model.path=/unused"])


def edited_of(frame: np.ndarray) -> np.ndarray:
    """A visibly different edit of the frame: a green block and a brighter right half."""
    out = frame.copy()
    out[40:65, 70:110] = (20, 220, 40)
    out[:, 64:] = np.clip(out[:, 64:].astype(np.int16) + 60, 0, 255).astype(np.uint8)
    return out


def reasoning_of(source: np.ndarray, edited: np.ndarray, n: int = 5) -> np.ndarray:
    ts = np.linspace(0.0, 1.0, n)
    return np.stack([((1 - t) * source.astype(np.float64) + t * edited.astype(np.float64)).round().astype(np.uint8)
                     for t in ts])


def transient(source_id, source, edited, reasoning=None, target="a street with a green car", src="a street"):
    row = {"source_id": source_id, "_source_rgb": source, "_edited_rgb": edited,
           "target_caption": target, "source_caption": src}
    if reasoning is not None:
        row["_reasoning_rgb"] = reasoning
    return row


# ---- compute_scores ------------------------------------------------------------------------


def test_all_scores_finite_with_reasoning(embedder, frame):
    edited = edited_of(frame)
    scores, notes = compute_scores(transient("f0", frame, edited, reasoning_of(frame, edited)), embedder)
    assert tuple(scores) == SCORES
    for name in COMPUTED:
        assert isinstance(scores[name], float), name
        assert math.isfinite(scores[name]), name
    assert notes == {}
    for name in CLIP_SCORES + ("trajectory_min_adjacent", "ssim"):
        assert -1.0 <= scores[name] <= 1.0, name
    assert 0.0 <= scores["trajectory_monotonic"] <= 1.0
    assert scores["trajectory_monotonic"] * 4 == round(scores["trajectory_monotonic"] * 4)  # k of 4 steps
    assert 0.0 <= scores["flow_warp_error"] <= 1.0
    assert scores["ssim"] < 1.0 and scores["psnr"] < metrics.PSNR_CAP


def test_scores_match_the_metrics_on_the_same_inputs(embedder, clip, frame):
    edited = edited_of(frame)
    reasoning = reasoning_of(frame, edited)
    scores, _ = compute_scores(transient("f0", frame, edited, reasoning), embedder)
    assert scores["ssim"] == metrics.ssim(frame, edited)
    assert scores["psnr"] == metrics.psnr(frame, edited)
    assert scores["flow_warp_error"] == metrics.flow_warp_error(reasoning)
    src = clip.images([frame])[0]
    embs = clip.images([edited, *reasoning])
    tgt_txt, src_txt = clip.captions(["a street with a green car", "a street"])
    assert scores["clip_image"] == pytest.approx(metrics.cosine(src, embs[0]), abs=1e-6)
    assert scores["clip_text"] == pytest.approx(metrics.cosine(embs[0], tgt_txt), abs=1e-6)
    assert scores["clip_text_source"] == pytest.approx(metrics.cosine(src, src_txt), abs=1e-6)
    direction, why = metrics.directional_similarity(src, embs[0], src_txt, tgt_txt)
    assert (scores["clip_direction"], why) == (pytest.approx(direction, abs=1e-5), None)
    traj = metrics.trajectory_scores(embs[1:], embs[0])
    assert scores["trajectory_min_adjacent"] == pytest.approx(traj["trajectory_min_adjacent"], abs=1e-6)
    assert scores["trajectory_monotonic"] == traj["trajectory_monotonic"]


def test_identical_source_and_edit(embedder, frame):
    scores, notes = compute_scores(transient("f0", frame, frame.copy(), reasoning_of(frame, frame)), embedder)
    assert scores["ssim"] == 1.0
    assert scores["psnr"] == metrics.PSNR_CAP
    assert scores["flow_warp_error"] == 0.0
    assert scores["clip_direction"] == 0.0
    assert notes == {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    assert scores["clip_image"] == pytest.approx(1.0, abs=1e-6)
    assert scores["trajectory_min_adjacent"] == pytest.approx(1.0, abs=1e-6)
    assert scores["trajectory_monotonic"] == 1.0
    assert all(math.isfinite(scores[name]) for name in COMPUTED)
    # the localize stage's scores are the row's, whatever the rest computes
    row = transient("f0", frame, frame.copy(), None)
    row["scores"] = {"change_area": 0.25, "change_outside": 0.0, "inserted_in_region": None}
    scores, _ = compute_scores(row, embedder)
    assert [scores[name] for name in LOCALIZE_SCORES] == [0.25, 0.0, None] and scores["ssim"] == 1.0


def test_identical_captions_note(embedder, frame):
    _, notes = compute_scores(transient("f0", frame, edited_of(frame), target="a street", src="a street"), embedder)
    assert notes == {"clip_direction": metrics.REASON_IDENTICAL_CAPTIONS}


def test_without_reasoning_trajectory_and_flow_are_none(embedder, frame):
    scores, _ = compute_scores(transient("f0", frame, edited_of(frame)), embedder)
    assert {k: scores[k] for k in (*TRAJECTORY, "flow_warp_error")} == dict.fromkeys((*TRAJECTORY, "flow_warp_error"))
    assert all(isinstance(scores[k], float) for k in (*CLIP_SCORES, "ssim", "psnr"))


@pytest.mark.parametrize("reasoning", [None, "empty", "one"])
def test_reasoning_of_fewer_than_two_frames_counts_as_none(embedder, frame, reasoning):
    edited = edited_of(frame)
    frames = {None: None, "empty": np.zeros((0, 72, 128, 3), np.uint8), "one": edited[None]}[reasoning]
    row = transient("f0", frame, edited)
    row["_reasoning_rgb"] = frames
    scores, _ = compute_scores(row, embedder)
    assert scores["flow_warp_error"] is None
    assert scores["trajectory_min_adjacent"] is None and scores["trajectory_monotonic"] is None


def test_without_embedder_only_weight_free_scores(frame):
    edited = edited_of(frame)
    scores, notes = compute_scores(transient("f0", frame, edited, reasoning_of(frame, edited)), None)
    assert notes == {}
    assert {k: scores[k] for k in (*CLIP_SCORES, *TRAJECTORY)} == dict.fromkeys((*CLIP_SCORES, *TRAJECTORY))
    assert scores["ssim"] == metrics.ssim(frame, edited)
    assert scores["psnr"] == metrics.psnr(frame, edited)
    assert math.isfinite(scores["flow_warp_error"])
    no_reasoning, _ = compute_scores(transient("f0", frame, edited), None)
    assert [k for k, v in no_reasoning.items() if v is not None] == ["ssim", "psnr"]


def test_source_is_compared_at_the_edited_resolution(embedder, frame):
    edited = metrics.resize_to(frame, (64, 112))
    scores, notes = compute_scores(transient("f0", frame, edited), embedder)
    # the resized source equals the edit: identical images at 64x112
    assert (scores["ssim"], scores["psnr"]) == (1.0, metrics.PSNR_CAP)
    assert notes == {"clip_direction": metrics.REASON_ZERO_IMAGE_CHANGE}
    bigger = metrics.resize_to(edited_of(frame), (96, 160))
    scores, _ = compute_scores(transient("f0", frame, bigger), embedder)
    assert scores["ssim"] == metrics.ssim(metrics.resize_to(frame, (96, 160)), bigger)


# ---- source cache ------------------------------------------------------------------------


def test_source_embedding_computed_once_per_frame(embedder, frame):
    edited = edited_of(frame)
    assert embedder.source_encodes == 0
    first, _ = compute_scores(transient("frame_a", frame, edited), embedder)
    second, _ = compute_scores(transient("frame_a", frame, 255 - edited, target="a snowy street"), embedder)
    assert embedder.source_encodes == 1
    compute_scores(transient("frame_b", 255 - frame, edited), embedder)
    assert embedder.source_encodes == 2
    # the cached embedding gives the same scores as the first time
    again, _ = compute_scores(transient("frame_a", frame, edited), embedder)
    assert embedder.source_encodes == 2
    assert again == first


def test_source_cache_keys_on_the_compared_shape(embedder, frame):
    compute_scores(transient("frame_a", frame, edited_of(frame)), embedder)
    compute_scores(transient("frame_a", frame, metrics.resize_to(edited_of(frame), (64, 112))), embedder)
    assert embedder.source_encodes == 2


def test_source_cache_returns_the_clip_embedding(embedder, clip, frame):
    cached = embedder.source("x", frame)
    assert np.array_equal(cached, clip.images([frame])[0])
    assert embedder.source("x", frame) is cached


class CountingClip:
    """Stands in for ClipEmbedder: one distinct vector per call, so re-encoding is visible."""

    def __init__(self):
        self.calls = 0

    def images(self, frames):
        self.calls += 1
        return np.full((len(frames), 4), float(self.calls), np.float32)


def test_source_cache_is_bounded(frame):
    from chronoedit_sim.scoring import scores as stage

    clip = CountingClip()
    cache = CachedEmbedder(clip)
    first = cache.source("s0", frame)
    for i in range(1, stage._SOURCE_CACHE):
        cache.source(f"s{i}", frame)
    assert (cache.source_encodes, clip.calls) == (stage._SOURCE_CACHE, stage._SOURCE_CACHE)
    assert cache.source("s0", frame) is first  # still cached at exactly the limit
    cache.source("one-more", frame)
    assert len(cache._sources) == stage._SOURCE_CACHE
    # the oldest entry was evicted and is encoded again; the newest is still cached
    assert cache.source_encodes == stage._SOURCE_CACHE + 1
    again = cache.source("s0", frame)
    assert cache.source_encodes == stage._SOURCE_CACHE + 2
    assert not np.array_equal(again, first)
    cache.source("one-more", frame)
    assert cache.source_encodes == stage._SOURCE_CACHE + 2


# ---- ScoreStage end to end (no Ray) --------------------------------------------------------------


def job(source_id="frame_0000", sample_index=0, scenario="s", edit_id="e"):
    return {"job_id": f"job-{source_id}-{sample_index}", "scenario": scenario, "edit_id": edit_id,
            "sample_index": sample_index, "seed": 1234 + sample_index, "source_id": source_id,
            "source_uri": f"/data/{source_id}.png", "prompt": "Add a green car.", "negative_prompt": "",
            "target_caption": "a street with a green car", "source_caption": "a street",
            "labels": {"inserted": "car"}, "choices": {"colour": "green"}}


def stage_row(source, edited, reasoning=None, **job_kw):
    row = base_row(job(**job_kw), "run1")
    row.update(_source_rgb=source, _edited_rgb=edited)
    if reasoning is not None:
        row["_reasoning_rgb"] = reasoning
    return row


def make_stage(base_cfg, clip_cfg, filter_cfg, **extra_settings):
    settings = {"s/e": EditSettings(base_cfg.generation, base_cfg.trajectory, filter_cfg), **extra_settings}
    stage = ScoreStage(settings, clip_cfg, Resources())
    stage.setup()
    return stage


def score(stage, rows):
    """The stage's rows as the sink gets them when score is the last stage (finished by the adapter)."""
    return [finish_row(r) for r in stage.process_batch(rows)]


def texts(row):
    return [r["text"] for r in row["reject_reasons"]]


def assert_finished(row):
    assert tuple(row) == COLUMNS
    assert not any(k.startswith("_") for k in row)
    assert row["created_at"] is not None
    if row["scores"] is not None:
        assert tuple(row["scores"]) == SCORES
        assert not any(isinstance(v, float) and math.isnan(v) for v in row["scores"].values())


def test_score_stage_keep_and_reject_follow_the_filter(base_cfg, clip_cfg, frame):
    edited = edited_of(frame)
    probe = make_stage(base_cfg, clip_cfg, FilterConfig(**NO_BOUNDS))
    [free] = score(probe, [stage_row(frame, edited, reasoning_of(frame, edited))])
    assert_finished(free)
    assert (free["keep"], texts(free)) == (True, [])
    clip_image = free["scores"]["clip_image"]
    assert -1.0 < clip_image < 0.999  # the edit changed the image
    # a bound just above the measured value rejects with the exact reason, one just below keeps
    above, below = clip_image + 0.005, clip_image - 0.005
    strict = make_stage(base_cfg, clip_cfg, FilterConfig(**{**NO_BOUNDS, "clip_image_min": above}))
    [row] = score(strict, [stage_row(frame, edited, reasoning_of(frame, edited))])
    assert_finished(row)
    assert (row["keep"], texts(row)) == (False, [f"clip_image {clip_image:.2f} < {above:.2f}"])
    assert row["scores"] == free["scores"]
    assert row["error"] is None
    loose = make_stage(base_cfg, clip_cfg, FilterConfig(**{**NO_BOUNDS, "clip_image_min": below, "ssim_max": 1.0}))
    [row] = score(loose, [stage_row(frame, edited, reasoning_of(frame, edited))])
    assert (row["keep"], texts(row)) == (True, [])
    # upper bounds too: the edit changed the frame, so ssim < 1 and psnr < cap
    capped = make_stage(base_cfg, clip_cfg, FilterConfig(**{**NO_BOUNDS, "ssim_max": 0.5, "psnr_min": 40.0}))
    [row] = score(capped, [stage_row(frame, edited)])
    ssim, psnr = row["scores"]["ssim"], row["scores"]["psnr"]
    assert (row["keep"], texts(row)) == (False, [f"ssim {ssim:.2f} > 0.50", f"psnr {psnr:.2f} < 40.00"])


def test_score_stage_row_contents(base_cfg, clip_cfg, tiny_clip_dir, frame):
    stage = make_stage(base_cfg, clip_cfg, FilterConfig())
    edited = edited_of(frame)
    row = stage_row(frame, edited, reasoning_of(frame, edited))
    expected_scores, expected_notes = compute_scores(dict(row), CachedEmbedder(ClipEmbedder(clip_cfg)))
    [out] = score(stage, [row])
    assert_finished(out)
    scorer = json.loads(out["scorer"])
    assert scorer == {"model": f"local-dir:{tiny_clip_dir}", "pretrained": None, "random_weights": True}
    assert set(out["scores"]) == set(SCORES)
    assert all(isinstance(out["scores"][k], float) and math.isfinite(out["scores"][k]) for k in COMPUTED)
    for name in SCORES:
        assert out["scores"][name] == pytest.approx(expected_scores[name], abs=1e-6), name
    assert (out["keep"], out["reject_reasons"]) == apply_filter(out["scores"], FilterConfig(), expected_notes)
    assert out["error_stage"] is None
    # the job fields come through untouched
    assert (out["job_id"], out["run_id"], out["scenario"], out["edit_id"]) == ("job-frame_0000-0", "run1", "s", "e")
    assert json.loads(out["labels"]) == {"inserted": "car"}
    assert out["error"] is None


def test_score_stage_identical_edit_gets_the_zero_change_note(base_cfg, clip_cfg, frame):
    stage = make_stage(base_cfg, clip_cfg, FilterConfig())
    rows = score(stage, [
        stage_row(frame, frame.copy()),
        stage_row(frame, frame.copy(), reasoning_of(frame, frame), sample_index=1),
    ])
    for out in rows:
        assert_finished(out)
        assert out["keep"] is False
        assert "clip_direction undefined: zero image change" in texts(out)
        assert not any(r.startswith("clip_direction 0.00") for r in texts(out))
        assert out["scores"]["clip_direction"] == 0.0
        assert (out["scores"]["ssim"], out["scores"]["psnr"]) == (1.0, metrics.PSNR_CAP)
        assert not any(isinstance(v, float) and math.isnan(v) for v in out["scores"].values())
        assert all(v is None or math.isfinite(v) for v in out["scores"].values())
    assert rows[0]["scores"]["flow_warp_error"] is None
    assert rows[1]["scores"]["flow_warp_error"] == 0.0


def test_score_stage_errored_row_passes_through(base_cfg, clip_cfg, tiny_clip_dir, frame):
    stage = make_stage(base_cfg, clip_cfg, FilterConfig())
    row = base_row(job(), "run1")
    fail_row(row, "read", "x")
    [out] = score(stage, [row])
    assert_finished(out)
    assert (out["keep"], out["scores"], out["reject_reasons"], out["error"]) == (False, None, [], "read: x")
    assert (out["scorer"], out["error_stage"]) == (None, "read")  # the score stage never saw it
    assert stage.embedder.source_encodes == 0


def test_score_stage_scoring_failure_becomes_an_error_row(base_cfg, clip_cfg, frame):
    stage = make_stage(base_cfg, clip_cfg, FilterConfig())
    row = base_row(job(), "run1")
    row["_source_rgb"] = frame  # no _edited_rgb
    single = stage_row(frame, edited_of(frame), edited_of(frame)[None], sample_index=1)
    mismatched = stage_row(frame, edited_of(frame), sample_index=2)
    mismatched["_reasoning_rgb"] = [frame, np.ascontiguousarray(frame[:32])]
    out, ok, bad = score(stage, [row, single, mismatched])
    assert_finished(out)
    assert (out["keep"], out["scores"], out["error"]) == (False, None, "score: KeyError: '_edited_rgb'")
    assert out["error_stage"] == "score"
    assert ok["error"] is None and ok["scores"] is not None
    assert bad["scores"] is None and bad["keep"] is False
    assert bad["error"].startswith("score: ValueError: flow_warp_error: image shapes differ")


def test_score_stage_batch_mixes_rows_and_settings(base_cfg, clip_cfg, frame):
    other = EditSettings(base_cfg.generation, base_cfg.trajectory, FilterConfig(**NO_BOUNDS))
    stage = make_stage(base_cfg, clip_cfg, FilterConfig(**{**NO_BOUNDS, "psnr_max": 50.0}), **{"t/f": other})
    rows = [stage_row(frame, frame.copy()), stage_row(frame, frame.copy(), scenario="t", edit_id="f"),
            stage_row(frame, edited_of(frame), sample_index=1)]
    a, b, c = score(stage, rows)
    assert (a["keep"], texts(a)) == (False, ["psnr 100.00 > 50.00"])
    assert (b["keep"], texts(b)) == (True, [])
    assert (c["keep"], texts(c)) == (True, [])
    assert [r["job_id"] for r in (a, b, c)] == ["job-frame_0000-0", "job-frame_0000-0", "job-frame_0000-1"]
    # one source frame, one embedding, across all three rows
    assert stage.embedder.source_encodes == 1


def test_score_stage_without_clip(base_cfg, frame):
    stage = make_stage(base_cfg, ClipConfig(enabled=False), FilterConfig())
    assert stage.embedder is None
    edited = edited_of(frame)
    [out] = score(stage, [stage_row(frame, edited, reasoning_of(frame, edited))])
    assert_finished(out)
    assert out["scorer"] == NO_CLIP
    assert json.loads(out["scorer"]) == {"model": None, "clip": "disabled"}
    assert {k: out["scores"][k] for k in (*CLIP_SCORES, *TRAJECTORY)} == dict.fromkeys((*CLIP_SCORES, *TRAJECTORY))
    assert (out["keep"], texts(out)) == (False, [
        "clip_text unavailable (bound clip_text_min 0.20)",
        "clip_image unavailable (bound clip_image_min 0.70)",
        "clip_direction unavailable (bound clip_direction_min 0.20)",
    ])
    weight_free = make_stage(base_cfg, ClipConfig(enabled=False), FilterConfig(**{**NO_BOUNDS, "ssim_min": 0.2}))
    [out] = score(weight_free, [stage_row(frame, edited)])
    assert (out["keep"], texts(out)) == (True, [])


def test_score_stage_unknown_settings_key_fails_the_row(base_cfg, clip_cfg, frame):
    stage = make_stage(base_cfg, clip_cfg, FilterConfig())
    [out] = score(stage, [stage_row(frame, edited_of(frame), scenario="nope")])
    assert (out["error"], out["error_stage"]) == ("score: KeyError: 'nope/e'", "score")
