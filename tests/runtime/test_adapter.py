"""Stages through the generic adapter, without Ray: failures become rows naming their stage, the in-flight
ledger names the job a worker is on, and the last stage's rows leave with only schema columns."""

from __future__ import annotations

import numpy as np

from chronoedit_sim.config import load_config
from chronoedit_sim.dataset.schema import COLUMNS, base_row
from chronoedit_sim.engine.editor import ModelIdentity
from chronoedit_sim.runtime import ledger
from chronoedit_sim.runtime.adapter import PAYLOAD, StageAdapter, from_payload, to_payload
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.stages.base import Resources, Stage
from chronoedit_sim.stages.edit import EditStage
from chronoedit_sim.stages.encode import EncodeStage
from chronoedit_sim.stages.score import ScoreStage
from helpers import JOB



class ExplodingEditor:
    identity = ModelIdentity("m", "h" * 16, "tiny", True, [])

    def edit_samples(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")


class LedgerSpy(Stage):
    """Reads the ledger while it works, as a post-mortem would after a kill at this point."""

    name = "spy"

    def __init__(self, state_dir):
        self.state_dir, self.seen = state_dir, None

    def process_row(self, row):
        self.seen = ledger.deaths_per_job(self.state_dir)
        return row


def test_a_failing_edit_is_an_error_row_naming_its_stage(frame, tmp_path, tiny_clip_dir):
    # only the CLIP must exist (the score stage loads it); the editor is replaced by a stub
    cfg = load_config(["model=tiny", "model.path=/unused", f"scoring.clip.model=local-dir:{tiny_clip_dir}"])
    settings = {"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)}
    edit = EditStage(cfg.model, settings, Resources())
    edit.editor = ExplodingEditor()
    row = base_row(JOB, "run1")
    row.update(_source_rgb=frame, timings_ms={"read_ms": 1.0})
    (out,) = edit.process_batch([row])
    assert out["error"] == "edit: RuntimeError: CUDA out of memory (simulated)"
    assert out["error_stage"] == "edit" and out["keep"] is False
    assert out["model_hash"] == "h" * 16  # the identity is recorded even when the edit fails
    # later stages pass it through untouched; the last one finishes it to the schema's columns
    (encoded,) = StageAdapter(EncodeStage(settings, Resources())).process([out])
    assert encoded["edited_image"] is None
    score = ScoreStage(settings, cfg.scoring.clip, Resources())
    (final,) = [r for p in StageAdapter(score, last=True)(to_payload([encoded])) for r in from_payload(p)]
    assert final["keep"] is False and tuple(final) == COLUMNS and final["scores"] is None
    assert final["error_stage"] == "edit"


def test_the_ledger_names_the_batch_in_flight_and_forgets_it_when_done(tmp_path):
    spy = LedgerSpy(tmp_path)
    adapter = StageAdapter(spy, state_dir=str(tmp_path))
    rows = [base_row({**JOB, "job_id": j}, "r") for j in ("j1", "j2")]
    failed = base_row({**JOB, "job_id": "j3"}, "r")
    failed["error"] = "read: bad"
    adapter.process([*rows, failed])
    assert spy.seen == {"j1": (1, "spy"), "j2": (1, "spy")}  # what a process dying here would leave behind
    assert ledger.deaths_per_job(tmp_path) == {}  # a batch that finished leaves nothing


def test_an_exception_in_one_row_fails_only_that_row():
    class Picky(Stage):
        name = "picky"

        def process_row(self, row):
            if row["job_id"] == "bad":
                raise ValueError("no")
            row["prompt"] = "seen"
            return row

    rows = [base_row({**JOB, "job_id": j}, "r") for j in ("ok", "bad")]
    ok, bad = Picky().process_batch(rows)
    assert (ok["prompt"], ok["error"]) == ("seen", None)
    assert (bad["error"], bad["error_stage"], bad["keep"]) == ("picky: ValueError: no", "picky", False)


def test_a_frames_jobs_travel_to_the_edit_stage_as_one_ray_row_and_leave_it_one_by_one():
    """The read stage packs each frame's jobs by the edit stage's group_by: one Ray Data row, so one
    actor and one batch get them all; the edit stage's own output travels one row at a time."""
    class Fanout(Stage):
        name = "fanout"

        def process_batch(self, rows):
            return [{**row, "job_id": f"{row['source_id']}#{k}"} for row in rows for k in range(3)]

    frames = [base_row({**JOB, "source_id": f"f{i}"}, "r") for i in range(2)]
    assert EditStage.group_by == "source_id"
    payloads = list(StageAdapter(Fanout(), pack=EditStage.group_by)(to_payload(frames)))
    assert [len(p[PAYLOAD]) for p in payloads] == [1, 1]  # one Ray row per frame
    assert [[r["job_id"] for r in from_payload(p)] for p in payloads] == [["f0#0", "f0#1", "f0#2"],
                                                                          ["f1#0", "f1#1", "f1#2"]]
    # a frame's decoded pixels are pickled once for all its jobs
    one = base_row({**JOB, "source_id": "big"}, "r")
    one["_source_rgb"] = np.zeros((480, 832, 3), np.uint8)
    (blob,) = next(iter(StageAdapter(Fanout(), pack="source_id")(to_payload([one]))))[PAYLOAD]
    assert 480 * 832 * 3 < len(blob) < 2 * 480 * 832 * 3
    unpacked = list(StageAdapter(Fanout())(to_payload(frames)))
    assert len(unpacked) == 6 and all(len(p[PAYLOAD]) == 1 for p in unpacked)
