"""Does the GPU wait for the CPU? A SIMULATED accelerator against the real CPU stages.

The edit stage is replaced by a benchmark-only SIMULATION (SimulatedEditStage, below): it holds
each job for a set accelerator latency (a sleep, using no CPU, as a GPU-bound edit leaves the host
idle) and returns full-size outputs made from real-looking frames: a 29-frame 832x480 driving clip
(bench/storage.py's scene). Everything else is the real pipeline at its real cost: read tasks,
the encode stage (webp frames or H.264 video), the score stage (tiny RANDOM CLIP on 29 + 2 images,
SSIM, PSNR, flow warp error) and the driver's Parquet shards.

efficiency = jobs/s / (actors / latency): 1.0 means the accelerator never waited. The CPU seconds
per row of each CPU stage are measured apart, on one thread (time.process_time), so a user can
size the cores per GPU: cores needed = sum of CPU seconds per row / latency.

Run: python bench/overlap.py [--quick | --smoke] [--latency-ms 800 3000]   -> table + bench/results/overlap.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import common  # this checkout's package first

from chronoedit_sim.runtime import pipeline
from chronoedit_sim.runtime.run import run
from chronoedit_sim.stages.base import Stage

STORAGES = {"webp frames": ["trajectory.storage=frames", "trajectory.image_format=webp"],
            "video crf18": ["trajectory.storage=video"]}


class SimulatedEditStage(Stage):
    """SIMULATION, benchmarks only: sleeps `latency_s` per job and returns a fixed real-looking clip."""

    name = "edit"

    def __init__(self, real: Stage, latency_s: float, clip):
        self.resources, self.batch_size, self.latency_s = real.resources, real.batch_size, latency_s
        self.clip = clip  # made on the driver: Ray workers cannot import bench/

    def process_row(self, row: dict) -> dict:
        started = time.time()
        time.sleep(self.latency_s)
        # model_hash carries when the simulated accelerator started the job: the benchmark reads the
        # accelerator's busy span from the dataset itself
        row.update(_edited_rgb=self.clip[-1], _reasoning_rgb=self.clip, _previews=[], reasoning_kind="decoded",
                   model_id="SIMULATION", model_hash=f"{started:.6f}", random_weights=True)
        return row


def cpu_seconds_per_row(storage: list[str]) -> dict:
    """CPU seconds per row of the encode and score stages (and a shard write), one thread, in-process."""
    from chronoedit_sim.config import load_config
    from chronoedit_sim.dataset.schema import base_row, finish_row
    from chronoedit_sim.dataset.sink import ShardWriter
    from chronoedit_sim.scenario import EditSettings
    from chronoedit_sim.stages.base import Resources
    from chronoedit_sim.stages.encode import EncodeStage
    from chronoedit_sim.stages.score import ScoreStage
    from storage import driving_scene

    clip = driving_scene()
    models = common.tiny_models(Path(tempfile.gettempdir()) / "cesim-bench-models")
    cfg = load_config([*models, *storage])
    settings = {"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)}
    job = {"job_id": "j", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": 0, "source_id": "f.png",
           "source_uri": "/f.png", "prompt": "p", "negative_prompt": "", "target_caption": "a street with a car",
           "source_caption": "a street", "labels": {}, "choices": {}}
    row = base_row(job, "r")
    row.update(_source_rgb=clip[0], _edited_rgb=clip[-1], _reasoning_rgb=clip, timings_ms={})
    score = ScoreStage(settings, cfg.scoring.clip, Resources(), flow_max_side=cfg.scoring.flow_max_side)
    score.setup()
    score.process_batch([dict(row)])  # warm-up (CLIP caches, OpenCV)
    out = {}
    t = time.process_time()
    (encoded,) = EncodeStage(settings, Resources()).process_batch([dict(row)])
    out["encode_cpu_s"] = time.process_time() - t
    t = time.process_time()
    (scored,) = score.process_batch([encoded])
    out["score_cpu_s"] = time.process_time() - t
    t = time.process_time()
    writer = ShardWriter(Path(tempfile.mkdtemp()), cfg.output)
    writer.add(finish_row(scored))
    writer.flush()
    out["write_cpu_s"] = time.process_time() - t
    return {k: round(v, 3) for k, v in out.items()}


def measure(latency_ms: int, storage: str, jobs: int, root: Path) -> dict:
    from storage import driving_scene

    clip = driving_scene()
    real = common.simulate_stage("edit", lambda stage: SimulatedEditStage(stage, latency_ms / 1000, clip))
    out = root / f"out-{latency_ms}-{storage.split()[0]}"
    try:
        frames = common.write_frames(root / "frames", jobs)
        scenario = common.write_scenario(root)
        run([str(scenario)], str(frames), str(out),
            [*common.tiny_models(root), *common.NO_BOUNDS, *STORAGES[storage], "runtime.num_actors=1"],
            overwrite=True, quiet=True, echo=lambda *_: None)
    finally:
        pipeline.PIPELINE[:] = real
    import pyarrow.parquet as pq

    starts = sorted(float(h) for h in pq.ParquetDataset(str(out / "data")).read(columns=["model_hash"])["model_hash"]
                    .to_pylist())
    # the accelerator's span, first job start to last job end: 1.0 efficiency = it never waited for
    # its next input, nor was held back by encoding, scoring or writing behind it
    jobs_per_s = len(starts) / (starts[-1] + latency_ms / 1000 - starts[0])
    return {"latency_ms": latency_ms, "storage": storage, "actors": 1, "jobs": jobs,
            "jobs_per_s": round(jobs_per_s, 4), "efficiency": round(jobs_per_s * latency_ms / 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[800, 3000])
    args = common.parse_args(parser, quick="10 jobs per setting instead of 30")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    jobs = 3 if args.smoke else 10 if args.quick else 30
    if args.smoke:
        args.latency_ms = [200]
    root = Path(tempfile.mkdtemp(prefix="cesim-bench-overlap-"))
    rows = []
    for storage in list(STORAGES)[:1] if args.smoke else STORAGES:
        cpu = cpu_seconds_per_row(STORAGES[storage])
        for latency in args.latency_ms:
            row = {**measure(latency, storage, jobs, root), **cpu}
            total = cpu["encode_cpu_s"] + cpu["score_cpu_s"] + cpu["write_cpu_s"]
            row["cores_per_gpu_needed"] = round(total / (latency / 1000), 2)
            rows.append(row)
            print(row, flush=True)
    common.print_table(rows, ["latency_ms", "storage", "jobs_per_s", "efficiency", "encode_cpu_s", "score_cpu_s",
                              "write_cpu_s", "cores_per_gpu_needed"])
    common.write_result("overlap", {"quick": args.quick, "machine": common.machine(),
                                    "editor": "SIMULATION: sleeps latency_ms per job, returns a 29-frame 832x480 clip",
                                    "target": "efficiency >= 0.9 at 3000 ms with webp frames; at 800 ms with video, "
                                              ">= 0.9 or the cores a GPU needs", "results": rows})


if __name__ == "__main__":
    main()
