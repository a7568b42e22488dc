"""The benchmarks keep running: every one's `--smoke` mode runs here, no figures written: the cheap ones in make
test (seconds in all), those that start Ray or load bigger models in make test-slow (about 4 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


CHEAP = ["storage", "read_sources", "corruption"]
HEAVY = ["overlap", "counts", "memory", "overhead", "perception", "report", "score_throughput", "sequences", "vlm", "gpu",
         "gpu_check", "scale", "object_store"]


@pytest.mark.parametrize("name", CHEAP)
def test_a_cheap_benchmark_runs_in_smoke_mode_and_writes_no_figures(name):
    smoke(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY)
def test_a_benchmark_that_starts_ray_or_loads_models_runs_in_smoke_mode_and_writes_no_figures(name):
    smoke(name, timeout=600)


def test_every_benchmark_is_run_by_one_of_the_tests_above():
    # common.py is their shared helper; gpu_speed.py holds gpu.py's --speed sections
    assert sorted(p.stem for p in BENCH.glob("*.py")) == sorted(CHEAP + HEAVY + ["common", "gpu_speed"])


def smoke(name: str, timeout: int = 120) -> None:
    results = sorted((BENCH / "results").glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke"], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()  # it printed its table
    assert {p: p.stat().st_mtime_ns for p in sorted((BENCH / "results").glob("*.json"))} == before
