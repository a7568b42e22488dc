"""Nothing outlives its driver: a watchdog for the private local Ray instance and its temp folder.

Ray ends its GCS and raylet with the driver, but after a `kill -9` of the driver its dashboard
and runtime-env agents live on, and the temp folder stays. `watch()` makes the private temp
folder and starts this file as a small watchdog process in its own session (Ctrl-C and a kill
of the driver's process group do not reach it): when the driver ends, however it ends, the
watchdog kills every process still using the folder (named in its command line, or holding a
file in it) and removes the folder. `sweep()` removes earlier folders of this prefix that no
process uses any more (a watchdog names its folder in its command line, so a live instance's
folder always has a user).

Run as a script by path, so it imports only the standard library.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "cesim-ray-"
ROOT = "/tmp"
# a folder younger than this may belong to a driver between mkdtemp and its watchdog's start
MIN_AGE_S = 60.0


def users(folder: str, spare: int = 0) -> list[int]:
    """Processes other than this one (and `spare`) whose command line names `folder` or that hold a file in it."""
    folder = folder.rstrip("/")
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), spare):
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if folder.encode() in fh.read():
                    found.append(int(entry.name))
                    continue
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path).startswith(folder + "/"):
                    found.append(int(entry.name))
                    break
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def reap(folder: str, spare: int = 0, timeout_s: float = 20.0) -> None:
    """SIGKILL every user of `folder` but `spare` until there is none (bounded), then remove it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = users(folder, spare)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
    shutil.rmtree(folder, ignore_errors=True)


def sweep(prefix: str = PREFIX, root: str = ROOT, min_age_s: float = MIN_AGE_S) -> list[str]:
    """Remove `root/prefix*` folders that no process uses any more; returns them."""
    removed = []
    for path in sorted(Path(root).glob(f"{prefix}*")):
        try:
            if not path.is_dir() or time.time() - path.stat().st_mtime < min_age_s or users(str(path)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


class Watch:
    """A private temp folder and the watchdog that cleans up after this process."""

    def __init__(self, folder: str, proc: subprocess.Popen):
        self.folder, self.proc = folder, proc

    def close(self, timeout_s: float = 10.0) -> None:
        """After ray.shutdown(): the watchdog ends any straggler, removes the folder and exits."""
        self.proc.stdin.close()  # end of input: the driver is done
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass  # it carries on alone, in its own session
        shutil.rmtree(self.folder, ignore_errors=True)


def watch(prefix: str = PREFIX, root: str = ROOT) -> Watch:
    """Sweep earlier folders, make a new private one, and start its watchdog."""
    sweep(prefix, root)
    folder = tempfile.mkdtemp(prefix=prefix, dir=root)
    proc = subprocess.Popen([sys.executable, __file__, str(os.getpid()), folder], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return Watch(folder, proc)


def _main(driver: int, folder: str) -> None:
    # the driver ends: its end of our stdin closes (EOF), and we are handed to another parent
    while os.getppid() == driver:
        readable, _, _ = select.select([sys.stdin], [], [], 0.5)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break
    # after a normal end the driver lives on, with Ray's log files still open: never kill it
    reap(folder, spare=driver)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _main(int(sys.argv[1]), sys.argv[2])
