"""The generic runner: the Ray Data plan from the ordered stage list, streamed into the sink.

The driver consumes the stream and is the only writer, so each finished row is written
exactly once into an atomic shard; jobs Ray could not finish after its retries come back as
error rows at the end, never as gaps.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..dataset.schema import base_row, fail_row, finish_row
from ..dataset.sink import DatasetWriter
from ..dataset.stats import RunCounts
from ..scenario import settings_key
from ..stages.base import Stage
from . import ledger, reaper
from .adapter import PAYLOAD, StageAdapter, from_payload, run_stage_task, to_payload
from .pipeline import BuildContext, Cluster, build_stages, describe_actors
from .plan import RunPlan
from .progress import Progress
from .sequences import SequenceScorer, done_rows
from .vlm_service import vlm_service

log = logging.getLogger(__name__)
# OUT/_state: run-time bookkeeping (in-flight ledger, fault markers), never part of the dataset
STATE = "_state"
# the stage whose actors the runtime.faults.kill_actor_* hooks kill
FAULT_STAGE = "edit"


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
    private = None
    kwargs = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING,
                  include_dashboard=False, configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        # short private path: Ray's socket names must stay under the 107-byte limit; its watchdog
        # ends the instance's processes and removes the folder if this driver dies before `finally`
        private = reaper.watch()
        ray.init(_temp_dir=private.folder, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()
        if private:
            private.close()


def build_dataset(stages: list[Stage], tasks: list[dict], state_dir: str, runtime_cfg, verbose: bool = False,
                  finish: bool = True):
    """Ray Data plan: one map_batches per stage, as tasks or as an actor pool by its resources; the last
    stage finishes dataset rows (`finish`; other pipelines, such as evaluate's, carry rows of their own)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    # one row per block: rows carry whole images and an edit takes seconds, so there is nothing to
    # gain from bigger blocks and much to lose (a block is also what a failed task takes with it)
    ctx.target_max_block_size = 1
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    ds = ray.data.from_items([{PAYLOAD: to_payload([t])[PAYLOAD][0]} for t in tasks],
                             override_num_blocks=max(1, len(tasks)))
    for i, stage in enumerate(stages):
        final, r = i == len(stages) - 1, stage.resources
        last = finish and final
        # rows go out packed as the next stage takes them; a pipeline of other rows (finish=False) hands its
        # last stage's groups to the driver whole: each Ray Data row costs tens of ms there on a small machine
        pack = stages[i + 1].group_by if not final else None if finish else stage.group_by
        common = dict(batch_size=stage.batch_size, num_cpus=r.cpus, batch_format="numpy")
        if r.gpus:
            common["num_gpus"] = r.gpus
        if not r.actors:
            ds = ds.map_batches(run_stage_task, fn_kwargs={"stage": stage, "last": last, "pack": pack}, **common)
            continue
        faults = runtime_cfg.faults if stage.name == FAULT_STAGE else None
        extra = {"scheduling_strategy": "SPREAD"} if r.spread else {}
        # a dead actor (OOM, segfault, kill) is restarted and its batch retried, a bounded number of
        # times (Ray Data's default is unbounded, which loops forever on a job that always crashes).
        # Ray 2.60 deprecates passing these without naming a replacement, hence the filtered warning.
        # The queue keeps 1 + r.queue batches in flight per actor: its next input is always waiting.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(StageAdapter, fn_constructor_args=(stage, state_dir, last, faults, pack),
                                compute=ActorPoolStrategy(size=r.actors, max_tasks_in_flight_per_actor=1 + r.queue),
                                max_restarts=runtime_cfg.max_restarts, max_task_retries=runtime_cfg.max_restarts,
                                **extra, **common)
    return ds


def _frame_tasks(pending: dict) -> list[dict]:
    """Regroup pending jobs by frame, so each frame is read once."""
    tasks: dict[str, dict] = {}
    for task, job in pending.values():
        tasks.setdefault(task["ref"].source_id, {"ref": task["ref"], "jobs": []})["jobs"].append(job)
    return list(tasks.values())


def lost_row(task: dict, job: dict, run_id: str, stage: str, why: str) -> dict:
    row = base_row({**job, "source_meta": {"frame_index": task["ref"].frame_index}}, run_id)
    return finish_row(fail_row(row, stage, f"{why}; see the Ray worker logs"))


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def driver_faults(runtime_cfg) -> dict:
    """The DatasetWriter's before_rename hook for runtime.faults.kill_driver_before_rename."""
    n = runtime_cfg.faults.kill_driver_before_rename
    if not n:
        return {}
    seen = []

    def before_rename(tmp: Path) -> None:
        seen.append(tmp)
        if len(seen) == n:
            _kill_self()

    return {"before_rename": before_rename}


