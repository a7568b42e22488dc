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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..dataset.jobindex import JobIndex
from ..dataset.schema import base_row, fail_row, finish_row
from ..dataset.sink import DatasetWriter
from ..dataset.stats import RunCounts
from ..scenario import settings_key
from ..sources.base import InputError
from ..stages.base import Stage
from . import ledger, reaper
from .adapter import PAYLOAD, StageAdapter, from_payload, run_stage_task, to_payload
from .pipeline import BuildContext, Cluster, build_stages, describe_actors
from .plan import PlanCounts, RunPlan
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


def build_dataset(stages: list[Stage], tasks, state_dir: str, runtime_cfg, verbose: bool = False,
                  finish: bool = True):
    """Ray Data plan: one map_batches per stage, as tasks or as an actor pool by its resources; the last
    stage finishes dataset rows (`finish`; other pipelines, such as evaluate's, carry rows of their own).
    `tasks`: the first stage's rows, a list or a PlanSource that lists and expands them as the stream pulls."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    # one row per block: rows carry whole images and an edit takes seconds, so there is nothing to
    # gain from bigger blocks and much to lose (a block is also what a failed task takes with it)
    ctx.target_max_block_size = 1
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    if not isinstance(tasks, list):
        # a PlanSource: the listing task is light (names and hashes): it takes the task stages' CPU share, not a whole CPU
        ds = ray.data.read_datasource(tasks, num_cpus=stages[0].resources.cpus)
    else:
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


def lost_row(task: dict, job: dict, run_id: str, stage: str, why: str) -> dict:
    row = base_row({**job, "source_meta": {"frame_index": task["ref"].frame_index}}, run_id)
    row["sequence_link"] = job.get("sequence_link")
    return finish_row(fail_row(row, stage, f"{why}; see the Ray worker logs"))


def given_up_rows(plan: RunPlan, written: JobIndex, given_up: dict, run_id: str) -> Iterator[dict]:
    """Error rows for the jobs given up (they killed their workers too often), found by a pass over the plan.

    Only those: a job that simply did not come back is left for the next run, which does it. The pass lists
    the input again, so it may see frames added since the stream listed it; their jobs were never tried, and
    an error row (final: a resume skips it) would have lost them."""
    if not given_up:
        return
    for task in plan.frame_tasks(plan.done.union(written)):
        for job in task["jobs"]:
            if job["job_id"] in given_up:
                yield lost_row(task, job, run_id, *given_up[job["job_id"]])


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
    the run's actors: their description, and what the VLM actors were asked). Fills `counts`' plan sizes.

    The driver keeps the jobs it has written (8 bytes each), never the jobs to come. When the pipeline itself
    fails (an actor died on a job more often than runtime.max_restarts allows), the rows received so far are
    flushed, the jobs that killed their workers are given up (found through the in-flight ledger), and the
    plan streams again past everything written or given up. At the end, the given-up jobs become error rows
    (given_up_rows); jobs that did not come back are left to the next run, with a warning.
    `on_row(row)` is called after each row is handed to the writer (tests inject faults with it).
    """
    import ray
    from ray.exceptions import RayError

    t0 = time.perf_counter()
    if len(plan.done) and next(plan.frame_tasks(), None) is None:
        # a resumed run with nothing left starts no Ray (a listing pass on the driver: it keeps nothing)
        _fill(counts, plan.counts())
        return 0.0, {"actors": ""}
    state = out / STATE
    ledger.clear(state)
    rt = plan.cfg.runtime
    kill_after = rt.faults.kill_driver_after_rows
    written, given_up = JobIndex(), {}
    progress = Progress(total=None, quiet=quiet)
    sequences = SequenceScorer(plan.settings, plan.cfg.scoring.flow_max_side, lambda ids: done_rows(out, ids))
    totals: dict = {}

    def write(row: dict) -> None:
        counts.add(row)
        writer.add(row, plan.settings[settings_key(row["scenario"], row["edit_id"])].filter.write_rejected)
        progress.update(failed=counts.failed)
        if kill_after and writer.rows_in_shards >= kill_after:
            _kill_self()
        if on_row:
            on_row(row)

    def emit(row: dict) -> None:
        if totals.get("pending") is not None and _ready(totals["pending"]):  # the plan's size, counted beside the run
            totals["counts"] = ray.get(totals.pop("pending"))
            progress.total(totals["counts"].remaining)
        for ready in sequences.add(row):  # a row of a sequence waits for its previous frame's
            write(ready)

    vlm_record: dict = {}
    stages: list[Stage] = []
    with ray_session(rt.address, verbose):
        resources = ray.cluster_resources()
        cluster = Cluster(cpus=resources.get("CPU", 1), gpus=resources.get("GPU", 0))
        with vlm_service(plan.cfg, cluster.gpus, vlm_record) as vlm:
            stages = build_stages(BuildContext(plan, run_id, cluster, state_dir=str(state), vlm=vlm))
            totals["pending"] = ray.remote(_count).options(num_cpus=stages[0].resources.cpus).remote(plan)
            _stream(stages, plan, written, given_up, run_id, state, emit, writer.flush, verbose)
            try:
                plan_counts = totals["counts"] if "counts" in totals else ray.get(totals.pop("pending"))
            except RayError as exc:
                raise _input_error(exc) or exc
    # a worker that died mid-batch while the stream carried on (Ray retried its work) left its file
    ledger.clear(state)
    failed = 0
    for failed, row in enumerate(given_up_rows(plan, written, given_up, run_id), 1):
        emit(row)
    missing = plan_counts.planned - plan_counts.skipped - len(written) - failed
    if missing > 0:
        log.warning("%d job(s) of the plan were not written by this run: the pipeline did not hand them back, or "
                    "their frames were added to the input while it ran; rerun the same command to do them", missing)
    for row in sequences.flush():
        write(row)
    writer.flush()
    progress.close()
    _fill(counts, plan_counts)
    extra = {"actors": describe_actors(stages)}
    if vlm_record:
        extra["vlm"] = vlm_record
    return time.perf_counter() - t0, extra


