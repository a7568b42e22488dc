"""`chronoedit-sim inspect DIR`: what a dataset holds, per scenario and edit."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

from .sink import complete_shards, read_manifest


def summarize(out: Path) -> list[str]:
    out = Path(out)
    shards = complete_shards(out)
    if not shards:
        return [f"{out}: no complete shards under data/"]
    table = pads.dataset([str(s) for s in shards], format="parquet").to_table(
        columns=["scenario", "edit_id", "keep", "error", "random_weights"])
    size = sum(s.stat().st_size for s in shards)
    failed = table.num_rows - table["error"].null_count
    kept = int(pc.sum(table["keep"]).as_py() or 0)
    lines = [f"{out}: {table.num_rows} rows in {len(shards)} shard(s), {size / 2**20:.1f} MiB",
             f"kept {kept}, rejected {table.num_rows - kept - failed}, failed {failed}"]
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
