"""`chronoedit-sim reproduce OUT JOB_ID`: one row's job edited again from what the dataset recorded (#24)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from chronoedit_sim.cli import main
from chronoedit_sim.runtime.output import OutputConflict
from chronoedit_sim.runtime.reproduce import reproduce


def first_job(out) -> str:
    rows = pq.ParquetDataset(str(out / "data")).read(columns=["job_id", "error"]).to_pylist()
    return next(r["job_id"] for r in rows if r["error"] is None)


def test_reproduce_on_a_tiny_run_is_bit_exact_on_cpu(scored_dataset, capsys):
    job = first_job(scored_dataset)
    assert main(["reproduce", str(scored_dataset), job, "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"job {job}: bit-exact: the new edit equals the stored one (") and "cpu" in line


def test_reproduce_says_how_much_and_why_when_the_edit_differs(scored_dataset, tmp_path):
    """A dataset whose stored edit is not what the job gives (here: a copy whose run.json claims another
    torch): exit 1, the largest difference and the recorded reasons."""
    copy = shutil.copytree(scored_dataset, tmp_path / "copy")
    manifest = json.loads((copy / "run.json").read_text())
    manifest["packages"]["torch"] = "0.0-elsewhere"
    (copy / "run.json").write_text(json.dumps(manifest))
    job = first_job(copy)
    lines = []
    assert reproduce(str(copy), job, echo=lines.append) == 0  # the pixels are the same: bit-exact still
    assert lines[-1].startswith(f"job {job}: bit-exact")
    manifest["config"]["generation"]["guidance_scale"] += 1.0  # the job is no longer the one stored
    (copy / "run.json").write_text(json.dumps(manifest))
    lines.clear()
    assert reproduce(str(copy), job, echo=lines.append) == 1
    assert lines[0].startswith(f"job {job}: differs: max ") and "grey levels" in lines[0]
    assert any(line.startswith("  torch 0.0-elsewhere then, ") for line in lines[1:])


def test_reproduce_refuses_other_weights_and_unknown_jobs(scored_dataset, tmp_path):
    copy = shutil.copytree(scored_dataset, tmp_path / "copy")
    manifest = json.loads((copy / "run.json").read_text())
    manifest["weights"]["editor vae"] = "0000000000000000"
    (copy / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputConflict, match="the weights changed since the output was made: editor vae"):
        reproduce(str(copy), first_job(copy))
    with pytest.raises(Exception, match="no row with job_id nope"):
        reproduce(str(copy), "nope")
