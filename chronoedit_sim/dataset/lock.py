"""One writer per dataset: an exclusive lock on OUT/_state/lock for a run's or a rescoring's lifetime.

The lock is flock(2) on a descriptor held open until the writer ends: the kernel drops it when
the process ends, however it ends (kill -9 included), so a crashed writer never blocks the next
one. The file's JSON content (host, pid, start time, command) only names the holder in messages.
A clean release empties it, so content found under a lock that flock grants was left by a
writer that died: on this host it is taken over with a notice; from another host it is refused,
because on a shared filesystem flock may not reach across hosts (see the README).

On an object store (no flock) the lock is an object created only if absent (storage.create: S3's
If-None-Match: *, GCS's ifGenerationMatch=0) holding the same JSON, and a clean release deletes it. A writer
killed with -9 leaves it behind: the next writer on the same host takes it over when that pid is gone;
one from another host is refused with the object's URL to delete. A takeover is itself a create-if-absent:
of `lock.takeover-<hash of the dead holder's record>`, so of two writers that find the same dead lock at
once exactly one gets it (deleting the lock and creating it again would let both in). A taker that died
between its marker and its lock is taken over the same way, through a marker named after its record; the
markers of dead takers stay behind (a few bytes each). A writer deletes its own marker at release, as a
record can recur (an empty lock object, copied in from a released local dataset, every time): a taker that
read the same dead record before that writer's takeover and acts only after its release (paused through
a whole run) could then create the marker again and overwrite a later writer's lock. Not guarded against.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shlex
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import storage
from .sink import STATE, SinkWriteError
from ..errors import UserError

LOCK = "lock"
# flock errors that mean "this filesystem does not do locks", not "someone holds it"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class OutputLocked(UserError):
    """Another writer (run, rescoring, --overwrite) holds the output folder."""


def lock_path(out: Path) -> Path:
    return storage.path(out) / STATE / LOCK


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}: "
            f"`{holder.get('command')}`")


def read_holder(out: Path) -> dict | None:
    """The lock file's content (None: no lock file, or released cleanly)."""
    return _read_lock(lock_path(out))


def _read_lock(path) -> dict | None:
    try:
        return _holder(path.read_text())
    except OSError:
        return None


def _holder(text: str) -> dict | None:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return {"pid": None, "host": None, "started_at": None, "command": f"(unreadable lock content {text[:60]!r})"}


def live_holder(out: Path) -> dict | None:
    """The holder when it is a live process on this host, or on another host (cannot be told): for
    read-only commands, which never take the lock."""
    holder = read_holder(out)
    if holder is None:
        return None
    if holder.get("host") == socket.gethostname() and not (holder.get("pid") and _alive(int(holder["pid"]))):
        return None
    return holder


def _command() -> str:
    """This process's command line as the user typed it (`python -m chronoedit_sim.cli` reads as the CLI)."""
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("chronoedit-sim", "cli.py"):
        argv[0] = "chronoedit-sim"
    return shlex.join(argv)


