"""The toolkit's cost per job against a plain loop over ChronoEditPipeline on the same jobs.

Both edit the same frames with the tiny RANDOM-WEIGHT checkpoint, the same settings (tiny preset:
4 steps, 160x96) and one torch thread for the model (what Ray gives an actor with one CPU). The
plain loop calls ChronoEditPipeline once per job and writes the edited frame (and, with reasoning,
every reasoning frame) as PNG. The toolkit is `chronoedit-sim run` with everything it does: read,
edit, encode, score (weight-free only with "scoring off", CLIP too with "scoring on"), atomic
Parquet shards. Marginal seconds per job come from the steady state of one run: the span between the
first and the last finished row (each row's created_at) over n - 1, so start-up (Ray, actors, model
loads, the first job's warm-up) is excluded and reported apart; the plain loop is timed the same
way. Runs alternate: plain, toolkit, plain, toolkit, plain.

Run: python bench/overhead.py [--quick | --smoke]     -> table + bench/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

REASONING = {"off": ["generation.temporal_reasoning=false"],
             # reasoning_steps >= steps: both sides decode the same whole video
             "full": ["generation.temporal_reasoning=true", "generation.reasoning_steps=4"]}


def plain_loop(model_dir: str, frames_dir: Path, out: Path, reasoning: str, n: int) -> dict:
    """In this process (run as a subprocess by main): load, then time one pipeline call per job."""
    import numpy as np
    import torch
    from diffusers import ChronoEditPipeline, UniPCMultistepScheduler
    from PIL import Image

    from chronoedit_sim.config import load_config
    from chronoedit_sim.engine.editor import MAX_SEQUENCE_LENGTH, fit_resolution

    # the same settings the toolkit uses: the tiny preset's generation section, fitted the same way
    gen = load_config(["model=tiny", f"model.path={model_dir}", *REASONING[reasoning]]).generation
    full = gen.temporal_reasoning
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    pipe = ChronoEditPipeline.from_pretrained(model_dir, dtype=torch.float32)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, prediction_type="flow_prediction",
                                                         use_flow_sigmas=True, flow_shift=gen.flow_shift)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    ends = []
    for i, path in enumerate(sorted(frames_dir.glob("*.png"))[:n]):
        image = Image.open(path).convert("RGB")
        width, height = fit_resolution(*image.size, gen.max_area)
        result = pipe(image=image.resize((width, height), Image.Resampling.BICUBIC),
                      prompt="Add a red car. Keep the camera unchanged.", height=height, width=width,
                      num_frames=gen.num_frames if full else 5, num_inference_steps=gen.num_inference_steps,
                      guidance_scale=gen.guidance_scale, generator=torch.Generator().manual_seed(i), output_type="np",
                      max_sequence_length=MAX_SEQUENCE_LENGTH, enable_temporal_reasoning=full,
                      num_temporal_reasoning_steps=gen.reasoning_steps if full else 0)
        frames = (result.frames[0] * 255).round().clip(0, 255).astype(np.uint8)
        for k, frame in enumerate(frames if full else frames[-1:]):
            Image.fromarray(frame).save(out / f"{i:05d}_{k:02d}.png")
        ends.append(time.perf_counter())
    # the first call warms caches: marginal cost from the rest, start-up = load + the first call
    marginal = (ends[-1] - ends[0]) / (len(ends) - 1)
    return {"plain_s_per_job": marginal, "plain_startup_s": (ends[0] - t0) - marginal, "load_s": load_s}


def toolkit(scenario: Path, frames: Path, out: Path, overrides: list[str]) -> dict:
    import pyarrow.parquet as pq

    cmd = [sys.executable, "-m", "chronoedit_sim.cli", "run", str(scenario), "--input", str(frames), "--output",
           str(out), "-q", "--overwrite", *overrides]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={"RAY_AUTH_MODE": "disabled", **os.environ})
    wall = json.loads((out / "run.json").read_text())["runs"][-1]["wall_s"]
    done = sorted(pq.ParquetDataset(str(out / "data")).read(columns=["created_at"])["created_at"].to_pylist())
    marginal = (done[-1] - done[0]).total_seconds() / (len(done) - 1)
    return {"toolkit_s_per_job": marginal, "toolkit_startup_s": wall - len(done) * marginal}


def run_plain(model_dir: str, frames: Path, out: Path, reasoning: str, n: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--plain", model_dir, str(frames), str(out), reasoning, str(n)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", nargs=5, help=argparse.SUPPRESS)
    args = common.parse_args(parser, quick="12 jobs per run instead of 40")
    if args.plain:
        model_dir, frames, out, reasoning, n = args.plain
        print(json.dumps(plain_loop(model_dir, Path(frames), Path(out), reasoning, int(n))))
        return
    n = 3 if args.smoke else 12 if args.quick else 40
    root = Path(tempfile.mkdtemp(prefix="cesim-bench-overhead-"))
    models = common.tiny_models(root)
    model_dir = models[1].split("=", 1)[1]
    frames = common.write_frames(root / "frames", n)
    scenario = common.write_scenario(root)
    rows = []
    # smoke: reasoning off and scoring off only
    for reasoning, gen in list(REASONING.items())[:1 if args.smoke else None]:
        plains = [run_plain(model_dir, frames, root / "plain", reasoning, n)]
        for scoring, clip in (("off", ["scoring.clip.enabled=false"]), ("on", []))[:1 if args.smoke else None]:
            kit = toolkit(scenario, frames, root / "out", [*models, *common.NO_BOUNDS, *gen, *clip])
            plains.append(run_plain(model_dir, frames, root / "plain", reasoning, n))  # alternating
            plain = sum(p["plain_s_per_job"] for p in plains[-2:]) / 2  # the runs on either side
            rows.append({"reasoning": reasoning, "scoring": scoring,
                         "toolkit_s_per_job": round(kit["toolkit_s_per_job"], 4), "plain_s_per_job": round(plain, 4),
                         "ratio": round(kit["toolkit_s_per_job"] / plain, 3),
                         "toolkit_startup_s": round(kit["toolkit_startup_s"], 2),
                         "plain_startup_s": round(sum(p["plain_startup_s"] for p in plains[-2:]) / 2, 2)})
            print(rows[-1], flush=True)
    common.print_table(rows, ["reasoning", "scoring", "toolkit_s_per_job", "plain_s_per_job", "ratio",
                              "toolkit_startup_s", "plain_startup_s"])
    common.write_result("overhead", {"jobs": n, "quick": args.quick, "machine": common.machine(),
                                     "model": "tiny RANDOM-WEIGHT checkpoint, 4 steps, 160x96, 1 torch thread",
                                     "scoring off": "CLIP disabled; the weight-free scores still run",
                                     "target": "ratio <= 1.05 with scoring off", "results": rows})


if __name__ == "__main__":
    main()
