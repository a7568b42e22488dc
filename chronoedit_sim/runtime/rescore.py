"""`chronoedit-sim score DIR --output NEW_DIR`: new scores and keep/reject for an existing dataset.

The edit model is never loaded: rows are read back from DIR's complete shards, their frames
decoded once, scored by the same score stage as a run, and written to NEW_DIR with the run's
rules (atomic shards, resume by job_id, refusal of a different config, one writer per output)
through the same output, settings and manifest code. DIR is only read: its damaged shards are
named and skipped. Rows DIR kept out of data/
(filter.write_rejected=false) have no images and cannot be rescored: they are counted, said and left out.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict

from .. import storage
from ..config import ConfigLoader, to_dict
from ..dataset.encode import decode_rgb, stored_trajectory
from ..dataset.lock import OutputLock
from ..dataset.manifest import finish_manifest, read_manifest, start_manifest
from ..dataset.schema import SCHEMA_VERSION, finish_row
from ..dataset.sink import REJECTED, DatasetWriter, damage_notes
from ..dataset.stats import RunCounts
from ..errors import UserError
from ..scenario import edit_settings, parse_scenario, settings_key
from ..stages.base import Resources
from ..stages.score import ScoreStage
from . import output
from .output import OutputConflict
from .progress import Progress
from .vlm_service import VlmClient


def with_frames(row: dict) -> dict:
    """The transient decoded frames the score stage reads, from the row's stored images or video."""
    if row["error"] is None:
        row["_source_rgb"] = decode_rgb(row["source_image"]["bytes"])
        row["_edited_rgb"] = decode_rgb(row["edited_image"]["bytes"])
        row["_reasoning_rgb"] = stored_trajectory(row)
    return row


def rescore(source: str, output_dir: str, overrides: list[str], *, config_files=(), overwrite: bool = False,
            quiet: bool = False, echo=print) -> int:
    src, out = storage.path(source), storage.path(output_dir)
    recorded = read_manifest(src)
    if recorded is None:
        raise UserError(f"{src}: no run.json: not a chronoedit-sim dataset")
    if recorded.get("schema_version", "1") != SCHEMA_VERSION:
        raise UserError(f"{src}: written with dataset schema {recorded.get('schema_version', '1')}; this version "
                        f"reads schema {SCHEMA_VERSION}: rerun the scenarios into a new output")
    if out.resolve() == src.resolve():
        raise OutputConflict(f"{out}: rescoring writes a new dataset; --output must differ from {src}")
    # the run's recorded config and command line, then the new command line (thresholds, CLIP, ...):
    # the old command line must stay above the scenario layers, as it was in the run
    loader = ConfigLoader([*recorded.get("overrides", []), *overrides], list(config_files),
                          layers=[(f"{src / 'run.json'}", recorded["config"])])
    cfg = loader.build()
    scenarios = [parse_scenario(s["text"], s["path"]) for s in recorded["scenarios"]]
    settings = edit_settings(loader, scenarios)
    content = {"scoring": to_dict(cfg)["scoring"], "source": recorded["config_hash"],
               **({"judge": to_dict(cfg)["vlm"]} if cfg.judge.enabled else {}),
               "filters": {k: asdict(v.filter) for k, v in sorted(settings.items())}}
    config_hash = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
    output.previous_manifest(out, overwrite)  # refuses a foreign folder before the lock creates OUT/_state in it
    with output.write_errors(out), OutputLock(out, echo=echo):
        previous = output.previous_manifest(out, overwrite)  # read again under the lock: nobody changes it now
        output.check_compatible(out, previous, config_hash, "other thresholds or CLIP")
        if cfg.scoring.clip.enabled:
            from ..scoring.clip import resolve_clip_weights

            resolve_clip_weights(cfg.scoring.clip)
        if cfg.judge.enabled:
            from ..engine.vlm import resolve_vlm_root

            resolve_vlm_root(cfg.vlm)
        output.prepare(out, overwrite)
        done = output.writer_index(out, echo) if previous else set()
        shards, notes = damage_notes(src)  # DIR is only read: damaged shards are named and skipped, never moved
        for note in notes:
            echo(f"{src}: {note}")
        # rejected/ holds records without images (filter.write_rejected=false): nothing to score them on
        records = sum(storage.parquet(s).metadata.num_rows for s in shards if s.parent.name == REJECTED)
        shards = [s for s in shards if s.parent.name != REJECTED]
        if records:
            echo(f"{src}: {records} rejected row(s) were kept without images (filter.write_rejected=false): "
                 "not rescored")
        total = sum(storage.parquet(s).metadata.num_rows for s in shards)
        run_id = f"rescore-{time.strftime('%Y%m%dT%H%M%S')}"
        manifest = start_manifest(out, previous, cfg, config_hash, scenarios, run_id, settings,
                                  rescored_from={"path": str(src.resolve()), "config_hash": recorded["config_hash"]},
                                  **({"input_path": recorded["input_path"]} if recorded.get("input_path") else {}))
        # every row of DIR is a job here: DIR's rows per edit are what is planned
        counts = RunCounts(planned=total, resumed_skipped=len(done),
                           planned_by_edit={k: v["written"] for k, v in recorded.get("filter_stats", {}).items()})
        # outside Ray: the judge's model is loaded here
        stage = ScoreStage(settings, cfg.scoring.clip, Resources(), flow_max_side=cfg.scoring.flow_max_side,
                           judge=VlmClient(cfg.vlm) if cfg.judge.enabled else None)
        stage.setup()
        writer = DatasetWriter(out, cfg.output, {"run_id": run_id, "config_hash": config_hash})
        progress = Progress(total=total - len(done), quiet=quiet)
        t0 = time.perf_counter()
        for shard in shards:
            for batch in storage.parquet(shard).iter_batches(batch_size=cfg.output.row_group_rows):
                rows = [with_frames(r) for r in batch.to_pylist() if r["job_id"] not in done]
                for row in map(finish_row, stage.process_batch(rows)):
                    writer.add(row, settings[settings_key(row["scenario"], row["edit_id"])].filter.write_rejected)
                    counts.add(row)
                    progress.update(failed=counts.failed)
        writer.flush()
        progress.close()
        wall = time.perf_counter() - t0
        code = finish_manifest(out, manifest, counts, wall, cfg.runtime.max_failed_fraction, echo,
                               rows_per_s=round(counts.rows.counts["written"] / wall, 3) if wall else None)
        if cfg.report.enabled:
            from ..report.build import build_after_run

            build_after_run(out, cfg.report, echo)
        return code
