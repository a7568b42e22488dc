"""`chronoedit-sim inspect DIR`: what a dataset holds, per scenario and edit."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

from .sink import REJECTED, complete_shards, read_manifest


def read_columns(out: Path, columns: list[str], with_rejected: bool = False):
    """The given columns of every complete shard as one Arrow table (None when there are none).

    with_rejected adds the rows filtered out of the dataset (filter.write_rejected=false)."""
    shards = complete_shards(out) + (complete_shards(out, REJECTED) if with_rejected else [])
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
    from ..scoring.filter import filter_stats

    out = Path(out)
    table = read_columns(out, ["scenario", "edit_id", "keep", "error", "random_weights", "reject_reasons", "scores",
                               "scorer"], with_rejected=True)
    if table is None:
        return [f"{out}: no complete shards under data/"]
    shards = complete_shards(out)
    size = sum(s.stat().st_size for s in shards)
    c = row_counts(table)
    lines = [f"{out}: {c['written']} rows ({len(shards)} dataset shard(s), {size / 2**20:.1f} MiB)",
             f"kept {c['kept']}, rejected {c['rejected']}, failed {c['failed']}"]
    if pc.any(table["random_weights"]).as_py():
        lines.append("NOTE: rows from a RANDOM-WEIGHT model (tiny checkpoint): the edits are noise")
    if any('"random_weights": true' in (s or "") for s in table["scorer"].to_pylist()):
        lines.append("NOTE: scores from a RANDOM-WEIGHT CLIP: they mean nothing")
    lines.append(f"{'scenario/edit':40s} {'rows':>6s} {'kept':>6s} {'rej':>6s} {'fail':>6s}  rejected by")
    rows = table.to_pylist()
    for key, st in filter_stats(rows).items():
        by = ", ".join(f"{k} {n}" for k, n in st["rejected_by"].items()) or "-"
        lines.append(f"{key:40s} {st['rows']:6d} {st['kept']:6d} {st['rejected']:6d} {st['failed']:6d}  {by}")
    lines.append(f"{'score quantiles (all rows)':28s} {'n':>5s} {'p05':>8s} {'p50':>8s} {'p95':>8s}")
    overall = filter_stats([{**r, "scenario": "all", "edit_id": "all"} for r in rows])["all/all"]["scores"]
    for name, q in overall.items():
        lines.append(f"{name:28s} {q['n']:5d} {q['p05']:8.3f} {q['p50']:8.3f} {q['p95']:8.3f}")
    errors = [e for e in table["error"].to_pylist() if e]
    for stage in sorted({e.split(":", 1)[0] for e in errors}):
        lines.append(f"failed in {stage}: {sum(e.startswith(stage + ':') for e in errors)}")
    manifest = read_manifest(out)
    if manifest:
        lines.append(f"runs: {len(manifest.get('runs', []))}; model {manifest['model']['id']} "
                     f"(preset {manifest['model']['preset']})")
    return lines
