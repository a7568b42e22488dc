"""`chronoedit-sim run`: plan, resume check, Ray execution, manifest and summary."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..config import ConfigLoader, to_dict, to_yaml
from ..dataset.inspect import read_columns, row_counts
from ..dataset.sink import ShardWriter, read_manifest, remove_partial_shards, resume_index, write_manifest
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
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    removed = remove_partial_shards(out)
    run_id = uuid.uuid4().hex[:12]
    history = (manifest or {}).get("runs", [])
    manifest = {
        "schema": "chronoedit-sim/run@1",
        "config_hash": plan.config_hash,
        "config": to_dict(plan.cfg),
        "config_yaml": to_yaml(plan.cfg),
        "scenarios": [{"name": s.name, "path": s.path, "sha256": s.sha256, "text": s.text} for s in plan.scenarios],
        "packages": package_versions(),
        "model": {"id": plan.cfg.model.path, "preset": plan.cfg.model.preset},
        "runs": history + [{"run_id": run_id, "started_at": now_iso(), "status": "running",
                            "partial_shards_removed": removed}],
    }
    write_manifest(out, manifest)
    counts = RunCounts(planned=plan.planned, resumed_skipped=plan.skipped)
    writer = ShardWriter(out, plan.cfg.output, {"run_id": run_id, "config_hash": plan.config_hash})
    wall = execute(plan, run_id, out, writer, counts, quiet, verbose)
    totals = row_counts(read_columns(out, ["keep", "error"]))
    manifest["runs"][-1].update(status="finished", ended_at=now_iso(), wall_s=round(wall, 3),
                                counts=asdict(counts), jobs_per_s=round(counts.written / wall, 4) if wall else None)
    manifest["counts"] = {"planned": plan.planned, **{k: totals[k] for k in ("written", "kept", "failed")}}
    write_manifest(out, manifest)
    failed_fraction = totals["failed"] / totals["written"] if totals["written"] else 0.0
    echo(f"edit actors: {counts.edit_actors}")
    echo(f"planned {plan.planned}, written {counts.written} this run ({plan.skipped} resumed-skipped), "
         f"kept {counts.kept}, rejected {counts.rejected}, failed {counts.failed}; "
         f"dataset: {totals['written']} rows in {out / 'data'}; {wall:.1f}s")
    if totals["failed"]:
        echo(f"failed rows by stage: {counts.errors_by_stage}; see the `error` column")
    if failed_fraction > plan.cfg.runtime.max_failed_fraction:
        echo(f"error: {failed_fraction:.1%} of rows failed, above runtime.max_failed_fraction="
             f"{plan.cfg.runtime.max_failed_fraction}")
        return 3
    return 0

