"""What the benchmarks share: the machine's description, the tiny models and inputs, tables, results.

Every benchmark is one command (`python bench/<name>.py [--quick | --smoke]`), prints a table and writes
bench/results/<name>.json. `--smoke` runs the smallest sizes in seconds and writes no figures: it shows the
benchmark still runs (tests/bench/test_smoke.py, and the README's before-submit routine). Speed is reported
here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this checkout's package, even where another checkout is the one installed
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
# set by parse_args: a smoke run writes no figures
SMOKE = False
# put before the code a measured child process runs (`python -c`): gives it peak_rss_mib()
CHILD_PRELUDE = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); from common import peak_rss_mib\n"


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (the kernel's VmHWM for the running program). Not getrusage's
    ru_maxrss: Linux keeps that across exec, so a child measured that way reported the peak of the copy of its
    parent that fork made (900 MB from a bench that had loaded torch), whatever the child itself did."""
    with open("/proc/self/status") as status:
        return round(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024, 1)


def parse_args(parser: argparse.ArgumentParser, quick: str | None = None) -> argparse.Namespace:
    """The benchmark's own arguments plus --quick (where it has one) and --smoke."""
    global SMOKE
    if quick:
        parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--smoke", action="store_true",
                        help="the smallest sizes, in seconds, writing no figures: does the benchmark still run?")
    args = parser.parse_args()
    SMOKE = args.smoke
    return args


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:  # the GPU machine has no ray or av
            return None

    return {"cpu_model": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
            **{name: installed(name) for name in ("torch", "diffusers", "transformers", "ray", "av")},
            "date": time.strftime("%Y-%m-%d")}


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_result(name: str, doc: dict) -> Path | None:
    if SMOKE:
        print(f"smoke run: bench/results/{name}.json left as it was")
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def tiny_models(folder: Path) -> list[str]:
    """The tiny RANDOM-WEIGHT ChronoEdit and CLIP (written once), as command-line overrides."""
    from chronoedit_sim.engine.tiny import write_tiny_model
    from chronoedit_sim.scoring.clip import write_tiny_clip

    model, clip = folder / "tiny-chronoedit", folder / "tiny-clip"
    if not model.exists():
        write_tiny_model(model, seed=0)
        write_tiny_clip(clip, seed=0)
    return ["model=tiny", f"model.path={model}", f"scoring.clip.model=local-dir:{clip}"]


def write_frames(folder: Path, n: int, width: int = 80, height: int = 48) -> Path:
    """n distinct structured frames (gradients and a block), one job each under a one-edit scenario."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:height, 0:width]
    for i in range(n):
        img = np.stack([(x * 3 + i * 7) % 256, (y * 5 + i) % 256, np.full_like(x, 60 + i % 100)], -1).astype(np.uint8)
        img[height // 3: height // 2, width // 4: width // 2] = (200, 40, 40)
        Image.fromarray(img).save(folder / f"frame_{i:05d}.png")
    return folder


def write_scenario(folder: Path) -> Path:
    """One edit, one sample: jobs = frames."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench_edit.yaml"
    path.write_text("name: bench_edit\ndomain: driving\ndescription: benchmark scenario\nlabels: {inserted: car}\n"
                    "edits:\n  - id: add_car\n    prompt: Add a red car. Keep the camera unchanged.\n"
                    "    target_caption: a street with a red car\n    source_caption: a street\n")
    return path


# bounds on random-weight scores mean nothing; the benchmarks keep every row
NO_BOUNDS = ["filter.clip_text_min=null", "filter.clip_image_min=null", "filter.clip_direction_min=null"]


def simulate_stage(name: str, simulated) -> list:
    """Swap the pipeline stage named `name` for `simulated(real_stage)`, found by its name wherever
    runtime.pipeline.PIPELINE puts it (never by position: stages get added). Returns the list to restore."""
    from chronoedit_sim.runtime import pipeline

    real = list(pipeline.PIPELINE)

    def wrap(make):
        def build(ctx):
            stage = make(ctx)
            return simulated(stage) if stage is not None and stage.name == name else stage
        return build

    pipeline.PIPELINE[:] = [wrap(make) for make in real]
    return real
