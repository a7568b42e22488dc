"""Atomic Parquet shards and the resume index.

A shard is written to a hidden temporary name in the same directory, fsynced,
then renamed: readers globbing data/*.parquet only ever see complete shards, and
a crash leaves at most a hidden .tmp file that the next run removes. On an object
store (no rename) a shard is one PUT of its complete bytes under its final key
(storage.put), so there is never a partial object to see or remove. The jobs in
complete shards are the resume index (a JobIndex: 8 bytes a job).

A shard with a complete name that cannot be read (truncated by a failed copy, a disk error)
is left out by `readable_shards`, the one listing every reader uses; the writer, holding the
output's lock, moves it to OUT/_state/quarantine/ so its jobs are done again. Nothing is deleted.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage
from ..config import OutputConfig
from .jobindex import JobIndex, column_hashes
from .schema import BULKY_COLUMNS, IMAGE_LIST_COLUMNS, schema_with_metadata, without_images

log = logging.getLogger(__name__)
DATA = "data"
# rows the filter rejected when filter.write_rejected is false: kept out of the dataset, without
# their images, so they are still counted and a rerun does not edit them again
REJECTED = "rejected"
# OUT/_state: run-time bookkeeping (lock, in-flight ledger, quarantine), never part of the dataset
STATE = "_state"
QUARANTINE = "quarantine"
# OUT/_state/inflight: each worker process's jobs at work (runtime.ledger); emptied when a run ends
INFLIGHT = "inflight"
# what pyarrow raises on a file that is not (or no longer) a Parquet file
READ_ERRORS = (OSError, ValueError, pa.ArrowException)


def data_dir(out: Path, part: str = DATA) -> Path:
    return storage.path(out) / part


def complete_shards(out: Path, part: str = DATA) -> list[Path]:
    return sorted(p for p in data_dir(out, part).glob("*.parquet") if not p.name.startswith("."))


def all_shards(out: Path) -> list[Path]:
    """Complete shards of the dataset and of the rejected-row record."""
    return complete_shards(out, DATA) + complete_shards(out, REJECTED)


def _warn_damaged(path: Path, reason: str) -> None:
    log.warning("skipped damaged shard %s (%s)", path, reason)


def shard_problem(path: Path) -> str | None:
    """Why a shard cannot be read, or None when its footer reads.

    The footer only, no column data: every reader reads the columns it needs right after, and
    reading job_id here too read every shard's ids twice per run. A shard only becomes visible
    complete (tmp + rename), so what damages one later (a failed copy, a truncation) takes its
    footer; `verify` reads every column in full."""
    try:
        storage.parquet(path).metadata
    except READ_ERRORS as exc:
        return read_error(exc)
    return None


def read_error(exc: Exception) -> str:
    """pyarrow's reason, first line only."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def readable_shards(out: Path, on_damaged=_warn_damaged) -> list[Path]:
    """Complete shards of data/ and rejected/ that read; each other one goes to on_damaged(path, reason)
    and is left out. Every reader of a dataset lists its shards here."""
    good = []
    for shard in all_shards(out):
        problem = shard_problem(shard)
        if problem is None:
            good.append(shard)
        else:
            on_damaged(shard, problem)
    return good


def quarantine_dir(out: Path) -> Path:
    return storage.path(out) / STATE / QUARANTINE


def quarantine(out: Path, shard: Path) -> Path:
    """Move a damaged shard to OUT/_state/quarantine/<part>/ (only a writer holding the lock does this)."""
    folder = quarantine_dir(out) / shard.parent.name
    dest, n = folder / shard.name, 1
    while dest.exists():
        dest, n = folder / f"{shard.stem}.{n}{shard.suffix}", n + 1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        storage.move(shard, dest)
    except OSError as exc:
        raise _write_failed(folder, exc) from exc
    return dest


def damage_notes(out: Path) -> tuple[list[Path], list[str]]:
    """For read-only commands: the readable shards, and one note per shard they skip (damaged, or
    quarantined by a run) that says so."""
    out, notes = storage.path(out), []

    def damaged(path: Path, reason: str) -> None:
        notes.append(f"NOTE: skipped damaged shard {path.relative_to(out)} ({reason}); the next run into this "
                     "output moves it to _state/quarantine/ and does its jobs again")

    shards = readable_shards(out, on_damaged=damaged)
    for path in quarantined(out):
        notes.append(f"NOTE: skipped quarantined shard {path.relative_to(out)} (unreadable; kept for inspection)")
    return shards, notes


def quarantined(out: Path) -> list[Path]:
    folder = quarantine_dir(out)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def resume_index(out: Path, shards: list[Path] | None = None, on_damaged=_warn_damaged) -> JobIndex:
    """The jobs already in complete shards, as 64-bit hashes read from the job_id columns: a rerun skips them
    before any model work. A shard whose footer reads but whose job ids do not (damage inside the file) goes
    to on_damaged(path, reason) like one whose footer does not, and its jobs count as not done."""
    found = []
    for shard in readable_shards(out, on_damaged) if shards is None else shards:
        try:
            found.append(column_hashes(storage.read_table(shard, columns=["job_id"]).column("job_id")))
        except READ_ERRORS as exc:
            on_damaged(shard, read_error(exc))
    return JobIndex(np.concatenate(found) if found else None)


