"""The benchmarks keep running: the cheap ones' `--smoke` runs here (seconds in all, no figures written); the
others, which start Ray or load bigger models, are in the README's before-submit routine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", ["storage", "read_sources", "corruption"])
def test_a_cheap_benchmark_runs_in_smoke_mode_and_writes_no_figures(name):
    results = sorted((BENCH / "results").glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()  # it printed its table
    assert {p: p.stat().st_mtime_ns for p in sorted((BENCH / "results").glob("*.json"))} == before
