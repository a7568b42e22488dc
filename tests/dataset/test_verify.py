"""`chronoedit-sim verify`: a whole dataset passes; each kind of damage is named. Pure Python, fake datasets."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from verify_helpers import assert_whole, fake_row, finish, truncate, write_dataset

from chronoedit_sim.cli import build_parser
from chronoedit_sim.config import OutputConfig
from chronoedit_sim.dataset.lock import OutputLock
from chronoedit_sim.dataset.sink import REJECTED, ShardWriter, without_images
from chronoedit_sim.dataset.verify import verify
from chronoedit_sim.runtime import output


def cli(*argv) -> int:
    args = build_parser().parse_args(["verify", *map(str, argv)])
    return args.func(args)


@pytest.fixture
def whole(tmp_path):
    out = tmp_path / "out"
    write_dataset(out, 3)
    finish(out, planned=3)
    return out


def test_a_whole_dataset_passes_with_exit_0(whole, capsys):
    verdict = assert_whole(whole)
    assert verdict.lines() == [f"{whole}: whole: 3 rows in 3 shard(s) (data/ 3, rejected/ 0), every job_id once, "
                               "counts agree with run.json, 6 image(s) and video(s) decoded"]
    assert cli(whole, "--images") == 0
    assert capsys.readouterr().out.startswith(f"{whole}: whole: 3 rows")


def test_a_truncated_shard_makes_it_not_whole_with_exit_1_and_a_summary(whole, capsys):
    shard = sorted((whole / "data").glob("*.parquet"))[1]
    truncate(shard)
    assert cli(whole) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (f"{whole}: NOT whole: 2 problem(s); 2 readable rows in 2 readable shard(s) "
                          "(data/ 2, rejected/ 0)")
    assert printed[1].startswith(f"problem: 1 unreadable shard(s): data/{shard.name} (Parquet magic bytes not found")
    assert printed[1].endswith("the next run into this output moves them to _state/quarantine/ and does their "
                               "jobs again")
    assert printed[2] == ("problem: run.json counts (written 3, kept 3, rejected 0, failed 0) disagree with the shards "
                          "(written 2, kept 2, rejected 0, failed 0)")


def test_a_job_in_both_data_and_rejected_is_a_duplicate(tmp_path):
    out = tmp_path / "out"
    shards = write_dataset(out, 3)
    record = ShardWriter(out, OutputConfig(), part=REJECTED)
    record.add(without_images(fake_row(1, keep=False)))
    record.flush()
    finish(out, planned=4)
    assert verify(out).problems == [f"1 job_id(s) appear more than once: job1 in data/{shards[1].name} and "
                                    f"rejected/{record.shards[0].name}"]


def test_missing_jobs_an_unfinished_run_and_a_writer_at_work_are_named(whole):
    finish(whole, planned=5)
    assert verify(whole).problems == ["run.json planned 5 jobs but the shards hold 3 rows"]
    finish(whole, status="running")
    assert verify(whole).problems == ["the last run (r0, started t0) did not finish: rerun the same command to "
                                      "complete it"]
    finish(whole, planned=3)
    with OutputLock(whole, command="chronoedit-sim run x.yaml"):
        problems = verify(whole).problems
    assert len(problems) == 1 and problems[0].startswith("a writer is at work (pid ")
    assert problems[0].endswith("`chronoedit-sim run x.yaml`): verify once it has ended")


def test_an_image_that_does_not_decode_is_found_only_with_images(whole):
    shard = write_dataset(whole, 1, start=3)[0]
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["edited_image"]["bytes"] = rows[0]["edited_image"]["bytes"][:40]  # a PNG cut short
    rows[0]["thumbnails"] = {"source": {"bytes": b"RIFF", "path": "source.webp"}, "edited": None, "trajectory": None,
                             "trajectory_frames": 0}
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    finish(whole, planned=4)
    assert verify(whole).whole
    problems = verify(whole, images=True).problems
    assert len(problems) == 1 and problems[0].startswith(f"2 image(s) or video(s) do not decode: data/{shard.name} "
                                                         "job job3: edited_image (")
    assert f"job job3: thumbnails.source (" in problems[0]


def test_leftovers_and_quarantined_shards_are_notes_not_problems(whole):
    bad = write_dataset(whole, 1, start=3)[0]
    truncate(bad)
    output.writer_index(whole, lambda *_: None)  # as a run does: quarantined, its job to be done again
    (whole / "data" / ".part-x.parquet.1234abcd.tmp").write_bytes(b"half")
    (whole / "_state" / "inflight").mkdir()
    (whole / "_state" / "inflight" / "host-4242").write_text("edit\njob7")  # a worker that died
    verdict = assert_whole(whole)
    assert verdict.notes == [
        "1 temporary leftover(s) of an interrupted write, never read (the next run removes them): "
        "data/.part-x.parquet.1234abcd.tmp",
        "1 in-flight record(s) under _state/inflight/ of worker processes that died or a run that did not end (the "
        "next run clears them): host-4242",
        f"1 quarantined shard(s) under _state/quarantine/, unreadable, never read and kept for inspection: {bad.name}"]


def test_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    assert verify(tmp_path).problems == ["no run.json: not a chronoedit-sim dataset, or its first run never started"]
