"""dataset.schema, dataset.sink and dataset.manifest without Ray or models: milliseconds each."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chronoedit_sim.config import OutputConfig, load_config
from chronoedit_sim.dataset import manifest as mf
from chronoedit_sim.dataset.schema import (COLUMNS, SCHEMA, SCHEMA_VERSION, base_row, fail_row, finish_row,
                                           hf_features, image_struct, schema_with_metadata, without_images)
from chronoedit_sim.dataset.jobindex import JobIndex
from chronoedit_sim.dataset.sink import DatasetWriter, ShardWriter, complete_shards, remove_partial_shards, resume_index
from chronoedit_sim.dataset.stats import RunCounts
from chronoedit_sim.scenario import EditSettings

JOB = {"job_id": "j0", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": 1, "source_id": "a.png",
       "source_uri": "/x/a.png", "prompt": "p", "negative_prompt": "", "target_caption": "t",
       "source_caption": "c", "labels": {"inserted": "car"}, "choices": {}}


def row(job_id="j0", keep=True, **extra):
    r = base_row({**JOB, "job_id": job_id}, "run1")
    r.update(keep=keep, source_image=image_struct(b"png-bytes", "a.png"), reasoning_frames=[image_struct(b"f", "r0")],
             reasoning_video={"bytes": b"mp4", "path": "reasoning.mp4"}, **extra)
    return finish_row(r)


def test_base_row_has_every_column_in_schema_order():
    assert tuple(base_row(JOB, "r")) == COLUMNS == tuple(SCHEMA.names)


def test_hf_features_declare_images_and_the_video_as_plain_values():
    f = hf_features()
    assert f["source_image"] == {"_type": "Image"}
    assert f["reasoning_frames"] == {"feature": {"_type": "Image"}, "_type": "Sequence"}
    assert f["reasoning_video"]["bytes"] == {"dtype": "binary", "_type": "Value"}  # not Image, not Video
    assert f["reject_reasons"]["feature"]["value"] == {"dtype": "float32", "_type": "Value"}
    meta = json.loads(schema_with_metadata({"run_id": "x"}).metadata[b"chronoedit_sim"])
    assert meta == {"schema_version": SCHEMA_VERSION, "run_id": "x"} and SCHEMA_VERSION == "7"
    # the ground truth reads as a list of objects in datasets, each box a list of four floats
    ann = f["annotations"]["feature"]
    assert f["annotations"]["_type"] == "Sequence" and ann["box"] == {"feature": {"dtype": "float32", "_type": "Value"},
                                                                      "_type": "Sequence"}
    assert ann["label"] == ann["attributes"] == {"dtype": "string", "_type": "Value"}
    assert f["episode"]["timestamp"] == {"dtype": "float64", "_type": "Value"}


def test_fail_and_finish_row():
    r = base_row(JOB, "r")
    r.update(_source_rgb=object(), _nodes={"edit": "n1"}, timings_ms={"read_ms": 2.0}, keep=True)
    fail_row(r, "encode", "OSError: disk")
    done = finish_row(r)
    assert tuple(done) == COLUMNS
    assert (done["error"], done["error_stage"], done["keep"]) == ("encode: OSError: disk", "encode", False)
    assert json.loads(done["nodes"]) == {"edit": "n1"} and done["timings_ms"]["read_ms"] == 2.0
    assert done["created_at"] is not None


def test_without_images_empties_every_bulky_column():
    slim = without_images(row())
    assert (slim["source_image"], slim["edited_image"], slim["reasoning_video"]) == (None, None, None)
    assert slim["reasoning_frames"] == [] and slim["job_id"] == "j0"


def test_shards_are_bounded_atomic_and_indexed(tmp_path):
    writer = ShardWriter(tmp_path, OutputConfig(shard_max_rows=2))
    for i in range(5):
        writer.add(row(f"j{i}"))
    assert len(complete_shards(tmp_path)) == 2 and writer.rows_written == 4  # the fifth is buffered
    writer.flush()
    shards = complete_shards(tmp_path)
    assert [pq.read_metadata(s).num_rows for s in shards] == [2, 2, 1]
    assert pq.read_schema(shards[0]).remove_metadata() == SCHEMA
    assert resume_index(tmp_path) == JobIndex.of(f"j{i}" for i in range(5))
    assert not list((tmp_path / "data").glob(".*"))  # no temporary file left


def test_a_crash_before_rename_leaves_at_most_a_hidden_tmp_that_the_next_run_removes(tmp_path):
    class Crash(Exception):
        pass

    def before_rename(tmp):
        assert tmp.name.startswith(".") and tmp.stat().st_size > 0  # complete, not yet visible
        raise Crash

    writer = ShardWriter(tmp_path, OutputConfig(shard_max_rows=1), before_rename=before_rename)
    with pytest.raises(Crash):
        writer.add(row())
    # an exception (Ctrl-C included) takes the temporary file with it
    assert complete_shards(tmp_path) == [] and len(resume_index(tmp_path)) == 0
    assert not list((tmp_path / "data").iterdir())
    # a kill -9 leaves it (the slow driver-kill test does it for real): hidden, and removed by the next run
    (tmp_path / "data" / ".part-x.parquet.0a1b2c3d.tmp").write_bytes(b"complete but never renamed")
    assert complete_shards(tmp_path) == [] and len(resume_index(tmp_path)) == 0
    assert remove_partial_shards(tmp_path) == 1 and not list((tmp_path / "data").iterdir())


def test_rejected_rows_go_to_the_record_without_images(tmp_path):
    writer = DatasetWriter(tmp_path, OutputConfig())
    writer.add(row("kept"), write_rejected=False)
    writer.add(row("rej", keep=False), write_rejected=False)
    writer.add(row("rej2", keep=False), write_rejected=True)
    writer.flush()
    assert writer.rows_in_shards == 3
    data = pq.read_table(complete_shards(tmp_path)[0]).to_pylist()
    rejected = pq.read_table(complete_shards(tmp_path, "rejected")[0]).to_pylist()
    assert [r["job_id"] for r in data] == ["kept", "rej2"]
    assert [r["job_id"] for r in rejected] == ["rej"] and rejected[0]["source_image"] is None
    assert resume_index(tmp_path) == JobIndex.of(["kept", "rej", "rej2"])


def test_manifest_start_and_finish(tmp_path):
    cfg = load_config(["model=tiny", "model.path=/m"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".part-x.parquet.tmp").write_bytes(b"partial")
    settings = {"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)}
    started = mf.start_manifest(tmp_path, None, cfg, "h1", [], "run1", settings, overrides=["seed=1"])
    assert started["runs"][-1]["partial_shards_removed"] == 1
    # the active bounds of each edit, for the report's charts (the defaults: InstructPix2Pix's)
    assert started["bounds"] == {"s/e": {"clip_text_min": 0.2, "clip_image_min": 0.7, "clip_direction_min": 0.2}}
    assert mf.read_manifest(tmp_path)["runs"][-1]["status"] == "running"
    writer = DatasetWriter(tmp_path, cfg.output)
    counts = RunCounts(planned=3, planned_by_edit={"s/e": 3, "s/other": 2})
    first = dict(text_encoder_calls=2, image_encoder_calls=1, vae_encode_calls=1, transformer_forwards=8,
                 vae_decode_calls=1)
    warm = {**first, "text_encoder_calls": 0, "image_encoder_calls": 0, "vae_encode_calls": 0}
    for r in (row("a", component_calls=first), row("b", keep=False, component_calls=warm),
              fail_row(row("c"), "read", "bad")):
        writer.add(r, True)
        counts.add(r)
    writer.flush()
    lines = []
    assert mf.finish_manifest(tmp_path, started, counts, 2.0, 0.5, lines.append) == 0
    done = mf.read_manifest(tmp_path)
    calls = {"text_encoder_calls": 2, "image_encoder_calls": 1, "vae_encode_calls": 1, "transformer_forwards": 16,
             "vae_decode_calls": 2}  # summed over the rows, read back from the shards
    assert done["counts"] == {"planned": 3, "written": 3, "kept": 1, "rejected": 1, "failed": 1,
                              "failed_by_stage": {"read": 1}, "component_calls": calls}
    assert done["runs"][-1]["counts"]["component_calls"] == calls  # this run's, from its own rows
    assert done["runs"][-1]["status"] == "finished" and done["runs"][-1]["jobs_per_s"] == 1.5
    # planned per edit, beside what was written (an edit with nothing written yet still shows)
    assert {k: (v["planned"], v["written"]) for k, v in done["filter_stats"].items()} == {"s/e": (3, 3),
                                                                                          "s/other": (2, 0)}
    assert done["schema_version"] == SCHEMA_VERSION and done["overrides"] == ["seed=1"]
    assert lines[0] == f"planned 3, written 3 this run (0 resumed-skipped), kept 1, rejected 1, failed 1; " \
                       f"{tmp_path}: 3 rows in all; 2.0s"
    # above the failed fraction: exit 3, and the reason said
    lines.clear()
    assert mf.finish_manifest(tmp_path, started, counts, 2.0, 0.2, lines.append) == 3
    assert lines[-1] == "error: 33.3% of rows failed, above runtime.max_failed_fraction=0.2"
    # a resumed run keeps the history
    again = mf.start_manifest(tmp_path, done, cfg, "h1", [], "run2", settings)
    assert [r["run_id"] for r in again["runs"]] == ["run1", "run2"]
    assert pa.types.is_struct(SCHEMA.field("reject_reasons").type.value_type)
