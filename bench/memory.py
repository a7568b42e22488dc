"""Peak memory of a whole run for N and 10N jobs: does it grow with the job count?

`chronoedit-sim run` runs as a subprocess with its own private Ray instance; every 0.2 s the
proportional set size (PSS) of the driver and all its descendants (GCS, raylet, workers, agents)
is summed, so pages shared between processes (Ray's object store, the model files) count once.
Tiny RANDOM-WEIGHT checkpoint, reasoning on (9 frames per row), CLIP scoring on.

Run: python bench/memory.py [--quick | --smoke]     -> table + bench/results/memory.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

import common


def pss_tree(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def peak_of_run(scenario: Path, frames: Path, out: Path, overrides: list[str]) -> tuple[int, float]:
    """(peak summed PSS in bytes, wall seconds) of one run."""
    cmd = [sys.executable, "-m", "chronoedit_sim.cli", "run", str(scenario), "--input", str(frames), "--output",
           str(out), "-q", "--overwrite", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, pss_tree(root))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"run failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return peak, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hundred", action="store_true", help="also run 100N jobs")
    args = common.parse_args(parser, quick="N = 8 instead of 30")
    n = 8 if args.quick else 30
    # smoke: one run of 2 jobs, no ratio
    sizes = [2] if args.smoke else [n, 10 * n] + ([100 * n] if args.hundred else [])
    root = Path(tempfile.mkdtemp(prefix="cesim-bench-memory-"))
    overrides = [*common.tiny_models(root), *common.NO_BOUNDS, "generation.temporal_reasoning=true"]
    scenario = common.write_scenario(root)
    rows = []
    for size in sizes:
        frames = common.write_frames(root / f"frames_{size}", size)
        peak, wall = peak_of_run(scenario, frames, root / "out", overrides)
        rows.append({"jobs": size, "peak_pss_mib": round(peak / 2**20, 1), "wall_s": round(wall, 1)})
        print(rows[-1], flush=True)
    common.print_table(rows, ["jobs", "peak_pss_mib", "wall_s"])
    if args.smoke:
        return
    doc = {"quick": args.quick, "machine": common.machine(), "measure": "peak of the summed PSS of the driver and "
           "every descendant process, sampled every 0.2 s", "peak_mib_n": rows[0]["peak_pss_mib"],
           "peak_mib_10n": rows[1]["peak_pss_mib"], "ratio": round(rows[1]["peak_pss_mib"] / rows[0]["peak_pss_mib"], 3),
           "target": "ratio <= 1.1", "results": rows}
    print(f"ratio 10N / N: {doc['ratio']}")
    common.write_result("memory", doc)


if __name__ == "__main__":
    main()
