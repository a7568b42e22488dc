"""Runs whose input and output are on the local S3 server (the `s3` fixture) or GCS emulator (`store`: each in
turn); make test-slow: minutes of Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from PIL import Image

from chronoedit_sim import storage
from chronoedit_sim.dataset.sink import complete_shards
from chronoedit_sim.dataset.stats import tally_dataset
from chronoedit_sim.runtime.run import run
from verify_helpers import assert_whole

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_run_reads_its_frames_from_a_store_and_writes_its_dataset_there_then_verify_and_report_read_it(
        ray_session, run_overrides, one_edit_scenario, store, tmp_path):
    from chronoedit_sim.report.build import build_report

    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(tmp_path / f"f{i}.png")
    src = storage.path(f"{store}/in")
    src.fs.put(str(tmp_path) + "/", src.path, recursive=True)
    out = f"{store}/out"
    assert run([str(one_edit_scenario)], str(src), out, run_overrides, quiet=True, echo=lambda *_: None) == 0
    assert tally_dataset(out).counts["written"] == 3 and complete_shards(out)
    assert not (storage.path(out) / "_state" / "lock").exists()  # released
    assert_whole(out)
    assert build_report(out).exists()
    # a rerun resumes: every job is already in a complete shard
    assert run([str(one_edit_scenario)], str(src), out, run_overrides, quiet=True, echo=lambda *_: None) == 0
    assert tally_dataset(out).counts["written"] == 3


def test_a_driver_killed_before_a_shard_put_and_after_rows_then_resumed_gives_every_job_once_on_a_store(
        ray_session, run_overrides, one_edit_scenario, store, tmp_path):
    """#23: the deterministic driver kills of tests/runtime/test_run.py with input and output on each store:
    the killed drivers' lock objects are taken over, the shard never PUT is simply absent (no partial object)."""
    for i in range(6):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(tmp_path / f"f{i}.png")
    src = storage.path(f"{store}/in")
    src.fs.put(str(tmp_path) + "/", src.path, recursive=True)
    out = storage.path(f"{store}/out")
    overrides = [*run_overrides, "output.shard_max_rows=1"]
    cmd = [sys.executable, "-m", "chronoedit_sim.cli", "run", str(one_edit_scenario), "--input", str(src),
           "--output", str(out), "-q", *overrides, f"runtime.address={ray_session}"]

    def run_cli(*extra):
        # the local servers' endpoints (and S3's keys) are in this process's environment (tests/conftest.py)
        return subprocess.run([*cmd, *extra], env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)

    def shards():
        return sorted(p.name for p in (out / "data").iterdir())

    killed = run_cli("runtime.faults.kill_driver_before_rename=3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(shards()) == 2 and tally_dataset(str(out)).counts["written"] == 2  # the third never PUT
    assert (out / "_state" / "lock").exists()  # the dead driver's
    killed = run_cli("runtime.faults.kill_driver_after_rows=2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(shards()) == 4
    assert run([str(one_edit_scenario)], str(src), str(out), overrides, quiet=True, echo=lambda *_: None) == 0
    rows = [r for name in shards() for r in storage.read_table(out / "data" / name).to_pylist()]
    assert sorted(r["source_id"] for r in rows) == [f"f{i}.png" for i in range(6)]
    assert len({r["job_id"] for r in rows}) == 6 == len(shards())
    assert len(json.loads((out / "run.json").read_text())["runs"]) == 3
    assert not (out / "_state" / "lock").exists()
    assert_whole(str(out))


def test_a_run_takes_its_model_from_s3_the_driver_checking_it_there_and_the_actor_loading_its_nodes_copy(
        ray_session, run_overrides, one_edit_scenario, s3, tiny_model_dir, tmp_path):
    from chronoedit_sim.engine.node_cache import cache_folder
    from chronoedit_sim.engine.weights import model_hash

    url = f"{s3}/tiny-chronoedit"
    storage.path(url).fs.put(str(tiny_model_dir) + "/", storage.path(url).path, recursive=True)
    (tmp_path / "frames").mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(tmp_path / "frames" / f"f{i}.png")
    out, cache = tmp_path / "out", str(tmp_path / "cache")
    overrides = [*run_overrides, f"model.path={url}", f"model.cache_dir={cache}"]
    assert run([str(one_edit_scenario)], str(tmp_path / "frames"), str(out), overrides, quiet=True,
               echo=lambda *_: None) == 0
    rows = [r for p in sorted((out / "data").glob("*.parquet")) for r in storage.read_table(p).to_pylist()]
    assert len(rows) == 2 and {(r["model_id"], r["model_hash"], r["error"]) for r in rows} == {
        (url, model_hash(tiny_model_dir, []), None)}
    recorded = json.loads((out / "run.json").read_text())["weights"]
    assert {k for k in recorded if k.startswith("editor ")} == {
        f"editor {c}" for c in ("image_encoder", "image_processor", "index", "scheduler", "text_encoder",
                                "tokenizer", "transformer", "vae")}
    assert model_hash(cache_folder(url, cache), []) == model_hash(tiny_model_dir, [])
