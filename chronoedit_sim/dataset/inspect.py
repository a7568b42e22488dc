"""`chronoedit-sim inspect DIR`: what a dataset holds, per scenario and edit."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

from .sink import complete_shards, read_manifest


def read_columns(out: Path, columns: list[str]):
    """The given columns of every complete shard as one Arrow table (None when there are none)."""
    shards = complete_shards(out)
    if not shards:
        return None
    return pads.dataset([str(s) for s in shards], format="parquet").to_table(columns=columns)


def row_counts(table) -> dict:
    """written / kept / rejected / failed of a table with `keep` and `error` columns."""
    if table is None:
        return {"written": 0, "kept": 0, "rejected": 0, "failed": 0}
    failed = table.num_rows - table["error"].null_count
    kept = int(pc.sum(table["keep"]).as_py() or 0)
    return {"written": table.num_rows, "kept": kept, "rejected": table.num_rows - kept - failed, "failed": failed}


def summarize(out: Path) -> list[str]:
    out = Path(out)
    table = read_columns(out, ["scenario", "edit_id", "keep", "error", "random_weights"])
    if table is None:
        return [f"{out}: no complete shards under data/"]
    shards = complete_shards(out)
    size = sum(s.stat().st_size for s in shards)
    c = row_counts(table)
    lines = [f"{out}: {c['written']} rows in {len(shards)} shard(s), {size / 2**20:.1f} MiB",
             f"kept {c['kept']}, rejected {c['rejected']}, failed {c['failed']}"]
    if pc.any(table["random_weights"]).as_py():
        lines.append("NOTE: rows from a RANDOM-WEIGHT model (tiny checkpoint): the edits are noise")
    grouped = table.group_by(["scenario", "edit_id"]).aggregate([("keep", "count"), ("keep", "sum")])
    lines.append(f"{'scenario/edit':40s} {'rows':>6s} {'kept':>6s}")
    for row in sorted(grouped.to_pylist(), key=lambda r: (r["scenario"], r["edit_id"])):
        lines.append(f"{row['scenario'] + '/' + row['edit_id']:40s} {row['keep_count']:6d} {row['keep_sum'] or 0:6d}")
    errors = [e for e in table["error"].to_pylist() if e]
    for stage in sorted({e.split(":", 1)[0] for e in errors}):
        lines.append(f"failed in {stage}: {sum(e.startswith(stage + ':') for e in errors)}")
    manifest = read_manifest(out)
    if manifest:
        runs = manifest.get("runs", [])
        lines.append(f"runs: {len(runs)}; model {manifest['model']['id']} (preset {manifest['model']['preset']})")
    return lines