def _fill(counts: RunCounts, plan_counts: PlanCounts) -> None:
    counts.planned, counts.resumed_skipped = plan_counts.planned, plan_counts.skipped
    counts.planned_by_edit = plan_counts.planned_by_edit


def _count(plan: RunPlan) -> PlanCounts:
    return plan.counts()


def _ready(ref) -> bool:
    import ray

    return bool(ray.wait([ref], timeout=0)[0])


def _input_error(exc: BaseException) -> InputError | None:
    """The input error behind a Ray error (the listing task reached a bad file), as the one-line InputError."""
    cause = exc
    while cause is not None:
        inner = getattr(cause, "cause", None)  # a RayTaskError is also an instance of its cause's class
        if inner is None and isinstance(cause, InputError):
            return InputError(str(cause))
        cause = inner or cause.__cause__
    return None


def _stream(stages: list[Stage], plan: RunPlan, written: JobIndex, given_up: dict, run_id: str, state: Path, emit,
            flush, verbose: bool) -> None:
    """Stream until the plan has nothing left that is not written or given up; a failed pipeline streams again,
    a bounded number of times."""
    from ray.exceptions import RayError

    from .plan_source import PlanSource

    rt = plan.cfg.runtime
    max_deaths = rt.max_restarts + 1
    fresh_starts = rt.max_restarts
    while True:
        skip = plan.done.union(written, JobIndex.of(given_up))
        ds = build_dataset(stages, PlanSource(plan, skip), str(state), rt, verbose)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for row in from_payload(batch):
                    if written.add(row["job_id"]):  # a retried block may repeat a row
                        emit(row)
            return
        except RayError as exc:
            if _input_error(exc):
                raise _input_error(exc) from None
            flush()  # what arrived is safe whatever happens next
            poisoned = {j: stage for j, (n, stage) in ledger.deaths_per_job(state).items()
                        if j not in written and j not in given_up and n >= max_deaths}
            for job_id, stage in poisoned.items():
                given_up[job_id] = (stage, f"the worker process died on this job {max_deaths} time(s) "
                                           f"(runtime.max_restarts={max_deaths - 1}): OOM or a native crash")
            if not poisoned:
                # no job to blame (a node lost with its actors and objects): the jobs not yet back
                # run again in a fresh pipeline, a bounded number of times
                if not fresh_starts:
                    raise
                fresh_starts -= 1
                log.warning("the pipeline failed (%s: %s); streaming the unfinished jobs again",
                            type(exc).__name__, str(exc).splitlines()[0][:200])
            ledger.clear(state)
