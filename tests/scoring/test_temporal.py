"""temporal_flicker (#13): near zero for a fake editor that makes the same deterministic change on every frame
of a moving sequence, large for one that changes at random per frame; the driver-side scorer that waits for
each row's previous frame, however rows come back, and bounds the score."""

from __future__ import annotations

import numpy as np
import pytest

from chronoedit_sim.config import FilterConfig
from chronoedit_sim.dataset.encode import encode_image
from chronoedit_sim.runtime.sequences import SequenceScorer
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.scoring.metrics import temporal_flicker

H, W, N = 96, 160, 6


def moving_sequence() -> list[np.ndarray]:
    """A smooth texture panning 3 px per frame, as a camera would."""
    y, x = np.mgrid[0:H, 0:W + 3 * N]
    big = np.stack([128 + 80 * np.sin(x / 7.0) * np.cos(y / 9.0), 128 + 60 * np.sin((x + y) / 11.0),
                    128 + 70 * np.cos(x / 13.0)], -1).astype(np.uint8)
    return [np.ascontiguousarray(big[:, 3 * i:3 * i + W]) for i in range(N)]


def steady(frame: np.ndarray, i: int) -> np.ndarray:
    """The same change on every frame: a warmer, darker grade."""
    out = frame.astype(np.float32) * np.array([0.9, 0.75, 0.6]) + 10
    return np.clip(out, 0, 255).astype(np.uint8)


def flickering(frame: np.ndarray, i: int) -> np.ndarray:
    """A different change on every frame: a random colour cast and a random block."""
    rng = np.random.default_rng(i)
    out = np.clip(frame.astype(np.float32) * rng.uniform(0.4, 1.2, 3), 0, 255).astype(np.uint8)
    y0, x0 = rng.integers(0, H - 30), rng.integers(0, W - 40)
    out[y0:y0 + 30, x0:x0 + 40] = rng.integers(0, 255, 3)
    return out


def flickers(editor) -> list[float]:
    src = moving_sequence()
    edits = [editor(f, i) for i, f in enumerate(src)]
    return [temporal_flicker(src[i - 1], src[i], edits[i - 1], edits[i]) for i in range(1, N)]


def test_a_steady_edit_does_not_flicker_and_a_random_one_does():
    calm, wild = flickers(steady), flickers(flickering)
    assert max(calm) < 0.005
    assert min(wild) > 0.04 and np.mean(wild) > 0.1
    assert flickers(lambda f, i: f) == [0.0] * (N - 1)  # the source itself


def _rows(editor, order, done=()):
    """Rows of one camera stream, each with the link the plan gives it (`done`: frames already in the dataset)."""
    src = moving_sequence()
    rows = []
    for i in order:
        previous = f"j{i - 1}" if i else None
        rows.append({"job_id": f"j{i}", "scenario": "s", "edit_id": "e", "error": None, "keep": True,
                     "reject_reasons": [], "scores": {"ssim": 0.5},
                     "source_image": {"bytes": encode_image(src[i], "png")},
                     "edited_image": {"bytes": encode_image(editor(src[i], i), "png")},
                     "sequence_link": {"previous": previous, "previous_done": previous in done, "has_next": i < N - 1}})
    return rows


def _scorer(read_done=lambda job_ids: [], **bounds):
    settings = {"s/e": EditSettings(generation=None, trajectory=None, filter=FilterConfig(**bounds))}
    return SequenceScorer(settings, max_side=0, read_done=read_done)


def test_rows_wait_for_their_previous_frame_and_leave_in_stream_order():
    scorer = _scorer(temporal_flicker_max=0.05)
    out = []
    for row in _rows(flickering, [2, 0, 3, 1, 5, 4]):
        out.append([r["job_id"] for r in scorer.add(row)])
    assert out == [[], ["j0"], [], ["j1", "j2", "j3"], [], ["j4", "j5"]]
    assert scorer.waiting == {} and scorer.frames == {}  # nothing held once the stream is through


def test_the_first_frame_is_steady_a_failed_previous_frame_leaves_no_score_and_bounds_apply():
    scorer = _scorer(temporal_flicker_max=0.05)
    rows = _rows(flickering, range(N))
    rows[2] = {**rows[2], "error": "edit: boom", "scores": None, "keep": False}
    done = [r for row in rows for r in scorer.add(row)]
    flick = [r["scores"] and r["scores"]["temporal_flicker"] for r in done]
    assert flick[0] == 0.0 and flick[2] is None and flick[3] is None and flick[1] > 0.05
    assert [x["score"] for x in done[1]["reject_reasons"]] == ["temporal_flicker"] and done[1]["keep"] is False
    assert done[3]["reject_reasons"][0]["text"] == ("temporal_flicker unavailable: the previous frame of its "
                                                    "sequence has no edit")


def test_a_row_whose_previous_frame_never_came_back_is_written_at_the_end_and_a_resume_reads_it_back():
    scorer = _scorer()
    rows = _rows(steady, range(N))
    assert [r["job_id"] for row in rows[2:] for r in scorer.add(row)] == []
    assert [r["scores"]["temporal_flicker"] for r in scorer.flush()] == [None] * 4
    stored = _rows(steady, [1])
    resumed = _scorer(read_done=lambda job_ids: [r for r in stored if r["job_id"] in job_ids])
    scored = [r for row in _rows(steady, range(2, N), done={"j1"}) for r in resumed.add(row)]
    assert len(scored) == 4 and all(r["scores"]["temporal_flicker"] == pytest.approx(0, abs=0.005) for r in scored)


def test_a_flicker_bound_rejects_a_frame_outside_any_sequence_and_a_bad_frame_costs_only_its_score():
    scorer = _scorer(temporal_flicker_max=0.05)
    lone_row = {**_rows(steady, [0])[0], "job_id": "not-in-a-sequence"}
    del lone_row["sequence_link"]
    (lone,) = scorer.add(lone_row)
    assert lone["keep"] is False and lone["reject_reasons"][0]["text"] == (
        "temporal_flicker unavailable: the frame is not part of a sequence")
    rows = _rows(steady, range(2))
    rows[1]["edited_image"] = {"bytes": b"not an image"}
    first, broken = [r for row in rows for r in scorer.add(row)]
    assert first["scores"]["temporal_flicker"] == 0.0 and broken["scores"]["temporal_flicker"] is None
    assert broken["reject_reasons"][0]["text"] == "temporal_flicker unavailable: its own stored images cannot be read"
