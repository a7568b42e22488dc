"""Stages through the generic adapter, without Ray: failures become rows naming their stage, the in-flight
ledger names the job a worker is on, and the last stage's rows leave with only schema columns."""

from __future__ import annotations

from chronoedit_sim.config import load_config
from chronoedit_sim.dataset.schema import COLUMNS, base_row
from chronoedit_sim.engine.editor import ModelIdentity
from chronoedit_sim.runtime import ledger
from chronoedit_sim.runtime.adapter import StageAdapter, from_payload, to_payload
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.stages.base import Resources, Stage
from chronoedit_sim.stages.edit import EditStage
from chronoedit_sim.stages.encode import EncodeStage
from chronoedit_sim.stages.score import ScoreStage

JOB = {"job_id": "j1", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": 1, "source_id": "a.png",
       "source_uri": "/x/a.png", "prompt": "p", "negative_prompt": "", "target_caption": "t",
       "source_caption": "c", "labels": {}, "choices": {}}


class ExplodingEditor:
    identity = ModelIdentity("m", "h" * 16, "tiny", True, [])

    def edit(self, *args, **kwargs):
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
    (final,) = from_payload(StageAdapter(score, last=True)(to_payload([encoded])))
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
