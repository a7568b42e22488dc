"""Damaged shards: readers skip them and say so; only the writer moves them to the quarantine. Pure Python."""

from __future__ import annotations

import hashlib

import pytest
from verify_helpers import truncate, write_dataset

from chronoedit_sim.dataset.inspect import summarize
from chronoedit_sim.dataset.jobindex import JobIndex
from chronoedit_sim.dataset.sink import all_shards, readable_shards, resume_index
from chronoedit_sim.dataset.stats import tally_dataset
from chronoedit_sim.runtime import output


@pytest.fixture
def damaged(tmp_path):
    out = tmp_path / "out"
    shards = write_dataset(out, 3)
    truncate(shards[1])
    return out, shards[1]


def test_readers_skip_a_damaged_shard_and_name_it(damaged):
    out, bad = damaged
    seen = []
    good = readable_shards(out, on_damaged=lambda path, why: seen.append((path, why)))
    assert bad not in good and len(good) == 2
    assert seen == [(bad, seen[0][1])] and "magic bytes not found" in seen[0][1]
    assert resume_index(out, good) == JobIndex.of(["job0", "job2"])  # its job is done again by the next run
    assert tally_dataset(out).counts["written"] == 2  # no pyarrow traceback
    assert bad.exists()  # a reader never moves it


def test_the_writer_moves_a_damaged_shard_to_the_quarantine_with_a_notice(damaged):
    out, bad = damaged
    before = hashlib.sha256(bad.read_bytes()).hexdigest()
    notices = []
    assert output.writer_index(out, notices.append) == JobIndex.of(["job0", "job2"])
    moved = out / "_state" / "quarantine" / "data" / bad.name
    assert not bad.exists()
    assert hashlib.sha256(moved.read_bytes()).hexdigest() == before  # moved, never deleted or rewritten
    assert notices == [f"notice: data/{bad.name} cannot be read (Parquet magic bytes not found in footer. Either "
                       "the file is corrupted or this is not a parquet file.): moved to "
                       f"_state/quarantine/data/{bad.name}; its jobs will be done again"]
    assert len(all_shards(out)) == 2  # the glob readers use no longer sees it


def test_inspect_skips_damaged_and_quarantined_shards_and_says_so(damaged):
    out, bad = damaged
    lines = summarize(out)
    assert lines[0].startswith(f"{out}: 2 rows (2 dataset shard(s)")
    assert any(line.startswith(f"NOTE: skipped damaged shard data/{bad.name} (Parquet magic bytes") and
               "the next run into this output moves it to _state/quarantine/" in line for line in lines)
    output.writer_index(out, lambda *_: None)
    lines = summarize(out)
    assert lines[0].startswith(f"{out}: 2 rows")
    assert f"NOTE: skipped quarantined shard _state/quarantine/data/{bad.name} (unreadable; kept for inspection)" \
        in lines


def test_a_second_damaged_shard_of_the_same_name_does_not_overwrite_the_first(damaged):
    out, bad = damaged
    copy = bad.read_bytes()
    output.writer_index(out, lambda *_: None)
    bad.write_bytes(copy)  # the same damaged file comes back (a second failed copy)
    output.writer_index(out, lambda *_: None)
    names = sorted(p.name for p in (out / "_state" / "quarantine" / "data").iterdir())
    assert names == sorted([bad.name, f"{bad.stem}.1.parquet"])


def test_a_shard_damaged_inside_its_job_ids_is_quarantined_by_the_writer_and_its_jobs_done_again(tmp_path):
    """The footer reads, so the listing keeps it; reading its job ids fails (was: every resume failed there)."""
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    shards = write_dataset(out, 3)
    bad = shards[1]
    column = next(c for c in (pq.ParquetFile(bad).metadata.row_group(0).column(j)
                              for j in range(pq.ParquetFile(bad).metadata.num_columns)) if c.path_in_schema == "job_id")
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(bad.read_bytes())
    data[start + 20:start + column.total_compressed_size] = bytes(column.total_compressed_size - 20)  # a hole
    bad.write_bytes(bytes(data))
    assert bad in readable_shards(out)  # the footer reads
    notices = []
    assert output.writer_index(out, notices.append) == JobIndex.of(["job0", "job2"])
    assert not bad.exists() and (out / "_state" / "quarantine" / "data" / bad.name).exists()
    assert len(notices) == 1 and notices[0].startswith(f"notice: data/{bad.name} cannot be read (")
    assert output.writer_index(out, notices.append) == JobIndex.of(["job0", "job2"]) and len(notices) == 1
