"""Joining a real Ray cluster (`ray start --head` on 127.0.0.1), and losing a node mid-run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from verify_helpers import assert_whole

pytestmark = pytest.mark.ray
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def frames_dir(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (64, 48), (20 * i, 90, 120)).save(folder / f"f{i}.png")
    return folder


@pytest.fixture
def head_node():
    """(address, node id) of a one-node cluster; `--port=0` lets Ray pick a free port (no race)."""
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="cesim-head-", dir="/tmp")
    started = subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", "--port=0",
                              f"--temp-dir={temp_dir}", "--num-cpus=2", "--include-dashboard=false",
                              "--disable-usage-stats"], env=ENV, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        address = re.search(r"--address='([\d.]+:\d+)'", started.stdout).group(1)
        probe = "import ray; ray.init(address=%r, log_to_driver=False); print(ray.get_runtime_context().get_node_id())"
        node = subprocess.run([sys.executable, "-c", probe % address], env=ENV, capture_output=True, text=True,
                              timeout=120, check=True).stdout.split()[-1]
        yield address, node
    finally:
        # `ray stop` would also stop the test session's own instance: end only this head's processes
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_run_joins_an_existing_cluster(head_node, run_overrides, one_edit_scenario, tmp_path):
    address, head_id = head_node
    frames = frames_dir(tmp_path / "frames", 2)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "chronoedit_sim.cli", "run", str(one_edit_scenario), "--input",
                           str(frames), "--output", str(out), "-q", *run_overrides, f"runtime.address={address}"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pq.ParquetDataset(str(out / "data")).read().to_pylist()
    assert len(rows) == 2 and "planned 2, written 2 this run" in done.stdout
    # every stage of every row ran on that cluster's only node, not on a private instance
    assert {node for r in rows for node in json.loads(r["nodes"]).values()} == {head_id}
    assert_whole(out)


@pytest.mark.slow  # about 2 minutes alone on 2 cores; once hung past the 300 s timeout inside the full suite
def test_a_node_lost_mid_run_loses_and_duplicates_nothing(run_overrides, one_edit_scenario, tmp_path):
    frames = frames_dir(tmp_path / "frames", 8)
    out = tmp_path / "out"
    temp_dir = tempfile.mkdtemp(prefix="cesim-2n-", dir="/tmp")
    script = Path(__file__).with_name("two_node_run.py")
    try:
        done = subprocess.run([sys.executable, str(script), str(one_edit_scenario), str(frames), str(out), temp_dir,
                               *run_overrides, "runtime.num_actors=2", "runtime.max_failed_fraction=0"],
                              env=ENV, capture_output=True, text=True, timeout=400)
    finally:
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["code"] == 0 and len(summary["removed_after"]) == 1  # the worker node really went away
    rows = pq.ParquetDataset(str(out / "data")).read().to_pylist()
    assert sorted(r["source_id"] for r in rows) == [f"f{i}.png" for i in range(8)]  # each job exactly once
    assert all(r["error"] is None for r in rows)
    edited_on = [json.loads(r["nodes"])["edit"] for r in rows]
    assert summary["worker"] in edited_on and summary["head"] in edited_on  # both nodes edited
    assert_whole(out)
