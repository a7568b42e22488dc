"""The issue's end to end: a real run (Ray, the tiny model) over a KITTI tree with labels, `export --format
coco` and `evaluate` through the command line. The tiny model's pixels are noise (random weights); the
labels are what this checks: carried by the keep policy and scaled to the edited size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import SCORED_LABELS
from perception_helpers import write_oracle

from chronoedit_sim.cli import main

pytestmark = pytest.mark.ray


def test_a_kitti_run_exports_its_labels_scaled_and_the_oracle_scores_one(scored_dataset, tmp_path, capsys):
    from pycocotools.coco import COCO

    assert main(["inspect", str(scored_dataset)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ground truth:"))
    assert line.startswith("ground truth: 4 boxes (0 inserted, 0 removed, 1 ignore regions); Car 2, ")
    assert {"Pedestrian 1", "Cyclist 1"} <= set(line.split("; ")[1].split(", "))
    out = tmp_path / "bench"
    assert main(["export", str(scored_dataset), "--format", "coco", "--output", str(out)]) == 0
    assert "8 image(s) in 2 split(s) (coco)" in capsys.readouterr().out
    splits = sorted(p.name for p in (out / "annotations").iterdir())
    assert splits == ["instances_clean.json", "instances_tiny_edit__add_car.json"]
    manifest = {Path(m.split(",")[1]).name: m.split(",") for m in (out / "manifest.csv").read_text().splitlines()[1:]}
    for split, scale, size in (("clean", 1, (80, 48)), ("tiny_edit__add_car", 2, (160, 96))):
        coco = COCO(str(out / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == 4
        for img in coco.loadImgs(coco.getImgIds()):
            assert (img["width"], img["height"]) == size
            frame = int(Path(manifest[img["file_name"]][3]).stem)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            got = sorted((coco.cats[a["category_id"]]["name"], tuple(a["bbox"])) for a in anns if not a["iscrowd"])
            want = sorted((label, (scale * x0, scale * y0, scale * (x1 - x0), scale * (y1 - y0)))
                          for label, (x0, y0, x1, y1) in SCORED_LABELS[frame] if label != "DontCare")
            assert got == want, (split, frame)
            # KITTI's DontCare: one crowd (ignore) region per category
            assert len([a for a in anns if a["iscrowd"]]) == (3 if frame == 3 else 0)

    # evaluate writes into the dataset (eval.json, its report): a copy, so the shared dataset stays as it was
    dataset = tmp_path / "dataset"
    shutil.copytree(scored_dataset, dataset)
    spec = write_oracle(tmp_path / "oracle.py", dataset)
    assert main(["report", str(dataset)]) == 0
    assert main(["evaluate", str(dataset), "--detector", spec, "--batch-size", "3", "--bootstrap", "100"]) == 0
    printed = capsys.readouterr().out
    assert "clean 1.000 [1.000, 1.000]  mPC 1.000 [1.000, 1.000]  rPC 1.000 [1.000, 1.000]" in printed and f"report: {dataset / 'report' / 'index.html'}" in printed
    result = json.loads((dataset / "eval.json").read_text())
    assert (result["clean_ap"], result["rPC"], result["splits"]["tiny_edit__add_car"]["ap"]) == (1.0, 1.0, 1.0)
    assert result["images"] == 8 and result["failed_images"] == 0
    page = (dataset / "report" / "index.html").read_text()
    assert '<section id="evaluation"><h2>Evaluation</h2>' in page and "mPC 1.000 [1.000, 1.000], rPC 1.000 [1.000, 1.000]" in page


def test_a_dataset_of_schema_6_without_the_backend_column_is_read_as_chronoedits(scored_dataset, tmp_path, capsys):
    """Rows written before schema 7 have no `backend`: all were ChronoEdit edits, and inspect, the report and
    evaluate count them so instead of failing on the missing column."""
    import pyarrow.parquet as pq

    from chronoedit_sim.dataset.manifest import read_manifest, write_manifest

    dataset = tmp_path / "old"
    shutil.copytree(scored_dataset, dataset, ignore=shutil.ignore_patterns("report"))
    for shard in (dataset / "data").glob("*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["backend"]), shard)
    write_manifest(dataset, {**read_manifest(dataset), "schema_version": "6"})
    assert main(["inspect", str(dataset)]) == 0
    printed = capsys.readouterr().out
    assert "by backend: chronoedit 4 rows (kept " in printed
    assert "NOTE: rows from a RANDOM-WEIGHT model (tiny checkpoint): the edits are noise\n" in printed
    assert main(["report", str(dataset)]) == 0
    assert "<td>chronoedit</td><td>4</td>" in (dataset / "report" / "index.html").read_text()
    spec = write_oracle(tmp_path / "oracle.py", dataset)
    assert main(["evaluate", str(dataset), "--detector", spec, "--bootstrap", "0"]) == 0
    assert list(json.loads((dataset / "eval.json").read_text())["by_backend"]) == ["chronoedit"]
    # --where on the missing column is decided on the value its rows have, in the scan every command uses
    from chronoedit_sim.dataset.where import scan

    def where(*exprs):
        return [r["job_id"] for batch in scan(dataset, list(exprs), ["job_id", "backend"], 100) for r in batch]

    every = where("error=null") + where("error!=null")
    assert len(every) == 4 and sorted(where("backend=chronoedit")) == sorted(every)
    assert where("backend=corruption") == [] and where("backend=null") == [] and where("backend!=chronoedit") == []
    assert where("backend!=corruption,outcome=kept") == where("outcome=kept") != []


def test_inspect_says_which_backends_rows_come_from_a_random_model(scored_dataset, tmp_path):
    """In a run that mixes the tiny editor with corruptions, the corruptions' rows are real pixels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chronoedit_sim.dataset.inspect import summarize

    dataset = tmp_path / "mixed"
    shutil.copytree(scored_dataset, dataset, ignore=shutil.ignore_patterns("report"))
    shard = sorted((dataset / "data").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    corrupted = [i < 1 for i in range(table.num_rows)]  # the shard's first row as if a corruption's
    backends = ["corruption" if c else b for c, b in zip(corrupted, table["backend"].to_pylist())]
    for name, values in (("backend", backends), ("random_weights", [not c for c in corrupted])):
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name),
                                 pa.array(values, table.schema.field(name).type))
    pq.write_table(table, shard)
    assert ("NOTE: rows from a RANDOM-WEIGHT model (tiny checkpoint): the edits are noise (rows of chronoedit: 3; "
            "not those of corruption: 1)") in summarize(dataset)
