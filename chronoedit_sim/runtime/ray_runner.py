"""The Ray Data plan: read+expand (tasks) -> edit (GPU actor pool) -> score (actor pool) -> sink (driver).

The driver consumes the stream and is the only writer, so each finished row is
written exactly once into an atomic shard; jobs Ray could not finish after its
retries come back as error rows at the end, never as gaps.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..dataset.schema import base_row
from ..dataset.sink import ShardWriter
from .plan import RunPlan
from .progress import Progress
from .stage import PAYLOAD, Resources, StageAdapter, from_payload, run_stage_task, to_payload
from .stages import EditStage, ReadStage, finish_row

log = logging.getLogger(__name__)


@dataclass
class RunCounts:
    planned: int = 0
    resumed_skipped: int = 0
    written: int = 0
    kept: int = 0
    failed: int = 0
    rejected: int = 0
    errors_by_stage: dict = field(default_factory=dict)

    def add(self, row: dict) -> None:
        self.written += 1
        if row["error"]:
            self.failed += 1
            stage = row["error"].split(":", 1)[0]
            self.errors_by_stage[stage] = self.errors_by_stage.get(stage, 0) + 1
        elif row["keep"]:
            self.kept += 1
        else:
            self.rejected += 1


@contextmanager
def ray_session(address: str, verbose: bool):
    """Join `address`, reuse an initialised Ray (tests share one), or start a private local instance."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not verbose:
        # Ray's own INFO lines and C++ core-worker notices stay out of the user's terminal
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if ray.is_initialized():
        yield
        return
    temp_dir = None
    kwargs = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING,
                  include_dashboard=False, configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        # short private path: Ray's socket names must stay under the 107-byte limit
        temp_dir = tempfile.mkdtemp(prefix="cesim-ray-", dir="/tmp")
        ray.init(_temp_dir=temp_dir, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def edit_resources(plan: RunPlan) -> Resources:
    """Edit-actor resources from config; defaults come from the cluster's advertised GPUs, not a probe."""
    import ray

    rt = plan.cfg.runtime
    cluster_gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    gpus = rt.gpus_per_actor if rt.gpus_per_actor is not None else (1.0 if cluster_gpus else 0.0)
    actors = rt.num_actors or (max(1, int(cluster_gpus // gpus)) if gpus else 1)
    return Resources(cpus=rt.cpus_per_actor, gpus=gpus, actors=actors)


def _cpu_share(total_cpus: float, edit: Resources) -> float:
    # what is left after the edit actors, split between the read tasks and the score actor;
    # never all of it, so Ray Data's own bookkeeping tasks always find a slot
    spare = max(total_cpus - edit.cpus * edit.actors, 0.5)
    return max(min(spare / 4, 1.0), 0.1)


def build_dataset(plan: RunPlan, run_id: str, out: Path, edit_res: Resources, verbose: bool = False):
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from ..scoring.stage import ScoreStage

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    # blocks that still fail after Ray's actor restarts and task retries are dropped here and
    # re-emitted by the driver as error rows, so one poison job cannot abort the run
    ctx.max_errored_blocks = -1
    rt = plan.cfg.runtime
    share = _cpu_share(ray.cluster_resources().get("CPU", 1), edit_res)
    read = ReadStage(plan.cfg.input, plan.cfg.output, run_id, cpus=share)
    edit = EditStage(plan.cfg.model, plan.settings, edit_res, rt.batch_size, rt.fault_kill_at_job,
                     str(out / "_state" / "fault-injected"))
    # rows leave the score stage as they come: a larger batch would hold finished edits back from the sink
    score = ScoreStage(plan.settings, Resources(cpus=share, actors=1), batch_size=rt.batch_size)
    # one block per frame: a block that fails for good then costs only that frame's jobs
    ds = ray.data.from_items([{PAYLOAD: to_payload([t])[PAYLOAD][0]} for t in plan.tasks],
                             override_num_blocks=max(1, len(plan.tasks)))
    ds = ds.map_batches(run_stage_task, fn_kwargs={"stage": read}, batch_size=1, num_cpus=read.resources.cpus,
                        batch_format="numpy")
    # a dead actor (OOM, segfault, kill) is restarted and its batch retried, a bounded number of times
    # (Ray Data's default is unbounded, which loops forever on a job that always crashes). Ray 2.60
    # deprecates passing these without naming a replacement, hence the filtered warning.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        ds = ds.map_batches(StageAdapter, fn_constructor_args=(edit,), batch_size=edit.batch_size,
                            compute=ActorPoolStrategy(size=edit_res.actors), num_cpus=edit_res.cpus,
                            num_gpus=edit_res.gpus, batch_format="numpy", max_restarts=rt.max_restarts,
                            max_task_retries=rt.max_restarts)
    return ds.map_batches(StageAdapter, fn_constructor_args=(score,), batch_size=score.batch_size,
                          compute=ActorPoolStrategy(size=1), num_cpus=score.resources.cpus, batch_format="numpy")


def execute(plan: RunPlan, run_id: str, out: Path, writer: ShardWriter, counts: RunCounts,
            quiet: bool, verbose: bool) -> float:
    """Stream every remaining job through Ray into `writer`; returns wall seconds."""
    t0 = time.perf_counter()
    if not plan.tasks:
        return 0.0
    (out / "_state").mkdir(parents=True, exist_ok=True)
    expected = {job["job_id"]: (task, job) for task in plan.tasks for job in task["jobs"]}
    progress = Progress(total=plan.remaining, quiet=quiet)
    with ray_session(plan.cfg.runtime.address, verbose):
        edit_res = edit_resources(plan)
        log.info("edit actors: %d x (cpus=%s, gpus=%s)", edit_res.actors, edit_res.cpus, edit_res.gpus)
        ds = build_dataset(plan, run_id, out, edit_res, verbose)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for row in from_payload(batch):
                if expected.pop(row["job_id"], None) is None:
                    continue  # a retried block delivered a row twice: the first copy is already written
                writer.add(row)
                counts.add(row)
                progress.update(failed=counts.failed)
    for task, job in expected.values():  # jobs Ray gave up on: error rows, not gaps
        row = base_row({**job, "source_meta": {"frame_index": task["ref"].frame_index}}, run_id)
        row["error"] = ("edit: the job was lost after Ray's actor restarts and retries "
                        f"(runtime.max_restarts={plan.cfg.runtime.max_restarts}); see the Ray worker logs")
        row = finish_row(row)
        writer.add(row)
        counts.add(row)
        progress.update(failed=counts.failed)
    writer.flush()
    progress.close()
    return time.perf_counter() - t0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
