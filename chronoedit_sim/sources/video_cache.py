"""A node-local cache of videos fetched from a store, for OpenCV, which opens files by name.

A read task decodes `input.read_batch_size` frames, so the frames of one remote video are read by many
tasks; each fetching the whole object would download it once per task. Tasks on a node share this cache:
an entry is keyed by the object's URL, size and version (storage.version: the ETag on S3), so a replaced object is fetched again. The first task to want an entry fetches it under an
exclusive flock while the others wait; readers hold a shared flock on another lock file while they use
it; the cache is kept under its size bound by removing the least recently used entries that no task
holds. An entry is written to a temporary name and renamed, so a killed task leaves no partial entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from .. import storage

# suffixes of the cache's own files beside each entry: its readers' lock (shared; eviction takes it
# exclusively), its fetcher's lock, and a fetch in progress
_USE, _FETCH, _PART = ".use", ".fetch", ".part"


class VideoCache:
    def __init__(self, root: str, max_bytes: int):
        # as configured: "~" is the home of the node that reads, not of the driver that built the stage
        self.configured, self.max_bytes = root, max_bytes

    @property
    def root(self) -> Path:
        return Path(os.path.expanduser(self.configured))

    def _key(self, p) -> str:
        info = p.fs.info(p.path)
        version = json.dumps([str(p), info.get("size"), storage.version(info)])
        return hashlib.sha256(version.encode()).hexdigest()[:24] + Path(p.path).suffix

    @contextmanager
    def local(self, location):
        """A local path holding the object at `location` while the block runs (a local path is itself)."""
        p = storage.path(location)
        if not storage.is_remote(p):
            yield str(p)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        entry = self.root / self._key(p)
        with open(entry.with_name(entry.name + _USE), "a+") as use:
            fcntl.flock(use, fcntl.LOCK_SH)  # in use from here: eviction skips it; other readers share it
            if not entry.exists():
                with open(entry.with_name(entry.name + _FETCH), "a+") as fetch:
                    fcntl.flock(fetch, fcntl.LOCK_EX)  # one fetch per entry and node; the other tasks wait for it
                    if not entry.exists():
                        self._fetch(p, entry)
                        self._evict(keep=entry)  # the cache grows only here
            os.utime(entry)  # the entry's last use, for the eviction order
            yield str(entry)

    def _fetch(self, p, entry: Path) -> None:
        part = entry.with_name(entry.name + _PART)  # under the fetch lock: a killed fetch's is overwritten
        try:
            p.fs.get_file(p.path, str(part))
            os.replace(part, entry)
        finally:
            part.unlink(missing_ok=True)

    def _evict(self, keep: Path) -> None:
        """Remove the least recently used entries no task holds until the cache fits its bound, and the parts
        that killed fetches left. The lock files stay (empty): one removed while a task waits on it would let
        that task and a later one hold two different locks for the same entry."""
        entries = []
        for f in self.root.iterdir():
            if f.name.endswith(_PART):
                _remove_if_unlocked(f, f.with_name(f.name[:-len(_PART)] + _FETCH))
            if f.name.endswith((_USE, _FETCH, _PART)):
                continue
            try:
                st = f.stat()
            except FileNotFoundError:  # removed by another task meanwhile
                continue
            entries.append((st.st_mtime, st.st_size, f))
        total = sum(size for _, size, _ in entries)
        for _, size, f in sorted(entries):
            if total <= self.max_bytes:
                return
            if f == keep:
                continue
            if _remove_if_unlocked(f, f.with_name(f.name + _USE)):
                total -= size


def _remove_if_unlocked(f: Path, lock_file: Path) -> bool:
    """Remove f unless a task holds lock_file (reading the entry, or fetching into the part)."""
    with open(lock_file, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        f.unlink(missing_ok=True)
        return True
