"""`chronoedit-sim score DIR --output NEW_DIR`: new scores and keep/reject for an existing dataset.

The edit model is never loaded: rows are read back from DIR's complete shards, their frames
decoded once, scored by the same ScoreStage as a run, and written to NEW_DIR with the run's
rules (atomic shards, resume by job_id, refusal of a different config). DIR is only read.
Rows DIR kept out of data/ (filter.write_rejected=false) have no images and cannot be rescored.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..config import ConfigError, ConfigLoader, to_dict
from ..dataset.encode import decode_rgb
from ..dataset.sink import DatasetWriter, complete_shards, read_manifest, resume_index
from ..runtime.plan import EditSettings, settings_key
from ..runtime.progress import Progress
from ..runtime.ray_runner import RunCounts
from ..runtime.run import OutputConflict, finish_manifest, start_manifest
from ..runtime.stage import Resources
from ..scenario import parse_scenario
from .stage import ScoreStage


def _with_frames(row: dict) -> dict:
    """The transient decoded frames the score stage reads, from the row's stored images."""
    if row["error"] is None:
        row["_source_rgb"] = decode_rgb(row["source_image"]["bytes"])
        row["_edited_rgb"] = decode_rgb(row["edited_image"]["bytes"])
        frames = [decode_rgb(f["bytes"]) for f in row["reasoning_frames"] or []]
        row["_reasoning_rgb"] = np.stack(frames) if frames else None
    return row


def rescore(source: str, output: str, overrides: list[str], *, config_files=(), overwrite: bool = False,
            quiet: bool = False, echo=print) -> int:
    src, out = Path(source), Path(output)
    recorded = read_manifest(src)
    if recorded is None:
        raise ConfigError(f"{src}: no run.json: not a chronoedit-sim dataset")
    if out.resolve() == src.resolve():
        raise OutputConflict(f"{out}: rescoring writes a new dataset; --output must differ from {src}")
    # the run's recorded config and command line, then the new command line (thresholds, CLIP, ...):
    # the old command line must stay above the scenario layers, as it was in the run
    loader = ConfigLoader([*recorded.get("overrides", []), *overrides], list(config_files),
                          layers=[(f"{src / 'run.json'}", recorded["config"])])
    cfg = loader.build()
    scenarios = [parse_scenario(s["text"], s["path"]) for s in recorded["scenarios"]]
    settings = {}
    for scenario in scenarios:
        for edit in scenario.edits:
            built = loader.build(scenario.config_layers(edit))
            settings[settings_key(scenario.name, edit.id)] = EditSettings(built.generation, built.trajectory, built.filter)
    effective = to_dict(cfg)
    content = {"scoring": effective["scoring"], "source": recorded["config_hash"],
               "filters": {k: asdict(v.filter) for k, v in sorted(settings.items())}}
    config_hash = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
    previous = None if overwrite else read_manifest(out)
    if out.exists() and any(out.iterdir()) and read_manifest(out) is None:
        raise OutputConflict(f"{out}: exists, is not empty and has no run.json: not a chronoedit-sim dataset")
    if previous and previous.get("config_hash") != config_hash:
        raise OutputConflict(f"{out}: holds a rescoring with other thresholds or CLIP; use another --output or --overwrite")
    if cfg.scoring.clip.enabled:
        from .clip import resolve_clip_weights

        resolve_clip_weights(cfg.scoring.clip)
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    done = resume_index(out) if previous else set()
    shards = complete_shards(src)
    total = sum(pq.read_metadata(s).num_rows for s in shards)
    run_id = f"rescore-{time.strftime('%Y%m%dT%H%M%S')}"
    manifest = start_manifest(out, previous, cfg, config_hash, scenarios, run_id,
                              rescored_from={"path": str(src.resolve()), "config_hash": recorded["config_hash"]})
    counts = RunCounts(planned=total, resumed_skipped=len(done))
    stage = ScoreStage(settings, cfg.scoring.clip, Resources())
    stage.setup()
    writer = DatasetWriter(out, cfg.output, {"run_id": run_id, "config_hash": config_hash})
    progress = Progress(total=total - len(done), quiet=quiet)
    t0 = time.perf_counter()
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=cfg.output.row_group_rows):
            rows = [_with_frames(r) for r in batch.to_pylist() if r["job_id"] not in done]
            for row in stage.process_batch(rows):
                writer.add(row, settings[settings_key(row["scenario"], row["edit_id"])].filter.write_rejected)
                counts.add(row)
                progress.update(failed=counts.failed)
    writer.flush()
    progress.close()
    wall = time.perf_counter() - t0
    manifest["runs"][-1]["rows_per_s"] = round(counts.written / wall, 3) if wall else None
    return finish_manifest(out, manifest, counts, wall, cfg.runtime.max_failed_fraction, echo)