def leftover_manifests(out: Path) -> list[Path]:
    """Temporary run.json files of a writer killed while writing it (atomic_write's names)."""
    return list(storage.path(out).glob(".run.json.*.tmp")) if not storage.is_remote(out) else []


def remove_partial_shards(out: Path) -> int:
    """Delete temporary files a crashed run left behind (never visible to readers); returns the count."""
    leftovers = [*data_dir(out, DATA).glob(".*.tmp"), *data_dir(out, REJECTED).glob(".*.tmp"),
                 *leftover_manifests(out)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SinkWriteError(OSError):
    """Writing into the dataset folder failed (full disk, quota, I/O error); the temporary file is
    gone, so nothing half-written is visible. `filename` is the folder."""


def _write_failed(folder: Path, exc: OSError) -> SinkWriteError:
    return SinkWriteError(exc.errno, exc.strerror or str(exc), str(folder))


def atomic_write(path: Path, write, before_rename=None) -> None:
    """write(fh) into a hidden temporary file beside `path`, fsync, rename, fsync the folder; on an object
    store, write(fh) into memory and PUT the whole under `path` (before_rename(path) runs before the PUT)."""
    if storage.is_remote(path):
        return _put_whole(path, write, before_rename)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if before_rename:
            before_rename(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:  # an interrupt too: a leftover beside run.json would stay for good
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the next run removes it: hidden, never read
        if isinstance(exc, OSError):
            raise _write_failed(path.parent, exc) from exc
        raise


def _put_whole(path, write, before_rename) -> None:
    buf = io.BytesIO()
    try:
        write(buf)
        if before_rename:
            before_rename(path)
        storage.put(path, buf.getvalue())
    except OSError as exc:  # a failed upload leaves no object (an incomplete multipart upload is never listed)
        raise _write_failed(path.parent, exc) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def _row_bytes(row: dict) -> int:
    size = 2048  # text columns and structs, roughly
    for col in BULKY_COLUMNS:
        if row.get(col):
            size += len(row[col]["bytes"])
    for col in IMAGE_LIST_COLUMNS:
        size += sum(len(img["bytes"]) for img in row.get(col) or [])
    return size


class ShardWriter:
    """Buffers rows and writes bounded, atomic shards under OUT/data/.

    `before_rename(tmp_path)` runs between a shard's complete temporary file and its rename (the
    runtime's fault injection kills the process there)."""

    def __init__(self, out: Path, cfg: OutputConfig, metadata: dict | None = None, part: str = DATA,
                 before_rename=None):
        self.before_rename = before_rename
        self.dir = data_dir(out, part)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_failed(self.dir, exc) from exc
        self.cfg = cfg
        self.schema = schema_with_metadata(metadata)
        # a session prefix keeps shard names unique across resumed runs without listing the folder
        self.session = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.rows: list[dict] = []
        self.buffered_bytes = 0
        self.shards: list[Path] = []
        self.rows_written = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.buffered_bytes += _row_bytes(row)
        if len(self.rows) >= self.cfg.shard_max_rows or self.buffered_bytes >= self.cfg.shard_max_bytes:
            self.flush()

    def flush(self) -> Path | None:
        if not self.rows:
            return None
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        final = self.dir / f"part-{self.session}-{len(self.shards):05d}.parquet"
        atomic_write(final, lambda fh: pq.write_table(
            table, fh, row_group_size=self.cfg.row_group_rows, compression=self.cfg.compression,
            use_dictionary=["scenario", "edit_id", "run_id", "backend", "model_id", "model_hash", "reasoning_kind",
                            "error_stage"]), self.before_rename)
        self.shards.append(final)
        self.rows_written += len(self.rows)
        self.rows, self.buffered_bytes = [], 0
        return final


class DatasetWriter:
    """The dataset's shards plus the rejected-row record: where each finished row goes."""

    def __init__(self, out: Path, cfg: OutputConfig, metadata: dict | None = None, before_rename=None):
        self.data = ShardWriter(out, cfg, metadata, DATA, before_rename)
        self.rejected = ShardWriter(out, cfg, metadata, REJECTED, before_rename)

    @property
    def rows_in_shards(self) -> int:
        """Rows this writer has made visible in complete shards."""
        return self.data.rows_written + self.rejected.rows_written

    def add(self, row: dict, write_rejected: bool) -> None:
        if not row["keep"] and not row["error"] and not write_rejected:
            self.rejected.add(without_images(row))
        else:
            self.data.add(row)

    def flush(self) -> None:
        self.data.flush()
        self.rejected.flush()
