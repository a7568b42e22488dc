"""`chronoedit-sim evaluate DIR --detector module:callable`: a user's detector over every clean and edited
image of a dataset on Ray; perception/evaluate.py turns the detections into the numbers and their text."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..dataset.sink import atomic_write_bytes
from ..perception.evaluate import EVAL_FILE, build_index, lines, summarize


def detect_all(tasks: list[dict], spec: str, device: str, gpus: float | None, actors: int, batch_size: int,
               address: str, verbose: bool) -> tuple[dict[str, object], list[str]]:
    """Every image through the detector on Ray: (image key -> detections, messages of failed images)."""
    import ray

    from ..config import RuntimeConfig
    from ..stages.base import Resources
    from ..stages.detect import DetectStage, ShardImagesStage
    from .adapter import from_payload
    from .pipeline import Cluster, share_cpus
    from .ray_runner import build_dataset, ray_session

    results, failed = {}, []
    with ray_session(address, verbose):
        res = ray.cluster_resources()
        if gpus is None:  # a GPU per detector where the cluster has them and the device allows
            gpus = 1.0 if device.startswith("cuda") or (device == "auto" and res.get("GPU", 0)) else 0.0
        stages = [ShardImagesStage(batch_size), DetectStage(spec, device, Resources(cpus=0.5, gpus=gpus, actors=actors))]
        share_cpus(stages, Cluster(cpus=res.get("CPU", 1), gpus=res.get("GPU", 0)))
        ds = build_dataset(stages, tasks, "", RuntimeConfig(), verbose, finish=False)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for row in from_payload(batch):
                if row["error"]:
                    failed.append(f"{row['job_id']}: {row['error']}")
                else:
                    results[row["job_id"]] = row["detections"]
    return results, failed


def evaluate(dataset: Path, spec: str, *, where: list[str] = (), batch_size: int = 8, device: str = "auto",
             gpus: float | None = None, actors: int = 1, address: str = "", verbose: bool = False, echo=print) -> dict:
    from ..stages.detect import load_callable

    load_callable(spec)  # a wrong name fails here, before Ray starts
    t0 = time.perf_counter()
    tasks, splits, info, frame_of = build_index(Path(dataset), list(where), echo)
    dets, failed = detect_all(tasks, spec, device, gpus, actors, batch_size, address, verbose)
    result = summarize(splits, info, frame_of, dets, failed, spec)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    result["images_per_s"] = round(result["images"] / result["seconds"], 3) if result["seconds"] else None
    atomic_write_bytes(Path(dataset) / EVAL_FILE, json.dumps(result, indent=1, sort_keys=True).encode())
    for line in lines(result):
        echo(line)
    from ..report.build import REPORT, build_after_run

    if (Path(dataset) / REPORT / "index.html").is_file():  # the report shows the numbers from now on
        build_after_run(Path(dataset), None, echo)
    return result
