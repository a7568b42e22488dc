"""Read throughput of the sources on this CPU, and peak memory as a source grows tenfold.

For each size, a fresh subprocess lists the input (driver side), builds the run plan for one
scenario (checked, not listed: the plan streams), then reads every frame one at a time as the Ray read
tasks do, and reports frames/s and its peak RSS. Frames are 320x240. Run: python bench/read_sources.py [--smoke]
(smoke: 4 frames)
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

import common

CHILD = r'''
import json, sys, time
from chronoedit_sim.config import ConfigLoader
from chronoedit_sim.runtime.plan import make_plan
from chronoedit_sim.sources.dispatch import read_input
path, scenario = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
plan = make_plan(ConfigLoader(["model=tiny", f"input.path={path}"]), [scenario])
t1 = time.perf_counter()
frames = 0
for ref in plan.refs():
    read_input([ref], max_pixels=50_000_000, min_side=16)
    frames += 1
t2 = time.perf_counter()
print(json.dumps({"frames": frames, "jobs": frames * plan.jobs_per_frame, "plan_s": round(t1 - t0, 2),
                  "frames_per_s": round(frames / (t2 - t1), 1),
                  "peak_rss_mib": peak_rss_mib()}))
'''


def frame(i: int) -> np.ndarray:
    y, x = np.mgrid[0:240, 0:320]
    return np.stack([(x + i) % 256, (y * 2 + i) % 256, (x + y) % 256], -1).astype(np.uint8)


def image_folder(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / f"{i:06d}.jpg"), frame(i))
    return root


def video(path: Path, n: int) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(n):
        w.write(frame(i))
    w.release()
    return path


def measure(kind: str, path: Path, scenario: str) -> None:
    out = subprocess.run([sys.executable, "-c", common.CHILD_PRELUDE + CHILD, str(path), scenario],
                         capture_output=True, text=True, check=True)
    print(json.dumps({"source": kind, **json.loads(out.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
    repo = Path(__file__).resolve().parents[1]
    scenario = str(repo / "scenarios/driving/rain.yaml")
    tmp = Path(tempfile.mkdtemp())
    for n in (4,) if "--smoke" in sys.argv else (200, 2000):
        measure("images", image_folder(tmp / f"img{n}", n), scenario)
        measure("video", video(tmp / f"clip{n}.mp4", n), scenario)
