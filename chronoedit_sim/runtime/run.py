"""`chronoedit-sim run`: plan, resume check, Ray execution, manifest and summary.

A run holds the output's lock from before it reads the resume index to its last write, so a
second writer is refused at once and the index cannot change under it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from .. import storage
from ..config import CPU_BACKENDS, ConfigLoader
from ..dataset.lock import OutputLock, OutputLocked  # noqa: F401  (raised by run(); callers catch it from here)
from ..dataset.manifest import finish_manifest, start_manifest
from ..dataset.sink import DatasetWriter, damage_notes, resume_index
from ..dataset.stats import RunCounts
from ..scenario import edit_settings, load_scenario
from . import output
from .output import OutputConflict, OutputWriteFailed  # noqa: F401  (likewise)
from .plan import describe, make_plan
from .ray_runner import driver_faults, execute
from .vlm_service import uses_vlm


def run(scenario_files: list[str], input_path: str, output_dir: str, overrides: list[str], *, config_files=(),
        dry_run: bool = False, overwrite: bool = False, quiet: bool = False, verbose: bool = False, echo=print,
        on_row=None) -> int:
    out = storage.path(output_dir)
    loader = ConfigLoader([f"input.path={input_path}", *overrides], list(config_files))
    output.previous_manifest(out, overwrite)  # refuses a foreign folder before the lock creates OUT/_state in it
    # a refused config, scenario or weights must not leave OUT/_state/lock behind in a folder it created
    cfg = loader.build()
    backends = {s.backend for s in edit_settings(loader, [load_scenario(f) for f in scenario_files]).values()}
    if dry_run:
        return _dry_run(out, loader, scenario_files, overwrite, echo)
    # a local run checks the models' weights here, before Ray starts and any actor loads, and records what they
    # are; on a cluster the workers, not the driver, must have them, but an editor on object storage is checked
    # where it is (without downloading it)
    digests = output.read_digests(out)
    if not cfg.runtime.address:
        weights = weights_identity(cfg, digests, backends)
    else:
        weights = weights_identity(cfg, digests, backends, editor_only=True) if editor_on_store(cfg) else {}
    # one writer per output; a failed write ends the run with what is safe and how to resume (exit 4)
    with output.write_errors(out), OutputLock(out, echo=echo):
        previous = output.previous_manifest(out, overwrite)  # read again under the lock: nobody changes it now
        done = output.writer_index(out, echo) if previous else None
        plan = make_plan(loader, scenario_files, done)
        output.check_plan(out, previous, plan)
        output.check_weights(out, previous, weights)
        # what this run could not check (a cluster's workers hold the weights) stays as recorded, so a later
        # local resume still compares with the weights the rows were made with
        weights = {**((previous or {}).get("weights") or {}), **weights}
        output.prepare(out, overwrite)
        if digests:
            output.write_digests(out, digests)
        run_id = uuid.uuid4().hex[:12]
        # the command line is kept as given: a rescoring re-applies it above the scenario layers
        manifest = start_manifest(out, previous, plan.cfg, plan.config_hash, plan.scenarios, run_id, plan.settings,
                                  overrides=list(overrides), config_files=[str(f) for f in config_files],
                                  weights=weights)
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


def editor_on_store(cfg) -> bool:
    """The editor's weights are all on object storage (model.path and transformer_path URLs, each LoRA a URL
    or a path inside model.path's folder), so a driver reads them as any node does."""
    model = cfg.model
    loras = [lora.path for lora in model.loras] + ([cfg.upscale.lora] if cfg.upscale.enabled else [])
    return (storage.is_url(model.path) and (not model.transformer_path or storage.is_url(model.transformer_path))
            and all(storage.is_url(p) or not (p.startswith(("/", "~")) or ":" in p) for p in loras))


def weights_identity(cfg, cache: dict | None = None, backends: set[str] | None = None,
                     editor_only: bool = False) -> dict[str, str]:
    """Every model's weights, found and checked (MissingWeightsError, LoraError), as {component: digest}:
    the editor's component folders, each LoRA, CLIP and the VLM (not with `editor_only`). Recorded in
    run.json; a resume compares it. `backends`: the run's editors (None: ChronoEdit's); weight-free ones have
    nothing to find."""
    from ..engine.lora import check_loras
    from ..engine.weights import (checkpoint_components, file_digest, folder_digests, resolve_model_root,
                                  resolve_transformer)
    from ..scoring.clip import LOCAL_DIR, resolve_clip_weights

    def joined(files: dict[str, str]) -> str:
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]

    model, weights = cfg.model, {}
    if backends is None or set(backends) - set(CPU_BACKENDS):
        root = resolve_model_root(model.path, model.revision, model.allow_download, model.backend)
        apart = resolve_transformer(model.transformer_path, model.allow_download) if model.transformer_path else None
        weights = {f"editor {name}": d for name, d in checkpoint_components(root, apart, cache).items()}
        weights.update({f"LoRA {where}": file_digest(path, cache)
                        for where, path in check_loras(model, root, cfg.upscale).items()})
    if editor_only:
        return weights
    if cfg.scoring.clip.enabled:
        name, path = resolve_clip_weights(cfg.scoring.clip)
        weights["CLIP"] = (joined(folder_digests(Path(name[len(LOCAL_DIR):]), cache)) if path is None
                           else file_digest(Path(path), cache))
    if uses_vlm(cfg):
        from ..engine.vlm import resolve_vlm_root

        weights["VLM"] = joined(folder_digests(resolve_vlm_root(cfg.vlm), cache))
    return weights


def _dry_run(out: Path, loader: ConfigLoader, scenario_files: list[str], overwrite: bool, echo) -> int:
    """The plan and the resources, with nothing written, locked or moved (a damaged shard is only named)."""
    previous = output.previous_manifest(out, overwrite)
    shards, notes = damage_notes(out)
    plan = make_plan(loader, scenario_files, resume_index(out, shards) if previous else None)
    output.check_plan(out, previous, plan)
    for line in [*(notes if previous else []), *describe(plan)]:
        echo(line)
    rt = plan.cfg.runtime
    where = f"address={rt.address or 'local private instance'}"
    if plan.backends <= set(CPU_BACKENDS):  # pipeline.edit_stage starts no actor then
        echo(f"ray: no edit actor: every edit is a CPU backend's ({', '.join(sorted(plan.backends))}), run as "
             f"tasks; {where}")
        return 0
    gpus = rt.gpus_per_actor if rt.gpus_per_actor is not None else "1 per GPU in the cluster (0 without GPUs)"
    echo(f"ray: {rt.num_actors or 'one per GPU (1 without GPUs)'} edit actor(s), each cpus={rt.cpus_per_actor} "
         f"gpus={gpus}; {where}")
    return 0
