"""The corruption backend's speed: edits per second per core at 832x480, the 15 COCO-C corruptions at severity 3
(the issue's figure) and albumentations' 5 weather effects at severity 3.

One process, one thread (BLAS, OpenMP and numba pinned to 1 before anything imports them), the backend's own
`edit_samples` on a textured 832x480 frame, a fresh seed per edit. Each corruption's first call is timed apart:
it holds the library's imports and, for glass_blur, numba's compilation of its kernel (once per worker
process). The headline rate is the 15 corruptions' total: 15 edits / the sum of their mean times.

Run: python bench/corruption.py [--quick | --smoke]     -> table + bench/results/corruption.json
"""

from __future__ import annotations

import os

# one core: set before numpy, scipy and numba load their thread pools
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402


def frame(width: int, height: int):
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([60 + x * 150 // width, 70 + y * 150 // height, 90 + (x + y) * 100 // (width + height)], -1)
    return np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)


def main() -> None:
    args = common.parse_args(argparse.ArgumentParser(description=__doc__),
                             quick="3 edits per corruption instead of 10")
    from chronoedit_sim.engine.backends.corruption import COCO_C, WEATHER, CorruptionBackend, spec_prompt

    width, height, reps = (160, 96, 1) if args.smoke else (832, 480, 3 if args.quick else 10)
    # smoke: seconds, so neither numba's compilation (glass_blur) nor albumentations' import (it loads torch)
    names = [n for n in COCO_C if n != "glass_blur"][:4] if args.smoke else [*COCO_C, *WEATHER]
    img = frame(width, height)
    t0 = time.perf_counter()
    backend = CorruptionBackend(None)
    rows = []
    for name in names:
        prompt = spec_prompt(name, 3)
        t = time.perf_counter()
        backend.edit_samples(img, prompt, seeds=[0])
        first = time.perf_counter() - t
        t = time.perf_counter()
        for seed in range(1, reps + 1):
            backend.edit_samples(img, prompt, seeds=[seed])
        ms = (time.perf_counter() - t) * 1000 / reps
        rows.append({"corruption": name, "family": "weather" if name in WEATHER else "coco_c",
                     "ms_per_edit": round(ms, 2), "edits_per_s": round(1000 / ms, 2),
                     "first_call_s": round(first, 3)})
    common.print_table(rows, ["corruption", "family", "ms_per_edit", "edits_per_s", "first_call_s"])
    summary = {}
    for family in ("coco_c", "weather"):
        mine = [r for r in rows if r["family"] == family]
        if mine:
            total_ms = sum(r["ms_per_edit"] for r in mine)
            summary[family] = {"corruptions": len(mine), "edits_per_s_per_core": round(1000 * len(mine) / total_ms, 3),
                               "slowest": max(mine, key=lambda r: r["ms_per_edit"])["corruption"]}
    for family, s in summary.items():
        print(f"{family}: {s['edits_per_s_per_core']} edits/s per core over {s['corruptions']} corruption(s) at "
              f"severity 3, {width}x{height} (slowest: {s['slowest']})")
    common.write_result("corruption", {
        "machine": common.machine(), "command": "python bench/corruption.py" + (" --quick" if args.quick else ""),
        "width": width, "height": height, "severity": 3, "edits_per_corruption": reps, "threads": 1,
        "summary": summary, "rows": rows, "wall_s": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
