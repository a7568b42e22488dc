"""`chronoedit-sim run`: plan, resume check, Ray execution, manifest and summary."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..config import ConfigLoader, to_dict, to_yaml
from ..dataset.inspect import read_columns, row_counts
from ..dataset.sink import DatasetWriter, read_manifest, remove_partial_shards, resume_index, write_manifest
from ..scoring.filter import filter_stats
from .plan import describe, make_plan, output_is_compatible
from .ray_runner import RunCounts, execute, now_iso


class OutputConflict(ValueError):
    """The output directory holds a dataset this run must not mix with."""


def package_versions() -> dict:
    out = {}
    for name in ("chronoedit-sim", "torch", "diffusers", "transformers", "ray", "pyarrow", "open_clip_torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def run(scenario_files: list[str], input_path: str, output: str, overrides: list[str], *, config_files=(),
        dry_run: bool = False, overwrite: bool = False, quiet: bool = False, verbose: bool = False, echo=print) -> int:
    out = Path(output)
    loader = ConfigLoader([f"input.path={input_path}", *overrides], list(config_files))
    foreign = out.exists() and any(out.iterdir()) and read_manifest(out) is None
    if foreign:
        # never resume into, or delete, a folder that is not one of our datasets
        raise OutputConflict(f"{out}: exists, is not empty and has no run.json: not a chronoedit-sim dataset; "
                             "choose another --output")
    # with --overwrite the old dataset is ignored now and deleted only once the plan is valid
    manifest = None if overwrite else read_manifest(out)
    plan = make_plan(loader, scenario_files, resume_index(out) if manifest else set())
    conflict = output_is_compatible(manifest, plan)
    if conflict:
        raise OutputConflict(f"{out}: {conflict}")
    if dry_run:
        for line in describe(plan):
            echo(line)
        rt = plan.cfg.runtime
        gpus = rt.gpus_per_actor if rt.gpus_per_actor is not None else "1 per GPU in the cluster (0 without GPUs)"
        echo(f"ray: {rt.num_actors or 'one per GPU (1 without GPUs)'} edit actor(s), each cpus={rt.cpus_per_actor} "
             f"gpus={gpus}; address={rt.address or 'local private instance'}")
        return 0
    if not plan.cfg.runtime.address:
        # a local run can check both models' weights here, before Ray starts and any actor loads
        # (on a cluster the workers, not the driver, must have them)
        from ..engine.weights import resolve_model_root
        from ..scoring.clip import resolve_clip_weights

        resolve_model_root(plan.cfg.model.path, plan.cfg.model.revision, plan.cfg.model.allow_download)
        if plan.cfg.scoring.clip.enabled:
            resolve_clip_weights(plan.cfg.scoring.clip)
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    # the command line is kept as given: a rescoring re-applies it above the scenario layers
    manifest = start_manifest(out, manifest, plan.cfg, plan.config_hash, plan.scenarios, run_id,
                              overrides=list(overrides), config_files=[str(f) for f in config_files])
    counts = RunCounts(planned=plan.planned, resumed_skipped=plan.skipped)
    writer = DatasetWriter(out, plan.cfg.output, {"run_id": run_id, "config_hash": plan.config_hash})
    wall = execute(plan, run_id, out, writer, counts, quiet, verbose)
    echo(f"edit actors: {counts.edit_actors}")
    return finish_manifest(out, manifest, counts, wall, plan.cfg.runtime.max_failed_fraction, echo)


def start_manifest(out: Path, previous: dict | None, cfg, config_hash: str, scenarios, run_id: str, **extra) -> dict:
    """run.json at the start of a run (status running), keeping earlier runs' history."""
    manifest = {
        "schema": "chronoedit-sim/run@1",
        "config_hash": config_hash,
        "config": to_dict(cfg),
        "config_yaml": to_yaml(cfg),
        "scenarios": [{"name": s.name, "path": s.path, "sha256": s.sha256, "text": s.text} for s in scenarios],
        "packages": package_versions(),
        "model": {"id": cfg.model.path, "preset": cfg.model.preset},
        "scorer": {"clip": cfg.scoring.clip.model if cfg.scoring.clip.enabled else None,
                   "pretrained": cfg.scoring.clip.pretrained},
        **extra,
        "runs": (previous or {}).get("runs", []) + [{"run_id": run_id, "started_at": now_iso(), "status": "running",
                                                     "partial_shards_removed": remove_partial_shards(out)}],
    }
    write_manifest(out, manifest)
    return manifest


def finish_manifest(out: Path, manifest: dict, counts: RunCounts, wall: float, max_failed_fraction: float,
                    echo) -> int:
    """Totals, filter statistics and throughput into run.json, the summary line, and the exit code."""
    table = read_columns(out, ["scenario", "edit_id", "keep", "error", "reject_reasons", "scores"], with_rejected=True)
    totals = row_counts(table)
    manifest["filter_stats"] = filter_stats(table.to_pylist() if table is not None else [])
    manifest["runs"][-1].update(status="finished", ended_at=now_iso(), wall_s=round(wall, 3), counts=asdict(counts),
                                jobs_per_s=round(counts.written / wall, 4) if wall else None)
    manifest["counts"] = {"planned": counts.planned, **totals}
    write_manifest(out, manifest)
    echo(f"planned {counts.planned}, written {counts.written} this run ({counts.resumed_skipped} resumed-skipped), "
         f"kept {counts.kept}, rejected {counts.rejected}, failed {counts.failed}; "
         f"{out}: {totals['written']} rows in all; {wall:.1f}s")
    if totals["failed"]:
        echo(f"failed rows by stage: {counts.errors_by_stage}; see the `error` column")
    failed_fraction = totals["failed"] / totals["written"] if totals["written"] else 0.0
    if failed_fraction > max_failed_fraction:
        echo(f"error: {failed_fraction:.1%} of rows failed, above runtime.max_failed_fraction={max_failed_fraction}")
        return 3
    return 0
