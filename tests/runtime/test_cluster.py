"""Joining a real Ray cluster started with `ray start --head` (on 127.0.0.1, private temp dir)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node():
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="cesim-head-", dir="/tmp")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    f"--temp-dir={temp_dir}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    yield f"127.0.0.1:{port}"
    # `ray stop` would also stop the test session's own instance: end only this head's processes
    subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
    time.sleep(1)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_run_joins_an_existing_cluster(head_node, tiny_overrides, one_edit_scenario, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "chronoedit_sim.cli", "run", str(one_edit_scenario), "--input",
                           str(frames), "--output", str(out), "-q", *tiny_overrides, f"runtime.address={head_node}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert pq.ParquetDataset(str(out / "data")).read().num_rows == 2
    assert "planned 2, written 2 this run" in done.stdout
