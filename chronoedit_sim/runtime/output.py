"""The output folder of a run or a rescoring: what may be resumed, refused, or replaced.

Checked before any model loads. A folder that is not a chronoedit-sim dataset is never
resumed into or deleted; a dataset made with another config is never mixed with; with
--overwrite the old dataset is ignored at once and deleted only once the new plan is valid.
"""

from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from ..dataset.lock import lock_path
from ..dataset.manifest import read_manifest
from ..dataset.sink import STATE, SinkWriteError, quarantine, readable_shards
from ..errors import UserError


class OutputConflict(UserError):
    """The output directory holds something this run must not mix with or delete."""


class OutputWriteFailed(UserError):
    """Writing into the output failed (full disk, quota, I/O error); what is written stays and resumes."""

    exit_code = 4


def previous_manifest(out: Path, overwrite: bool) -> dict | None:
    """The manifest to resume from (None: start fresh), or OutputConflict for a foreign folder."""
    # a folder holding only _state is a dataset whose first writer has not written run.json yet
    if out.exists() and any(p.name != STATE for p in out.iterdir()) and read_manifest(out) is None:
        raise OutputConflict(f"{out}: exists, is not empty and has no run.json: not a chronoedit-sim dataset; "
                             "choose another --output")
    return None if overwrite else read_manifest(out)


def check_compatible(out: Path, previous: dict | None, config_hash: str, what: str) -> None:
    """Refuse to resume a dataset made with `what` (e.g. "a different config"), told by its config hash."""
    if previous and previous.get("config_hash") != config_hash:
        raise OutputConflict(f"{out}: the output was made with {what} (config hash "
                             f"{previous.get('config_hash')} != {config_hash}); use another --output or --overwrite")


def prepare(out: Path, overwrite: bool) -> None:
    """Delete the old dataset (--overwrite; previous_manifest vouched it is one) and create OUT.

    The lock file stays: a new file at its path would be a second lock that a second writer could take."""
    if overwrite and out.exists():
        for path in out.iterdir():
            if path.name == STATE:
                for inner in path.iterdir():
                    if inner != lock_path(out):
                        shutil.rmtree(inner) if inner.is_dir() and not inner.is_symlink() else inner.unlink()
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def writer_shards(out: Path, echo) -> list[Path]:
    """The writer's (lock held) listing of OUT's readable shards: a damaged one is moved to the
    quarantine with a notice, so its jobs leave the resume index and are done again."""

    def move(shard: Path, reason: str) -> None:
        dest = quarantine(out, shard)
        echo(f"notice: {shard.relative_to(out)} cannot be read ({reason}): moved to {dest.relative_to(out)}; "
             "its jobs will be done again")

    return readable_shards(out, on_damaged=move)


@contextmanager
def write_errors(out: Path):
    """A failed write into OUT ends the run with one line: the folder, what is safe, what to do (exit 4)."""
    try:
        yield
    except SinkWriteError as exc:
        shards = readable_shards(out, on_damaged=lambda *_: None)
        rows = sum(pq.read_metadata(s).num_rows for s in shards)
        when = "once there is room" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "once it can be written again"
        raise OutputWriteFailed(f"cannot write to {exc.filename}: {exc.strerror}; {rows} row(s) are safe in "
                                f"{len(shards)} complete shard(s) of {out} and nothing half-written was kept; rerun "
                                f"the same command to resume {when}") from exc
