"""Runs whose input and output are on the local S3 server (the `s3` fixture; make test-slow): minutes of Ray."""

from __future__ import annotations

import pytest
from PIL import Image

from chronoedit_sim import storage
from chronoedit_sim.dataset.sink import complete_shards
from chronoedit_sim.dataset.stats import tally_dataset
from chronoedit_sim.runtime.run import run
from verify_helpers import assert_whole

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_run_reads_its_frames_from_s3_and_writes_its_dataset_there_then_verify_and_report_read_it(
        ray_session, run_overrides, one_edit_scenario, s3, tmp_path):
    from chronoedit_sim.report.build import build_report

    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(tmp_path / f"f{i}.png")
    src = storage.path(f"{s3}/in")
    src.fs.put(str(tmp_path) + "/", src.path, recursive=True)
    out = f"{s3}/out"
    assert run([str(one_edit_scenario)], str(src), out, run_overrides, quiet=True, echo=lambda *_: None) == 0
    assert tally_dataset(out).counts["written"] == 3 and complete_shards(out)
    assert not (storage.path(out) / "_state" / "lock").exists()  # released
    assert_whole(out)
    assert build_report(out).exists()
    # a rerun resumes: every job is already in a complete shard
    assert run([str(one_edit_scenario)], str(src), out, run_overrides, quiet=True, echo=lambda *_: None) == 0
    assert tally_dataset(out).counts["written"] == 3
