"""`chronoedit-sim run`: plan, resume check, Ray execution, manifest and summary.

A run holds the output's lock from before it reads the resume index to its last write, so a
second writer is refused at once and the index cannot change under it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ..config import ConfigLoader
from ..dataset.lock import OutputLock, OutputLocked  # noqa: F401  (raised by run(); callers catch it from here)
from ..dataset.manifest import finish_manifest, start_manifest
from ..dataset.sink import DatasetWriter, damage_notes, resume_index
from ..dataset.stats import RunCounts
from . import output
from .output import OutputConflict, OutputWriteFailed  # noqa: F401  (likewise)
from .plan import describe, make_plan
from .ray_runner import driver_faults, execute
from .vlm_service import uses_vlm


def run(scenario_files: list[str], input_path: str, output_dir: str, overrides: list[str], *, config_files=(),
        dry_run: bool = False, overwrite: bool = False, quiet: bool = False, verbose: bool = False, echo=print,
        on_row=None) -> int:
    out = Path(output_dir)
    loader = ConfigLoader([f"input.path={input_path}", *overrides], list(config_files))
    output.previous_manifest(out, overwrite)  # refuses a foreign folder before the lock creates OUT/_state in it
    if dry_run:
        return _dry_run(out, loader, scenario_files, overwrite, echo)
    # one writer per output; a failed write ends the run with what is safe and how to resume (exit 4)
    with output.write_errors(out), OutputLock(out, echo=echo):
        previous = output.previous_manifest(out, overwrite)  # read again under the lock: nobody changes it now
        done = resume_index(out, output.writer_shards(out, echo)) if previous else None
        plan = make_plan(loader, scenario_files, done)
        output.check_compatible(out, previous, plan.config_hash, "a different config or scenarios")
        if not plan.cfg.runtime.address:
            # a local run can check both models' weights here, before Ray starts and any actor loads
            # (on a cluster the workers, not the driver, must have them)
            from ..engine.weights import resolve_model_root
            from ..scoring.clip import resolve_clip_weights

            resolve_model_root(plan.cfg.model.path, plan.cfg.model.revision, plan.cfg.model.allow_download)
            if plan.cfg.scoring.clip.enabled:
                resolve_clip_weights(plan.cfg.scoring.clip)
            if uses_vlm(plan.cfg):
                from ..engine.vlm import resolve_vlm_root

                resolve_vlm_root(plan.cfg.vlm)
        output.prepare(out, overwrite)
        run_id = uuid.uuid4().hex[:12]
        # the command line is kept as given: a rescoring re-applies it above the scenario layers
        manifest = start_manifest(out, previous, plan.cfg, plan.config_hash, plan.scenarios, run_id, plan.settings,
                                  overrides=list(overrides), config_files=[str(f) for f in config_files])
        counts = RunCounts(planned=0)  # the plan's sizes are counted beside the stream (execute fills them in)
        writer = DatasetWriter(out, plan.cfg.output, {"run_id": run_id, "config_hash": plan.config_hash},
                               **driver_faults(plan.cfg.runtime))
        wall, extra = execute(plan, run_id, out, writer, counts, quiet, verbose, on_row)
        echo(f"actors: {extra['actors']}")
        code = finish_manifest(out, manifest, counts, wall, plan.cfg.runtime.max_failed_fraction, echo, **extra)
        if plan.cfg.report.enabled:
            from ..report.build import build_after_run

            build_after_run(out, plan.cfg.report, echo)
        return code


def _dry_run(out: Path, loader: ConfigLoader, scenario_files: list[str], overwrite: bool, echo) -> int:
    """The plan and the resources, with nothing written, locked or moved (a damaged shard is only named)."""
    previous = output.previous_manifest(out, overwrite)
    shards, notes = damage_notes(out)
    plan = make_plan(loader, scenario_files, resume_index(out, shards) if previous else None)
    output.check_compatible(out, previous, plan.config_hash, "a different config or scenarios")
    for line in [*(notes if previous else []), *describe(plan)]:
        echo(line)
    rt = plan.cfg.runtime
    gpus = rt.gpus_per_actor if rt.gpus_per_actor is not None else "1 per GPU in the cluster (0 without GPUs)"
    echo(f"ray: {rt.num_actors or 'one per GPU (1 without GPUs)'} edit actor(s), each cpus={rt.cpus_per_actor} "
         f"gpus={gpus}; address={rt.address or 'local private instance'}")
    return 0
