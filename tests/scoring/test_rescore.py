"""`chronoedit-sim score`: rescoring a dataset without the edit model, exactly once, source untouched."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
import pytest

from chronoedit_sim.runtime.run import OutputConflict
from chronoedit_sim.runtime.rescore import rescore

pytestmark = pytest.mark.ray
QUIET = {"quiet": True, "echo": lambda *_: None}
@pytest.fixture(scope="module")
def dataset(scored_dataset):
    return scored_dataset


def keep_column(out):
    rows = pq.ParquetDataset(str(out / "data")).read(columns=["job_id", "keep"]).to_pylist()
    return {r["job_id"]: r["keep"] for r in rows}


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def middle_ssim(folder):
    """A bound between the 2nd and 3rd lowest SSIM: it rejects two rows of four and keeps two."""
    ssims = sorted(r["scores"]["ssim"] for r in pq.ParquetDataset(str(folder / "data")).read().to_pylist())
    assert ssims[1] < ssims[2], ssims
    return (ssims[1] + ssims[2]) / 2


def test_same_thresholds_reproduce_the_keep_column_and_leave_the_source_alone(dataset, tmp_path):
    # under an active bound: the first rescore sets it, the second inherits it from run.json unchanged
    middle = middle_ssim(dataset)
    bounded = tmp_path / "bounded"
    source_before = digest(dataset)
    assert rescore(str(dataset), str(bounded), [f"filter.ssim_min={middle}"], **QUIET) == 0
    assert digest(dataset) == source_before
    keep = keep_column(bounded)
    assert set(keep.values()) == {True, False}  # the bound splits the rows
    rows = pq.ParquetDataset(str(bounded / "data")).read().to_pylist()
    assert all(r["keep"] == (r["scores"]["ssim"] >= middle) for r in rows)
    before = digest(bounded)
    assert rescore(str(bounded), str(tmp_path / "same"), [], **QUIET) == 0
    assert keep_column(tmp_path / "same") == keep
    assert digest(bounded) == before


def test_stricter_thresholds_reject_more_with_reasons(dataset, tmp_path):
    middle = middle_ssim(dataset)
    assert rescore(str(dataset), str(tmp_path / "strict"), [f"filter.ssim_min={middle}"], **QUIET) == 0
    rows = pq.ParquetDataset(str(tmp_path / "strict" / "data")).read().to_pylist()
    rejected = [r for r in rows if not r["keep"]]
    assert len(rejected) >= 2 and sum(keep_column(tmp_path / "strict").values()) <= sum(keep_column(dataset).values())
    assert all(any(x["text"] == f"ssim {r['scores']['ssim']:.2f} < {middle:.2f}" and x["limit"] == pytest.approx(middle)
                   for x in r["reject_reasons"])
               for r in rejected if r["scores"]["ssim"] < middle)


def test_write_rejected_false_keeps_rejected_rows_out_of_data_but_counted_and_resumable(dataset, tmp_path):
    out = tmp_path / "dropped"
    args = (str(dataset), str(out), ["filter.write_rejected=false", "filter.ssim_min=0.9999"])
    assert rescore(*args, **QUIET) == 0
    assert not list((out / "data").glob("*.parquet"))  # nothing kept, nothing in the dataset
    recorded = pq.ParquetDataset(str(out / "rejected")).read().to_pylist()
    assert len(recorded) == 4 and all(r["edited_image"] is None and r["reject_reasons"] for r in recorded)
    import json

    assert json.loads((out / "run.json").read_text())["counts"]["rejected"] == 4
    lines = []
    assert rescore(*args, quiet=True, echo=lines.append) == 0
    assert "written 0 this run (4 resumed-skipped)" in lines[-1]
    # those records have no images to score: rescoring them again says so (was: a TypeError on every try)
    lines = []
    assert rescore(str(out), str(tmp_path / "again"), [], quiet=True, echo=lines.append) == 0
    assert f"{out}: 4 rejected row(s) were kept without images (filter.write_rejected=false): not rescored" in lines
    assert not list((tmp_path / "again" / "data").glob("*.parquet"))


def test_rescoring_refuses_other_thresholds_into_the_same_output(dataset, tmp_path):
    out = tmp_path / "once"
    assert rescore(str(dataset), str(out), [], **QUIET) == 0
    with pytest.raises(OutputConflict, match="other thresholds or CLIP"):
        rescore(str(dataset), str(out), ["filter.ssim_min=0.5"], **QUIET)
    with pytest.raises(OutputConflict, match="must differ"):
        rescore(str(dataset), str(dataset), [], **QUIET)
