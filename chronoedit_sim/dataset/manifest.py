"""OUT/run.json: what made the dataset (config, scenarios, packages, models) and what it holds.

Written at the start of a run (status "running") and at its end (counts, statistics,
throughput); earlier runs into the same output stay in `runs`, so a resumed dataset keeps
its history. Every write is atomic.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .. import storage
from ..config import SCORES, to_dict, to_yaml
from .schema import SCHEMA_VERSION
from .sink import atomic_write_bytes, remove_partial_shards
from .stats import RunCounts, tally_dataset

MANIFEST = "run.json"
FORMAT = "chronoedit-sim/run@1"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict:
    out = {}
    for name in ("chronoedit-sim", "torch", "diffusers", "transformers", "ray", "pyarrow", "open_clip_torch", "av"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def read_manifest(out: Path) -> dict | None:
    path = storage.path(out) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_bytes(storage.path(out) / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode())


def active_bounds(filter_cfg) -> dict[str, float]:
    """The filter bounds that are set, e.g. {"clip_image_min": 0.7}."""
    return {f"{name}_{side}": getattr(filter_cfg, f"{name}_{side}") for name in SCORES for side in ("min", "max")
            if getattr(filter_cfg, f"{name}_{side}") is not None}


def start_manifest(out: Path, previous: dict | None, cfg, config_hash: str, scenarios, run_id: str, settings: dict,
                   **extra) -> dict:
    """run.json at the start of a run (status running), keeping earlier runs' history. `settings` are the
    per-edit settings (scenario.edit_settings): their active bounds are recorded for the report's charts."""
    manifest = {
        "schema": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "config_hash": config_hash,
        "config": to_dict(cfg),
        # the input as the run found it (config.input.path is as given, perhaps relative): what exports read
        "input_path": storage.absolute(cfg.input.path) if cfg.input.path else None,
        "config_yaml": to_yaml(cfg),
        "scenarios": [{"name": s.name, "path": s.path, "sha256": s.sha256, "text": s.text} for s in scenarios],
        "packages": package_versions(),
        "model": {"id": cfg.model.path, "preset": cfg.model.preset},
        "scorer": {"clip": cfg.scoring.clip.model if cfg.scoring.clip.enabled else None,
                   "pretrained": cfg.scoring.clip.pretrained},
        # the VLM behind the prompt enhancer and the judge (the rows' `enhancer` / `judge` carry its hash)
        "vlm": {"path": cfg.vlm.path, "revision": cfg.vlm.revision, "enhance": cfg.enhance.enabled,
                "judge": cfg.judge.enabled} if cfg.enhance.enabled or cfg.judge.enabled else None,
        "bounds": {key: active_bounds(s.filter) for key, s in sorted(settings.items())},
        **extra,
        "runs": (previous or {}).get("runs", []) + [{"run_id": run_id, "started_at": now_iso(), "status": "running",
                                                     "partial_shards_removed": remove_partial_shards(out)}],
    }
    write_manifest(out, manifest)
    return manifest


def finish_manifest(out: Path, manifest: dict, counts: RunCounts, wall: float, max_failed_fraction: float, echo,
                    **run_extra) -> int:
    """Totals, statistics and throughput into run.json, the summary line, and the exit code."""
    tally = tally_dataset(out)
    totals = tally.counts
    manifest["filter_stats"] = tally.per_edit(counts.planned_by_edit)
    # sequence sources: temporal_flicker per sequence, edit and sample (mean, worst frame)
    manifest["temporal"] = tally.sequences()
    manifest["runs"][-1].update(status="finished", ended_at=now_iso(), wall_s=round(wall, 3), counts=counts.as_dict(),
                                jobs_per_s=round(counts.rows.counts["written"] / wall, 4) if wall else None,
                                **run_extra)
    manifest["counts"] = {"planned": counts.planned, **totals, "failed_by_stage": tally.failed_by_stage,
                          "component_calls": dict(tally.calls)}
    write_manifest(out, manifest)
    mine = counts.rows.counts
    echo(f"planned {counts.planned}, written {mine['written']} this run ({counts.resumed_skipped} resumed-skipped), "
         f"kept {mine['kept']}, rejected {mine['rejected']}, failed {mine['failed']}; "
         f"{out}: {totals['written']} rows in all; {wall:.1f}s")
    if totals["failed"]:
        echo(f"failed rows by stage: {tally.failed_by_stage}; see the `error` column")
    failed_fraction = totals["failed"] / totals["written"] if totals["written"] else 0.0
    if failed_fraction > max_failed_fraction:
        echo(f"error: {failed_fraction:.1%} of rows failed, above runtime.max_failed_fraction={max_failed_fraction}")
        return 3
    return 0