class OutputLock:
    """`with OutputLock(out, echo=print):` holds OUT/_state/lock (or the lock file `path`, for a folder with no
    _state/ such as a report) or raises OutputLocked at once."""

    def __init__(self, out: Path, command: str | None = None, echo=print, path=None):
        self.out, self.echo = storage.path(out), echo
        self.path = storage.path(path) if path is not None else lock_path(out)
        self.me = {"host": socket.gethostname(), "pid": os.getpid(),
                   "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "command": command or _command()}
        self.fd: int | None = None
        # the takeover marker this writer created (object store): deleted with the lock at release
        self.takeover = None

    def __enter__(self) -> "OutputLock":
        if storage.is_remote(self.path):
            return self._enter_object()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (O_CLOEXEC)
        except OSError as exc:
            raise SinkWriteError(exc.errno, exc.strerror or str(exc), str(self.path.parent)) from exc
        try:
            self._take(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(self.me) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as exc:  # a full disk can refuse even these few bytes
            os.close(fd)
            raise SinkWriteError(exc.errno, exc.strerror or str(exc), str(self.path.parent)) from exc
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def _enter_object(self) -> "OutputLock":
        """The lock on an object store: create the lock object if absent, else name its holder."""
        body = (json.dumps(self.me) + "\n").encode()
        if not storage.conditional_create(self.path):
            self.echo(f"notice: {self.out}: this store has no conditional write chronoedit-sim uses (S3's "
                      "If-None-Match, GCS's ifGenerationMatch); nothing stops a second writer here, so run one "
                      "writer per output at a time")
        try:
            if not storage.create(self.path, body):
                self._take_over_object(body)
        except OSError as exc:
            raise SinkWriteError(exc.errno, exc.strerror or str(exc), str(self.path.parent)) from exc
        self.fd = -1  # held: released by deleting the object
        return self

    def _take_over_object(self, body: bytes) -> None:
        """Take a dead writer's lock object: whoever creates the takeover marker named after that writer's
        record owns the lock and overwrites it; a taker that read the same record and comes second is refused."""
        try:
            record = self.path.read_bytes()
        except FileNotFoundError:  # released between our create and this read: the usual create decides
            if storage.create(self.path, body):
                return
            record = self.path.read_bytes()
        self._check_holder(_holder(record.decode("utf-8", "replace")), alive=True)
        marker = self._marker(record)
        while not storage.create(marker, body):
            try:
                taker = marker.read_bytes()
            except FileNotFoundError:  # that taker has come and gone meanwhile
                taker = None
            holder = _holder(taker.decode("utf-8", "replace")) if taker is not None else None
            if holder is None or holder.get("host") != self.me["host"] or _alive(int(holder.get("pid") or 0)):
                who = f" ({describe(holder)}; if it no longer runs, delete {self.path} and rerun)" if holder else ""
                raise OutputLocked(f"{self.out}: another writer took this output's lock just now{who}")
            # A taker that died between its marker and its lock would block the output for good: it is taken
            # over like a lock, by the marker named after its own record.
            self.echo(f"notice: {self.out}: the previous writer ({describe(holder)}) died taking over the lock; "
                      "taking it over")
            marker = self._marker(taker)
        self.takeover = marker
        storage.put(self.path, body)

    def _marker(self, record: bytes):
        return self.path.with_name(f"{self.path.name}.takeover-{hashlib.sha256(record).hexdigest()[:16]}")

    def _take(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            holder = _read_lock(self.path)  # None: it holds the lock but has not written its name yet
            who = describe(holder) if holder else "one that is just starting"
            raise OutputLocked(f"{self.out}: another writer is using this output ({who}); wait for it "
                               "to end or choose another --output") from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            locked = False
        self._check_holder(_read_lock(self.path), alive=not locked)
        if not locked:
            self.echo(f"notice: {self.out}: this filesystem does not support file locks; nothing stops a second "
                      "writer here, so run one writer per output at a time (see the README: shared filesystems)")

    def _check_holder(self, holder: dict | None, alive: bool) -> None:
        """Refuse when the recorded holder may still write (`alive`: no flock tells, so a live pid on this host
        counts as a writer); a notice when its lock is taken over."""
        if holder is None:
            return
        if storage.is_remote(self.path) and holder.get("host") == self.me["host"] and _alive(int(holder.get("pid") or 0)):
            raise OutputLocked(f"{self.out}: another writer is using this output ({describe(holder)}); wait for it "
                               "to end or choose another --output")
        if holder.get("host") != self.me["host"] or (alive and _alive(int(holder.get("pid") or 0))):
            where = "on an object store" if storage.is_remote(self.path) else "on a shared filesystem"
            raise OutputLocked(
                f"{self.out}: locked by {describe(holder)}; this host cannot tell whether that writer still runs "
                f"(locks do not reach across hosts {where}): if it does not, delete {self.path} and rerun")
        self.echo(f"notice: {self.out}: the previous writer ({describe(holder)}) is gone; taking over its lock")

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        if self.fd == -1:
            self.fd = None
            for obj in (self.path, self.takeover):  # the lock first: a marker without it marks nothing
                try:
                    if obj is not None:
                        obj.unlink()  # no lock object = released cleanly
                except OSError:
                    pass  # left behind: the next writer on this host takes it over
            return
        try:
            os.ftruncate(self.fd, 0)  # empty = released cleanly (content under a granted lock = a dead writer)
        except OSError:
            pass
        os.close(self.fd)  # drops the flock
        self.fd = None
