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
from ..dataset.sink import DatasetWriter
from .plan import RunPlan, settings_key
from .progress import Progress
from .stage import PAYLOAD, Resources, StageAdapter, from_payload, run_stage_task, to_payload
from .stages import EditStage, ReadStage, clear_inflight, deaths_per_job, finish_row

log = logging.getLogger(__name__)
# OUT/_state: run-time bookkeeping (in-flight ledger, fault markers), never part of the dataset
STATE = "_state"


@dataclass
class RunCounts:
    planned: int = 0
    resumed_skipped: int = 0
    written: int = 0
    kept: int = 0
    failed: int = 0
    rejected: int = 0
    errors_by_stage: dict = field(default_factory=dict)
    # what the edit actors were given, e.g. "1 x (cpus=1.0, gpus=0.0) -> CPU"
    edit_actors: str = ""

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
        # Ray's own INFO lines and C++ core-worker notices stay out of the user's terminal (Ray still
        # prints one line saying it read this variable; real failures surface as Python exceptions)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
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


def stage_resources(plan: RunPlan) -> tuple[Resources, Resources]:
    """(edit, score) actor resources from config; defaults follow the cluster's advertised GPUs, not a probe.

    On GPUs the score actor takes a fraction (0.25) of one GPU and each editor the rest of its own
    (0.75), so one editor per GPU still leaves room for the scorer; Ray's fractions are accounting,
    each editor still sees its whole GPU.
    """
    import ray

    rt, sc = plan.cfg.runtime, plan.cfg.scoring
    cluster_gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    score_gpus = sc.gpus_per_actor if sc.gpus_per_actor is not None else (0.25 if cluster_gpus else 0.0)
    if rt.gpus_per_actor is not None:
        gpus = rt.gpus_per_actor
        actors = rt.num_actors or (max(1, int(cluster_gpus // gpus)) if gpus else 1)
    else:
        gpus = (1.0 - score_gpus) if cluster_gpus else 0.0
        actors = rt.num_actors or max(1, int(cluster_gpus))
    return (Resources(cpus=rt.cpus_per_actor, gpus=gpus, actors=actors),
            Resources(cpus=sc.cpus_per_actor, gpus=score_gpus, actors=sc.num_actors))


def _cpu_share(total_cpus: float, edit: Resources, score: Resources) -> float:
    # CPUs per read task: a slice of what the actors leave, never all of it, so Ray Data's own
    # bookkeeping tasks always find a slot (an actor holding every CPU hangs the stream silently)
    spare = max(total_cpus - edit.cpus * edit.actors - score.cpus * score.actors, 0.5)
    return max(min(spare / 4, 1.0), 0.1)


def build_dataset(plan: RunPlan, tasks: list[dict], run_id: str, out: Path, edit_res: Resources,
                  score_res: Resources, verbose: bool = False):
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from ..scoring.stage import ScoreStage

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    # one row per block: rows carry whole images and an edit takes seconds, so there is nothing to
    # gain from bigger blocks and much to lose (a block is also what a failed task takes with it)
    ctx.target_max_block_size = 1
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    rt = plan.cfg.runtime
    share = _cpu_share(ray.cluster_resources().get("CPU", 1), edit_res, score_res)
    read = ReadStage(plan.cfg.input, plan.cfg.output, run_id, cpus=share)
    edit = EditStage(plan.cfg.model, plan.settings, edit_res, rt.batch_size, str(out / STATE),
                     rt.fault_kill_at_job, rt.fault_kill_source)
    # rows leave the score stage as they come: a larger batch would hold finished edits back from the sink
    score = ScoreStage(plan.settings, plan.cfg.scoring.clip, score_res, batch_size=rt.batch_size)
    ds = ray.data.from_items([{PAYLOAD: to_payload([t])[PAYLOAD][0]} for t in tasks],
                             override_num_blocks=max(1, len(tasks)))
    ds = ds.map_batches(run_stage_task, fn_kwargs={"stage": read}, batch_size=plan.cfg.input.read_batch_size,
                        num_cpus=read.resources.cpus, batch_format="numpy")
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
                          compute=ActorPoolStrategy(size=score_res.actors), num_cpus=score_res.cpus,
                          num_gpus=score_res.gpus, batch_format="numpy")


def _frame_tasks(pending: dict) -> list[dict]:
    """Regroup pending jobs by frame, so each frame is read once."""
    tasks: dict[str, dict] = {}
    for task, job in pending.values():
        tasks.setdefault(task["ref"].source_id, {"ref": task["ref"], "jobs": []})["jobs"].append(job)
    return list(tasks.values())


def lost_row(task: dict, job: dict, run_id: str, why: str) -> dict:
    row = base_row({**job, "source_meta": {"frame_index": task["ref"].frame_index}}, run_id)
    row["error"] = f"edit: {why}; see the Ray worker logs"
    return finish_row(row)


def execute(plan: RunPlan, run_id: str, out: Path, writer: DatasetWriter, counts: RunCounts,
            quiet: bool, verbose: bool) -> float:
    """Stream every remaining job through Ray into `writer`; returns wall seconds.

    When the pipeline itself fails (an actor died on a job more often than runtime.max_restarts
    allows), the rows received so far are flushed, the jobs that killed their workers become error
    rows (found through the in-flight ledger), and the rest run again in a fresh pipeline.
    """
    from ray.exceptions import RayError

    t0 = time.perf_counter()
    if not plan.tasks:
        return 0.0
    state = out / STATE
    clear_inflight(state)
    pending = {job["job_id"]: (task, job) for task in plan.tasks for job in task["jobs"]}
    progress = Progress(total=plan.remaining, quiet=quiet)
    max_deaths = plan.cfg.runtime.max_restarts + 1

    def emit(row: dict) -> None:
        counts.add(row)
        writer.add(row, plan.settings[settings_key(row["scenario"], row["edit_id"])].filter.write_rejected)
        progress.update(failed=counts.failed)

    with ray_session(plan.cfg.runtime.address, verbose):
        edit_res, score_res = stage_resources(plan)
        # said out loud: a run without GPUs edits on CPU, which is 1000x slower for the real model
        counts.edit_actors = (f"{edit_res.actors} x (cpus={edit_res.cpus}, gpus={edit_res.gpus})"
                              f" -> {'GPU' if edit_res.gpus else 'CPU'}")
        while pending:
            ds = build_dataset(plan, _frame_tasks(pending), run_id, out, edit_res, score_res, verbose)
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for row in from_payload(batch):
                        if pending.pop(row["job_id"], None) is not None:  # a retried block may repeat a row
                            emit(row)
                break
            except RayError:
                writer.flush()  # what arrived is safe whatever happens next
                poisoned = [j for j, n in deaths_per_job(state).items() if j in pending and n >= max_deaths]
                if not poisoned:
                    raise
                for job_id in poisoned:
                    task, job = pending.pop(job_id)
                    emit(lost_row(task, job, run_id, f"the worker process died on this job {max_deaths} time(s) "
                                                     f"(runtime.max_restarts={max_deaths - 1}): OOM or a native crash"))
                clear_inflight(state)
    for task, job in pending.values():  # finished stream without them: error rows, not gaps
        emit(lost_row(task, job, run_id, "the job never came back from the pipeline"))
    writer.flush()
    progress.close()
    return time.perf_counter() - t0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
