"""A write into the output fails (full disk, I/O error): nothing half-written stays, one clear error. Pure Python."""

from __future__ import annotations

import errno

import pyarrow.parquet as pq
import pytest
from verify_helpers import fake_row, write_dataset

from chronoedit_sim.config import OutputConfig
from chronoedit_sim.dataset.sink import DatasetWriter, SinkWriteError, atomic_write
from chronoedit_sim.runtime import output


def full_disk(fh):
    fh.write(b"PAR1 half a shard")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_leaves_no_temporary_file_and_names_the_folder(tmp_path):
    with pytest.raises(SinkWriteError) as info:
        atomic_write(tmp_path / "part-0.parquet", full_disk)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_run_level_error_says_what_is_safe_and_how_to_resume(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_dataset(out, 3)  # 3 complete shards of 1 row
    writer = DatasetWriter(out, OutputConfig(shard_max_rows=2))
    monkeypatch.setattr(pq, "write_table", lambda table, fh, **kw: full_disk(fh))
    with pytest.raises(output.OutputWriteFailed) as info:
        with output.write_errors(out):
            writer.add(fake_row(7), write_rejected=True)
            writer.add(fake_row(8), write_rejected=True)  # the shard is full: written, and the disk is too
    assert str(info.value) == (f"cannot write to {out / 'data'}: No space left on device; 3 row(s) are safe in 3 "
                               f"complete shard(s) of {out} and nothing half-written was kept; rerun the same "
                               "command to resume once there is room")
    assert info.value.exit_code == 4
    assert not [p for p in (out / "data").iterdir() if p.name.startswith(".")]


def test_other_write_errors_say_when_to_rerun(tmp_path):
    with pytest.raises(output.OutputWriteFailed, match="resume once it can be written again$"):
        with output.write_errors(tmp_path):
            raise SinkWriteError(errno.EROFS, "Read-only file system", str(tmp_path))
