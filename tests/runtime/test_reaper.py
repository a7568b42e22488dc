"""Nothing outlives its driver: the watchdog of the private Ray instance, and the sweep of old folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronoedit_sim.runtime import reaper

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat fields after the command name: [state, ppid, ...]; [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def alive(pid: int, started: str | None = None) -> bool:
    """Running (a zombie waiting for a parent that never reaps it counts as ended); with `started`, the
    same process and not a later one that reuses its pid."""
    stat = _stat(pid)
    return bool(stat) and stat[0] != "Z" and (started is None or stat[19] == started)


def descendants(pid: int) -> dict[int, tuple[str, bytes]]:
    """pid -> (start time, command line) of every process below `pid`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents[int(entry.name)] = int(stat[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    out = {}
    for p in found:
        try:
            out[p] = (_stat(p)[19], Path(f"/proc/{p}/cmdline").read_bytes())
        except (OSError, IndexError):
            continue
    return out


def wait_until(check, timeout_s: float = 30.0) -> bool:
    """Poll `check` until it holds or the time is up (bounded, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_sweep_removes_only_old_folders_no_process_uses(tmp_path):
    old, used, young, other = (tmp_path / n for n in ("p-old", "p-used", "p-young", "q-old"))
    for folder in (old, used, young, other):
        folder.mkdir()
    for folder in (old, used, other):
        os.utime(folder, (time.time() - 3600, time.time() - 3600))
    user = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(60)", str(used)])
    try:
        assert wait_until(lambda: reaper.users(str(used)) == [user.pid], 10)
        assert reaper.sweep("p-", str(tmp_path)) == [str(old)]
    finally:
        user.kill()
        user.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-used", "p-young", "q-old"]


FAKE_DRIVER = """
import os, subprocess, sys, time
from chronoedit_sim.runtime import reaper
private = reaper.watch(prefix="drv-", root=sys.argv[1])
# like Ray's agents: its own session, a log file open in the folder, a command line that does not name it
agent = subprocess.Popen([sys.executable, "-c", "import os, time; f = open(os.environ['F'] + '/agent.log', 'w'); "
                          "print('up', flush=True); time.sleep(120)"], env={**os.environ, "F": private.folder},
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
agent.stdout.readline()
print(private.folder, agent.pid, flush=True)
time.sleep(120)
"""


def test_the_watchdog_ends_what_a_driver_killed_with_sigkill_leaves(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER, str(tmp_path)], cwd=REPO, env=ENV,
                              stdout=subprocess.PIPE, text=True)
    folder, agent = driver.stdout.readline().split()
    agent = int(agent)
    assert alive(agent) and Path(folder).is_dir()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert wait_until(lambda: not alive(agent) and not Path(folder).exists()), "the agent outlived its driver"


NORMAL_END = """
import os, sys
from chronoedit_sim.runtime import reaper
private = reaper.watch(prefix="end-", root=sys.argv[1])
log = open(os.path.join(private.folder, "driver.log"), "w")  # as Ray's driver keeps its log files open
private.close()
print(private.proc.returncode, os.path.exists(private.folder), flush=True)
"""


def test_a_normal_end_spares_the_driver_and_leaves_no_folder_and_no_watchdog(tmp_path):
    done = subprocess.run([sys.executable, "-c", NORMAL_END, str(tmp_path)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["0", "False"], done.stderr[-1000:]


@pytest.mark.ray
@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_a_run_killed_with_sigkill_leaves_no_ray_process(run_overrides, one_edit_scenario, tmp_path):
    """The CLI with its private Ray instance kills itself (SIGKILL) after its first row: every process of
    that instance ends within a bounded wait, and its temp folder goes."""
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (64, 48), (60 * i, 90, 120)).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "chronoedit_sim.cli", "run", str(one_edit_scenario), "--input",
                               str(frames), "--output", str(out), "-q", *run_overrides, "output.shard_max_rows=1",
                               "runtime.faults.kill_driver_after_rows=1"], cwd=REPO, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, tuple[str, bytes]] = {}  # every process the driver started, directly or not, while it lived
    while driver.poll() is None:
        seen.update(descendants(driver.pid))
        time.sleep(0.2)
    assert driver.returncode == -signal.SIGKILL, "the fault hook should have killed the driver"
    folders = {cmd.split(b"\0")[3].decode() for _, cmd in seen.values() if reaper.__file__.encode() in cmd}
    assert len(seen) >= 4 and len(folders) == 1, "a private Ray instance with its watchdog should have run"
    folder = folders.pop()
    assert Path(folder).parent == Path(reaper.ROOT) and Path(folder).name.startswith(reaper.PREFIX)

    def left() -> list[bytes]:
        return [cmd[:100] for p, (started, cmd) in seen.items() if alive(p, started)]

    assert wait_until(lambda: not left()), f"outlived the driver: {left()}"
    assert not Path(folder).exists()
    from chronoedit_sim.dataset.verify import verify

    assert any("did not finish" in p for p in verify(out).problems)