def execute(plan: RunPlan, run_id: str, out: Path, writer: DatasetWriter, counts: RunCounts, quiet: bool,
            verbose: bool, on_row=None) -> tuple[float, dict]:
    """Stream every remaining job through Ray into `writer`; returns (wall seconds, what run.json records of
    the run's actors: their description, and what the VLM actors were asked).

    When the pipeline itself fails (an actor died on a job more often than runtime.max_restarts
    allows), the rows received so far are flushed, the jobs that killed their workers become error
    rows (found through the in-flight ledger), and the rest run again in a fresh pipeline.
    `on_row(row)` is called after each row is handed to the writer (tests inject faults with it).
    """
    import ray

    t0 = time.perf_counter()
    if not plan.tasks:
        return 0.0, {"actors": ""}
    state = out / STATE
    ledger.clear(state)
    pending = {job["job_id"]: (task, job) for task in plan.tasks for job in task["jobs"]}
    progress = Progress(total=plan.remaining, quiet=quiet)
    rt = plan.cfg.runtime
    kill_after = rt.faults.kill_driver_after_rows

    sequences = SequenceScorer(plan.previous, plan.settings, plan.cfg.scoring.flow_max_side,
                               done_rows(out, plan.resume_previous))

    def write(row: dict) -> None:
        counts.add(row)
        writer.add(row, plan.settings[settings_key(row["scenario"], row["edit_id"])].filter.write_rejected)
        progress.update(failed=counts.failed)
        if kill_after and writer.rows_in_shards >= kill_after:
            _kill_self()
        if on_row:
            on_row(row)

    def emit(row: dict) -> None:
        for ready in sequences.add(row):  # a row of a sequence waits for its previous frame's
            write(ready)

    vlm_record: dict = {}
    with ray_session(rt.address, verbose):
        resources = ray.cluster_resources()
        cluster = Cluster(cpus=resources.get("CPU", 1), gpus=resources.get("GPU", 0))
        with vlm_service(plan.cfg, cluster.gpus, vlm_record) as vlm:
            stages = build_stages(BuildContext(plan, run_id, cluster, state_dir=str(state), vlm=vlm))
            _stream(stages, pending, plan, run_id, state, emit, writer.flush, verbose)
    # a worker that died mid-batch while the stream carried on (Ray retried its work) left its file
    ledger.clear(state)
    for task, job in pending.values():  # finished stream without them: error rows, not gaps
        emit(lost_row(task, job, run_id, "pipeline", "the job never came back from the pipeline"))
    for row in sequences.flush():
        write(row)
    writer.flush()
    progress.close()
    extra = {"actors": describe_actors(stages)}
    if vlm_record:
        extra["vlm"] = vlm_record
    return time.perf_counter() - t0, extra


def _stream(stages: list[Stage], pending: dict, plan: RunPlan, run_id: str, state: Path, emit, flush,
            verbose: bool) -> None:
    """Stream until every pending job is back, or lost to a worker it killed; a failed pipeline runs again
    for the jobs still pending, a bounded number of times."""
    from ray.exceptions import RayError

    rt = plan.cfg.runtime
    max_deaths = rt.max_restarts + 1
    fresh_starts = rt.max_restarts
    while pending:
        ds = build_dataset(stages, _frame_tasks(pending), str(state), rt, verbose)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for row in from_payload(batch):
                    if pending.pop(row["job_id"], None) is not None:  # a retried block may repeat a row
                        emit(row)
            break
        except RayError as exc:
            flush()  # what arrived is safe whatever happens next
            poisoned = {j: stage for j, (n, stage) in ledger.deaths_per_job(state).items()
                        if j in pending and n >= max_deaths}
            for job_id, stage in poisoned.items():
                task, job = pending.pop(job_id)
                emit(lost_row(task, job, run_id, stage, f"the worker process died on this job {max_deaths} time(s) "
                              f"(runtime.max_restarts={max_deaths - 1}): OOM or a native crash"))
            if not poisoned:
                # no job to blame (a node lost with its actors and objects): the jobs not yet back
                # run again in a fresh pipeline, a bounded number of times
                if not fresh_starts:
                    raise
                fresh_starts -= 1
                log.warning("the pipeline failed (%s: %s); running the %d unfinished job(s) again",
                            type(exc).__name__, str(exc).splitlines()[0][:200], len(pending))
            ledger.clear(state)
