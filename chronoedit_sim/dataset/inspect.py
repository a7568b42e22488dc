"""`chronoedit-sim inspect DIR`: what a dataset holds, per scenario and edit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .. import storage
from .manifest import read_manifest
from .schema import fill_later, readable_columns
from .sink import DATA, damage_notes
from .stats import tally_dataset


def _random_weights(shards: list[Path]) -> tuple[dict[bool, Counter], bool, bool]:
    """(rows by backend with a random edit model or not, CLIP random, VLM random) over every row."""
    data = storage.parquet_dataset(shards)
    edit_columns = readable_columns(["random_weights", "backend"], data.schema.names)
    table = data.to_table(columns=[*edit_columns, "scorer", "enhancer", "judge"])
    edits = {True: Counter(), False: Counter()}
    for row in fill_later(table.select(edit_columns).to_pylist()):
        edits[bool(row["random_weights"])][row["backend"]] += 1

    def random(column: str) -> bool:
        return any('"random_weights": true' in (s or "") for s in table[column].to_pylist())

    return edits, random("scorer"), random("enhancer") or random("judge")


def _ground_truth(shards: list[Path]) -> str | None:
    """One line on the `annotations` column: boxes, what the edits inserted and removed, boxes per label."""
    table = storage.parquet_dataset(shards).to_table(columns=["annotations"])
    anns = [a for row in table["annotations"].to_pylist() for a in row or []]
    if not anns:
        return None
    labels = Counter(a["label"] for a in anns if not a["ignore"])
    inserted = sum(a["synthetic"] for a in anns)
    removed = sum('"removed"' in a["attributes"] for a in anns)
    return (f"ground truth: {len(anns) - sum(a['ignore'] for a in anns)} boxes ({inserted} inserted, {removed} removed, "
            f"{sum(a['ignore'] for a in anns)} ignore regions); " + ", ".join(f"{k} {n}" for k, n in labels.most_common(8)))


def summarize(out: Path) -> list[str]:
    out = storage.path(out)
    readable, notes = damage_notes(out)  # damaged and quarantined shards are skipped, and said so
    if not readable:
        return [f"{out}: no complete shards under data/", *notes]
    shards = [s for s in readable if s.parent.name == DATA]
    size = sum(s.stat().st_size for s in shards)
    tally = tally_dataset(out, readable)
    c = tally.counts
    lines = [f"{out}: {c['written']} rows ({len(shards)} dataset shard(s), {size / 2**20:.1f} MiB)",
             f"kept {c['kept']}, rejected {c['rejected']}, failed {c['failed']}"]
    edits, random_scores, random_vlm = _random_weights(readable)
    if edits[True]:
        # in a run that mixes backends the weight-free ones' rows (corruptions) are real pixels: said so
        others = (f" (rows of {', '.join(f'{b}: {n}' for b, n in edits[True].items())}; not those of "
                  f"{', '.join(f'{b}: {n}' for b, n in edits[False].items())})" if edits[False] else "")
        lines.append(f"NOTE: rows from a RANDOM-WEIGHT model (tiny checkpoint): the edits are noise{others}")
    if random_scores:
        lines.append("NOTE: scores from a RANDOM-WEIGHT CLIP: they mean nothing")
    if random_vlm:
        lines.append("NOTE: a RANDOM-WEIGHT VLM rewrote the prompts or judged the edits: its text is noise, "
                     "its vlm_* scores mean nothing")
    lines.append(f"{'scenario/edit':40s} {'rows':>6s} {'kept':>6s} {'rej':>6s} {'fail':>6s}  rejected by")
    for key, st in tally.per_edit().items():
        by = ", ".join(f"{k} {n}" for k, n in st["rejected_by"].items()) or "-"
        lines.append(f"{key:40s} {st['written']:6d} {st['kept']:6d} {st['rejected']:6d} {st['failed']:6d}  {by}")
    lines.append("by backend: " + "; ".join(f"{b} {st['written']} rows (kept {st['kept']}, rejected {st['rejected']}, "
                                            f"failed {st['failed']})" for b, st in tally.per_backend().items()))
    sequences = tally.sequences()
    if sequences:
        worst_key = max(sequences, key=lambda k: sequences[k]["worst"])
        w = sequences[worst_key]
        lines.append(f"temporal_flicker: {len(sequences)} sequence edit(s), mean "
                     f"{np.mean([v['mean'] for v in sequences.values()]):.4f}; worst {w['worst']:.4f} at "
                     f"{w['worst_frame']} ({worst_key})")
    lines.append(f"{'score quantiles (all rows)':28s} {'n':>5s} {'p05':>8s} {'p50':>8s} {'p95':>8s}")
    for name, q in tally.overall()["scores"].items():
        lines.append(f"{name:28s} {q['n']:5d} {q['p05']:8.3f} {q['p50']:8.3f} {q['p95']:8.3f}")
    for stage, n in tally.failed_by_stage.items():
        lines.append(f"failed in {stage}: {n}")
    truth = _ground_truth(shards)
    if truth:
        lines.append(truth)
    if any(tally.calls.values()):
        lines.append("model component calls: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in tally.calls.items()))
    manifest = read_manifest(out)
    if manifest:
        lines.append(f"runs: {len(manifest.get('runs', []))}; model {manifest['model']['id']} "
                     f"(preset {manifest['model']['preset']})")
    return lines + notes
