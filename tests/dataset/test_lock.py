"""dataset.lock: one writer per output folder. Pure Python (a helper process at most), no Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from chronoedit_sim.runtime import output
from chronoedit_sim.dataset.lock import OutputLock, OutputLocked, lock_path, read_holder


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out, command="chronoedit-sim run a.yaml"):
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        t0 = time.perf_counter()
        with pytest.raises(OutputLocked, match=rf"another writer is using this output \(pid {os.getpid()} on "
                                               rf"{socket.gethostname()}, started .*: `chronoedit-sim run a.yaml`\)"):
            with OutputLock(out, command="second"):
                pass
        assert time.perf_counter() - t0 < 1.0  # refused, not queued
    assert read_holder(out) is None  # a clean release empties the lock
    with OutputLock(out, command="third"):  # and the next writer gets it
        assert read_holder(out)["command"] == "third"


def test_a_run_into_a_held_output_is_refused_before_any_work(tmp_path, one_edit_scenario, tiny_overrides):
    from chronoedit_sim.runtime.run import run

    out = tmp_path / "out"
    with OutputLock(out, command="the first run"):
        with pytest.raises(OutputLocked, match=rf"^{out}: another writer is using this output \(pid {os.getpid()} "
                                               r".*`the first run`\); wait for it to end or choose another --output$"):
            # real weights: they are checked before the lock is taken (a refusal leaves no folder behind)
            run([str(one_edit_scenario)], str(tmp_path), str(out), tiny_overrides, echo=lambda *_: None)
        assert OutputLocked("x").exit_code == 2  # the CLI prints it in one line and exits 2
        assert sorted(p.name for p in out.rglob("*")) == ["_state", "lock"]  # nothing written


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_lock_left_by_a_dead_writer_on_this_host_is_taken_over_with_a_notice(tmp_path):
    out = tmp_path / "out"
    lock_path(out).parent.mkdir(parents=True)
    pid = _dead_pid()
    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started_at": "earlier",
                                          "command": "chronoedit-sim run old.yaml"}))
    notices = []
    with OutputLock(out, command="new", echo=notices.append):
        assert read_holder(out)["pid"] == os.getpid()
    assert notices == [f"notice: {out}: the previous writer (pid {pid} on {socket.gethostname()}, started earlier: "
                       "`chronoedit-sim run old.yaml`) is gone; taking over its lock"]


def test_a_lock_written_on_another_host_is_refused_with_what_to_do(tmp_path):
    out = tmp_path / "out"
    lock_path(out).parent.mkdir(parents=True)
    lock_path(out).write_text(json.dumps({"host": "other-node", "pid": 1, "started_at": "t", "command": "c"}))
    with pytest.raises(OutputLocked, match=rf"cannot tell whether that writer still runs .* delete {lock_path(out)}"):
        with OutputLock(out, command="new"):
            pass


HOLD = """
import sys, time
from chronoedit_sim.dataset.lock import OutputLock
with OutputLock(sys.argv[1], command="holder"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_writer_killed_with_sigkill_leaves_a_lock_the_next_writer_takes_over(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"pid {proc.pid} .*`holder`"):
            with OutputLock(out, command="second"):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    notices = []
    with OutputLock(out, command="third", echo=notices.append):  # the kernel dropped the flock with the process
        pass
    assert len(notices) == 1 and f"pid {proc.pid}" in notices[0] and "is gone" in notices[0]


def test_overwrite_keeps_the_held_lock_file(tmp_path):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "part-0.parquet").write_bytes(b"x")
    (out / "run.json").write_text("{}")
    (out / "_state" / "inflight").mkdir(parents=True)
    with OutputLock(out, command="overwriting"):
        # a store's takeover marker (named after the dead holder's record) stays with the lock it decided
        (out / "_state" / "lock.takeover-0123456789abcdef").write_text("{}")
        inode = lock_path(out).stat().st_ino
        output.prepare(out, overwrite=True)
        assert sorted(p.name for p in out.rglob("*")) == ["_state", "lock", "lock.takeover-0123456789abcdef"]
        assert lock_path(out).stat().st_ino == inode  # a new file there would be a second, free lock
        with pytest.raises(OutputLocked):
            with OutputLock(out, command="second"):
                pass


def test_a_folder_with_only_a_lock_is_a_dataset_being_started_not_a_foreign_folder(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out):
        pass
    assert output.previous_manifest(out, overwrite=False) is None
    (out / "notes.txt").write_text("mine")
    with pytest.raises(output.OutputConflict, match="not a chronoedit-sim dataset"):
        output.previous_manifest(out, overwrite=False)


@pytest.mark.parametrize("text", ['{"experiment": "lr sweep", "config_hash": null}', "epoch 3: loss 0.1"])
def test_a_folder_with_another_tools_run_json_is_neither_resumed_into_nor_overwritten(tmp_path, text):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "run.json").write_text(text)
    (out / "checkpoint.pt").write_bytes(b"weeks of training")
    for overwrite in (False, True):
        with pytest.raises(output.OutputConflict, match=r"its run.json is not (a chronoedit-sim dataset's \(schema "
                                                        r"None|JSON)"):
            output.previous_manifest(out, overwrite=overwrite)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "run.json"]
    # and a recorded config hash that is missing matches nothing
    with pytest.raises(output.OutputConflict, match=r"config hash None != abc"):
        output.check_compatible(out, {"schema": "chronoedit-sim/run@1"}, "abc", "other thresholds or CLIP")


def test_a_writer_stopped_while_writing_the_first_run_json_leaves_a_dataset_that_resumes(tmp_path):
    from chronoedit_sim.dataset.manifest import write_manifest
    from chronoedit_sim.dataset.sink import atomic_write, remove_partial_shards

    out = tmp_path / "out"
    with OutputLock(out):
        pass

    def interrupted(fh):
        fh.write(b"{")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(out / "run.json", interrupted)
    assert sorted(p.name for p in out.iterdir()) == ["_state"]  # Ctrl-C: the temporary file went with it
    (out / ".run.json.0a1b2c3d.tmp").write_bytes(b'{"sche')  # kill -9: nothing ran to remove it
    assert output.previous_manifest(out, overwrite=False) is None  # was: "not a chronoedit-sim dataset", forever
    assert remove_partial_shards(out) == 1 and sorted(p.name for p in out.iterdir()) == ["_state"]
    write_manifest(out, {"schema": "chronoedit-sim/run@1", "config_hash": "abc"})
    assert output.previous_manifest(out, overwrite=False)["config_hash"] == "abc"
