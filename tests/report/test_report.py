"""The report of a real tiny-model run (the session's `report_dataset`), the `report` command, rescoring's
report, and what a failed or refused build does."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chronoedit_sim.cli import main
from chronoedit_sim.config import ReportConfig
from chronoedit_sim.dataset.encode import decode_rgb
from chronoedit_sim.report.build import LOCK, MARKER, ReportError, build_after_run, build_report
from conftest import MARKUP_PROMPT

pytestmark = pytest.mark.ray


def meta_of(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-meta">(.*?)</script>', page).group(1))


def test_the_run_wrote_a_report_with_overview_charts_and_failed_rows(report_dataset):
    report = report_dataset / "report"
    page = (report / "index.html").read_text()
    assert (report / MARKER).exists()
    # random weights said at the top, for the edit model and for the CLIP
    assert page.count('class="banner"') == 2 and "RANDOM WEIGHTS" in page
    # counts per scenario and edit, planned included: 3 jobs each (2 frames and the broken file)
    assert "<td>markup</td><td>add_car</td><td>3</td><td>3</td><td>2</td><td>0</td><td>1</td>" in page
    assert "<td>markup</td><td>strict</td><td>3</td><td>3</td><td>0</td><td>2</td><td>1</td><td>ssim_min 2</td>" in page
    assert "<td>all</td><td></td><td>6</td><td>6</td><td>2</td><td>2</td><td>2</td>" in page
    assert '<h2>Failed rows (2)</h2>' in page and page.count("<td>broken.png</td><td>read</td>") == 2
    assert "wall s" in page and "finished" in page and "generation:" in page  # runs table, effective config
    # the markup prompt never reaches the page or its data files as markup
    assert "<script>window" not in page
    build = report / meta_of(page)["assets"]  # this build's folder, the only one beside the page
    assert sorted(p.name for p in report.iterdir()) == sorted([LOCK, MARKER, "index.html", build.name])
    chunk = (build / "cards" / "c00000.js").read_text()
    assert "<" not in chunk and json.dumps(MARKUP_PROMPT).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026") in chunk
    charts = {p.name for p in (build / "charts").iterdir()}
    assert {"score-ssim.png", "score-clip_text.png", "rejections.png", "timings.png"} <= charts
    assert "ssim per edit" in page and "bounds drawn: markup/strict min 2" in page
    assert meta_of(page)["rows"] == 6 and meta_of(page)["pageSize"] == ReportConfig.page_size


def test_thumbnails_come_from_the_encode_stage(report_dataset):
    rows = pq.ParquetDataset(str(report_dataset / "data")).read(columns=["error", "thumbnails"]).to_pylist()
    made = [r["thumbnails"] for r in rows if r["error"] is None]
    assert len(made) == 4 and all(r["thumbnails"] is None for r in rows if r["error"])
    for thumbs in made:  # the tiny model edits at 160x96: the thumbnails keep that size at 160 px
        assert decode_rgb(thumbs["edited"]["bytes"]).shape == (96, 160, 3)
        assert thumbs["trajectory_frames"] == 9 and decode_rgb(thumbs["trajectory"]["bytes"]).shape == (96, 9 * 160, 3)
    assert "thumbnails of" not in (report_dataset / "report" / "index.html").read_text()  # none had to be made


def test_report_command_rebuilds_from_shards_without_thumbnails(report_dataset, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(report_dataset, copy, ignore=shutil.ignore_patterns("report", "_state"))
    for shard in (copy / "data").glob("*.parquet"):
        table = pq.read_table(shard)
        nulls = pa.nulls(table.num_rows, table.schema.field("thumbnails").type)
        pq.write_table(table.set_column(table.schema.get_field_index("thumbnails"), "thumbnails", nulls), shard)
    out = tmp_path / "elsewhere"
    assert main(["report", str(copy), "--output", str(out), "report.page_size=2", "report.full_images=false"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'index.html'}"
    page = (out / "index.html").read_text()
    assert "thumbnails of 4 row(s) made from their images" in page and meta_of(page)["pageSize"] == 2
    first = out / meta_of(page)["assets"]
    assert len(list((first / "t").rglob("*-t.webp"))) == 4 and not (first / "f").exists()
    # again into the same folder: replaced whole, nothing left beside it
    assert main(["report", str(copy), "--output", str(out)]) == 0
    second = out / meta_of((out / "index.html").read_text())["assets"]
    assert (second / "f").exists() and sorted(p.name for p in out.iterdir()) == sorted([LOCK, MARKER, "index.html", second.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "elsewhere"]
    # a folder that is not a report is never replaced; a folder that is not a dataset has no report
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("years of work")
    assert main(["report", str(copy), "--output", str(tmp_path / "notes")]) == 2
    assert main(["report", str(tmp_path / "notes")]) == 2
    err = capsys.readouterr().err
    assert "is not a chronoedit-sim report; choose another --output" in err and "no run.json" in err
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "years of work"


def test_rescoring_writes_its_own_report(report_dataset, tmp_path, one_torch_thread):
    from chronoedit_sim.runtime.rescore import rescore

    lines = []
    # the run's command line (report.enabled=true among it) is taken over by the rescoring
    assert rescore(str(report_dataset), str(tmp_path / "rescored"), ["filter.ssim_min=0.99"], quiet=True,
                   echo=lines.append) == 0
    assert lines[-1] == f"report: {tmp_path / 'rescored' / 'report' / 'index.html'}"
    page = (tmp_path / "rescored" / "report" / "index.html").read_text()
    assert f"Rescored from {report_dataset.resolve()}" in page
    assert "<td>markup</td><td>add_car</td><td>3</td><td>3</td><td>0</td><td>2</td><td>1</td><td>ssim_min 2</td>" in page


def test_a_failed_report_is_one_line_and_never_the_runs_failure(tmp_path, monkeypatch):
    from chronoedit_sim.report import build

    lines = []
    build_after_run(tmp_path, ReportConfig(), lines.append)  # no dataset here: the build raises
    assert lines == [f"error: the report was not written (ReportError: {tmp_path}: no run.json: not a chronoedit-sim "
                     f"dataset); the dataset is complete; build it with `chronoedit-sim report {tmp_path}`"]

    def broken(*args, **kwargs):
        raise MemoryError("charts")

    monkeypatch.setattr(build, "build_report", broken)
    build_after_run(tmp_path, ReportConfig(), lines.append)
    assert lines[-1].startswith("error: the report was not written (MemoryError: charts)")
    with pytest.raises(ReportError):
        build_report(tmp_path)
