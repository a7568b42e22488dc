"""Losing a node mid-run on a two-node cluster (`make test-slow`). Joining a cluster with runtime.address is
shown in tests/runtime/test_run.py: the killed command-line drivers join the test session's Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from chronoedit_sim import storage
from chronoedit_sim.dataset.sink import complete_shards
from verify_helpers import assert_whole

pytestmark = pytest.mark.ray
# a raylet on a busy 2-core machine takes longer than Ray's 30 s to register: the test is about losing a node
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_raylet_start_wait_time_s": "120"}


def frames_dir(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (64, 48), (20 * i, 90, 120)).save(folder / f"f{i}.png")
    return folder


@pytest.mark.slow  # about 2 minutes alone on 2 cores, up to 7 on a busy machine: past the suite's 300 s timeout
@pytest.mark.timeout(600)
# s3: input and output on the local S3 server, so the nodes share no path for them (#23)
@pytest.mark.parametrize("where", ["disk", "s3"])
def test_a_node_lost_mid_run_loses_and_duplicates_nothing(run_overrides, one_edit_scenario, tmp_path, where, request):
    frames = frames_dir(tmp_path / "frames", 8)
    out = tmp_path / "out"
    if where == "s3":
        prefix = request.getfixturevalue("s3")
        remote = storage.path(f"{prefix}/frames")
        remote.fs.put(str(frames) + "/", remote.path, recursive=True)
        frames, out = remote, storage.path(f"{prefix}/out")
    temp_dir = tempfile.mkdtemp(prefix="cesim-2n-", dir="/tmp")
    script, summary_file = Path(__file__).with_name("two_node_run.py"), tmp_path / "summary.json"
    try:
        done = subprocess.run([sys.executable, str(script), str(one_edit_scenario), str(frames), str(out), temp_dir,
                               str(summary_file), *run_overrides, "runtime.num_actors=2", "runtime.max_failed_fraction=0"],
                              env=ENV, capture_output=True, text=True, timeout=560)
    finally:
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(summary_file.read_text())  # never stdout: Ray writes its own lines there
    assert summary["code"] == 0 and len(summary["removed_after"]) == 1  # the worker node really went away
    rows = [r for shard in complete_shards(out) for r in storage.read_table(shard).to_pylist()]
    assert sorted(r["source_id"] for r in rows) == [f"f{i}.png" for i in range(8)]  # each job exactly once
    assert all(r["error"] is None for r in rows)
    edited_on = [json.loads(r["nodes"])["edit"] for r in rows]
    assert summary["worker"] in edited_on and summary["head"] in edited_on  # both nodes edited
    assert_whole(out)
