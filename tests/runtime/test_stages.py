"""Stages without Ray: a failing edit becomes an error row; rows leave with only schema columns."""

from __future__ import annotations

from chronoedit_sim.config import load_config
from chronoedit_sim.dataset.schema import COLUMNS, base_row
from chronoedit_sim.engine.editor import ModelIdentity
from chronoedit_sim.runtime.plan import EditSettings
from chronoedit_sim.runtime.stage import Resources, StageAdapter, from_payload, to_payload
from chronoedit_sim.runtime.stages import EditStage, deaths_per_job
from chronoedit_sim.scoring.stage import ScoreStage

JOB = {"job_id": "j1", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": 1, "source_id": "a.png",
       "source_uri": "/x/a.png", "prompt": "p", "negative_prompt": "", "target_caption": "t",
       "source_caption": "c", "labels": {}, "choices": {}}


class ExplodingEditor:
    identity = ModelIdentity("m", "h" * 16, "tiny", True, [])

    def edit(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")


def test_a_failing_edit_is_an_error_row_not_an_exception(frame, tmp_path, tiny_clip_dir):
    # only the CLIP must exist (the score stage loads it); the editor is replaced by a stub
    cfg = load_config(["model=tiny", "model.path=/unused", f"scoring.clip.model=local-dir:{tiny_clip_dir}"])
    settings = {"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)}
    stage = EditStage(cfg.model, settings, Resources(), batch_size=1, state_dir=str(tmp_path))
    stage.editor = ExplodingEditor()
    row = base_row(JOB, "run1")
    row.update(_source_rgb=frame, timings_ms={"read_ms": 1.0})
    (out,) = stage.process_batch([row])
    assert out["error"] == "edit: RuntimeError: CUDA out of memory (simulated)"
    assert out["model_hash"] == "h" * 16
    assert deaths_per_job(tmp_path) == {"j1": 1}  # the in-flight ledger names the job this process was on
    score = ScoreStage(settings, cfg.scoring.clip, Resources())
    (final,) = from_payload(StageAdapter(score)(to_payload([out])))
    assert final["keep"] is False and tuple(final) == COLUMNS
