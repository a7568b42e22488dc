"""`chronoedit-sim evaluate DIR --detector module:callable`: a user's detector over every clean and edited
image of a dataset on Ray; perception/evaluate.py turns the detections into the numbers and their text."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

from .. import storage
from ..dataset.sink import atomic_write_bytes
from ..errors import UserError
from ..perception.evaluate import EVAL_FILE, build_index, lines, screen, summarize

log = logging.getLogger(__name__)


def detect_all(tasks: list[dict], spec: str, device: str, gpus: float | None, actors: int, batch_size: int,
               address: str, verbose: bool) -> tuple[dict[str, object], list[str]]:
    """Every image through the detector on Ray: (image key -> (detections, image size), "key: reason" of each
    failed image)."""
    import ray

    from ..config import RuntimeConfig
    from ..stages.base import Resources
    from ..stages.detect import START_FAILED, DetectStage, ShardImagesStage
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
        if not verbose:  # a dead detector is said in one line below; Ray Data would log its traceback first
            logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for row in from_payload(batch):
                    if row["error"] and row["error"].startswith(START_FAILED):
                        raise UserError(f"--detector {spec}: {row['error'].split(': ', 1)[1]}")
                    if row["error"]:
                        failed.append(f"{row['job_id']}: {row['error']}")
                    else:
                        results[row["job_id"]] = (row["detections"], row["size"])
        except ray.exceptions.RayError as exc:
            # its process ended without an exception (os._exit, a crash, the OOM killer), and again after
            # Ray's restarts: Ray's report of each is long, and -v shows it
            log.info("detector actor died", exc_info=True)
            raise UserError(f"--detector {spec}: its process died ({type(exc).__name__}; os._exit, a crash or "
                            "the OOM killer) after Ray's restarts; nothing was scored (-v shows Ray's report)") from None
    return results, failed


def evaluate(dataset: Path, spec: str, *, where: list[str] = (), batch_size: int = 8, device: str = "auto",
             gpus: float | None = None, actors: int = 1, address: str = "", verbose: bool = False, bootstrap: int = 1000,
             seed: int = 0, echo=print, warn=None) -> tuple[dict, int]:
    """(eval.json's content, the exit code): 0, or 3 where images failed or their detections were refused
    (the numbers are then those of the other images, and say so)."""
    from ..stages.detect import READ_FAILED, load_callable

    warn = warn or echo
    if bootstrap < 0:
        raise UserError(f"--bootstrap {bootstrap}: a number of resamples, 0 = no intervals")
    load_callable(spec)  # a wrong name fails here, before Ray starts
    t0 = time.perf_counter()
    tasks, splits, info, frame_of = build_index(storage.path(dataset), list(where), echo)
    raw, failed = detect_all(tasks, spec, device, gpus, actors, batch_size, address, verbose)
    t1 = time.perf_counter()
    dets, refused = screen(splits, raw)
    result = summarize(splits, info, frame_of, dets, spec, failed=failed, refused=refused, bootstrap=bootstrap,
                       seed=seed)
    t2 = time.perf_counter()
    result["seconds"] = {"total": round(t2 - t0, 3), "detect": round(t1 - t0, 3), "metrics": round(t2 - t1, 3)}
    result["images_per_s"] = round(result["images"] / (t2 - t0), 3)
    atomic_write_bytes(storage.path(dataset) / EVAL_FILE, json.dumps(result, indent=1, sort_keys=True).encode())
    for line in lines(result):
        echo(line)
    code = 0
    # a shard that could not be read is not the detector's failure: said apart
    unread = [line for line in failed if line.split(": ", 1)[1].startswith(READ_FAILED)]
    failed = [line for line in failed if not line.split(": ", 1)[1].startswith(READ_FAILED)]
    for what, keyed in (("the shard could not be read for", unread), ("the detector failed on", failed),
                        ("detections refused on", refused)):
        if keyed:
            code = 3
            reasons = Counter(line.split(": ", 1)[1] for line in keyed)
            warn(f"error: {what} {len(keyed)} of {result['images']} image(s), left out of every number: "
                 + "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(3))
                 + (f"; {len(reasons) - 3} other reason(s) in {EVAL_FILE}" if len(reasons) > 3 else ""))
    from ..report.build import REPORT, build_after_run

    if (storage.path(dataset) / REPORT / "index.html").is_file():  # the report shows the numbers from now on
        build_after_run(storage.path(dataset), None, echo)
    return result, code
