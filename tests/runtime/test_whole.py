"""A dataset that stays whole, end to end on Ray with the tiny models: a second writer refused, a damaged
shard quarantined and redone once, a failed write reported in one line (exit 4) and resumed."""

from __future__ import annotations

import errno

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from verify_helpers import assert_whole, truncate

from chronoedit_sim.cli import main
from chronoedit_sim.dataset.inspect import summarize
from chronoedit_sim.dataset.lock import OutputLock, OutputLocked
from chronoedit_sim.dataset.sink import all_shards
from chronoedit_sim.dataset.verify import verify
from chronoedit_sim.runtime.rescore import rescore
from chronoedit_sim.runtime.run import run

pytestmark = pytest.mark.ray


def frames(folder, n: int):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y, x = np.mgrid[0:48, 0:80]
        Image.fromarray(np.stack([(x * 3 + i * 40) % 256, y * 5, np.full_like(x, 50 + i)], -1).astype(np.uint8)).save(
            folder / f"frame_{i:03d}.png")
    return folder


def job_ids(out) -> list[str]:
    """Every job_id in data/ and rejected/, repeats included."""
    return [j for shard in all_shards(out) for j in pq.read_table(shard, columns=["job_id"])["job_id"].to_pylist()]


@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_a_second_run_into_the_same_output_is_refused_while_the_first_completes(
        ray_session, run_overrides, one_edit_scenario, tmp_path):
    args = ([str(one_edit_scenario)], str(frames(tmp_path / "frames", 2)), str(tmp_path / "out"))
    refusals = []

    def second_run(row: dict) -> None:  # the same command, started while the first one writes
        if not refusals:
            with pytest.raises(OutputLocked) as info:
                run(*args, run_overrides, quiet=True, echo=lambda *_: None)
            refusals.append(str(info.value))

    assert run(*args, run_overrides, quiet=True, echo=lambda *_: None, on_row=second_run) == 0
    assert len(refusals) == 1 and "another writer is using this output (pid" in refusals[0]
    ids = job_ids(tmp_path / "out")
    assert len(ids) == 2 and len(set(ids)) == 2
    assert_whole(tmp_path / "out")


@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_a_truncated_shard_is_quarantined_and_its_jobs_done_again_exactly_once(
        ray_session, run_overrides, one_edit_scenario, tmp_path):
    out = tmp_path / "out"
    args = ([str(one_edit_scenario)], str(frames(tmp_path / "frames", 2)), str(out))
    overrides = [*run_overrides, "output.shard_max_rows=1"]
    assert run(*args, overrides, quiet=True, echo=lambda *_: None) == 0
    bad = sorted((out / "data").glob("*.parquet"))[0]
    lost = pq.read_table(bad, columns=["job_id"])["job_id"][0].as_py()
    truncate(bad)
    assert not verify(out).whole
    lines = []
    assert run(*args, overrides, quiet=True, echo=lines.append) == 0
    assert lines[0].startswith(f"notice: data/{bad.name} cannot be read (Parquet magic bytes not found in footer")
    assert lines[0].endswith(f"moved to _state/quarantine/data/{bad.name}; its jobs will be done again")
    assert "written 1 this run (1 resumed-skipped)" in lines[-1]
    ids = job_ids(out)
    assert len(ids) == len(set(ids)) == 2 and lost in ids
    verdict = assert_whole(out)
    assert verdict.notes[-1].startswith("1 quarantined shard(s) under _state/quarantine/")
    assert f"NOTE: skipped quarantined shard _state/quarantine/data/{bad.name} (unreadable; kept for inspection)" \
        in summarize(out)
    # a rescoring reads the dataset, skips the quarantined shard and says so; it refuses a held output
    rescored, lines = tmp_path / "rescored", []
    assert rescore(str(out), str(rescored), [], quiet=True, echo=lines.append) == 0
    assert f"{out}: NOTE: skipped quarantined shard _state/quarantine/data/{bad.name} (unreadable; kept for " \
           "inspection)" in lines
    assert sorted(job_ids(rescored)) == sorted(ids)
    assert_whole(rescored)
    with OutputLock(tmp_path / "held", command="another rescoring"):
        with pytest.raises(OutputLocked, match="`another rescoring`"):
            rescore(str(out), str(tmp_path / "held"), [], quiet=True, echo=lambda *_: None)


@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_a_write_error_is_one_line_with_exit_4_and_the_same_command_resumes(
        ray_session, run_overrides, one_edit_scenario, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["run", str(one_edit_scenario), "--input", str(frames(tmp_path / "frames", 2)), "--output", str(out), "-q",
            *run_overrides, "output.shard_max_rows=1"]
    real_write, calls = pq.write_table, []

    def disk_full_on_the_second_shard(table, where, **kw):
        calls.append(1)
        if len(calls) == 2:
            where.write(b"PAR1 half a shard")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", disk_full_on_the_second_shard)
    assert main(argv) == 4
    err = capsys.readouterr().err.strip()
    assert err == (f"error: cannot write to {out / 'data'}: No space left on device; 1 row(s) are safe in 1 complete "
                   f"shard(s) of {out} and nothing half-written was kept; rerun the same command to resume once "
                   "there is room")
    assert not list((out / "data").glob(".*")) and len(list((out / "data").glob("*.parquet"))) == 1
    assert any("did not finish" in p for p in verify(out).problems)
    monkeypatch.setattr(pq, "write_table", real_write)  # room again
    assert main(argv) == 0
    assert "written 1 this run (1 resumed-skipped)" in capsys.readouterr().out
    ids = job_ids(out)
    assert len(ids) == len(set(ids)) == 2
    assert_whole(out)
