"""The one place that counts rows: written, kept, rejected, failed, per stage, per edit, per bound;
and gathers the score values and stage timings that quantiles and the report's charts are made of.

`Tally` takes rows one at a time (the run's own rows as they arrive) or a whole dataset
(`tally_dataset`), so `run.json`, `inspect` and the report read the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import storage
from ..config import SCORES
from .schema import CALL_FIELDS, TIMING_FIELDS, fill_later, readable_columns

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# the columns a Tally reads; everything else in a row is ignored
COLUMNS = ("scenario", "edit_id", "keep", "error_stage", "reject_reasons", "scores", "timings_ms", "component_calls",
           "sequence_id", "sample_index", "source_id", "backend")


def outcome(row: dict) -> str:
    """"failed", "kept" or "rejected"."""
    if row["error_stage"]:
        return "failed"
    return "kept" if row["keep"] else "rejected"


class _Group:
    def __init__(self):
        self.counts = {"written": 0, "kept": 0, "rejected": 0, "failed": 0}
        self.failed_by_stage: dict[str, int] = {}
        self.rejected_by: dict[str, int] = {}
        self.values: dict[str, list[float]] = {name: [] for name in SCORES}

    def add(self, row: dict, with_scores: bool) -> None:
        kind = outcome(row)
        self.counts["written"] += 1
        self.counts[kind] += 1
        if kind == "failed":
            stage = row["error_stage"]
            self.failed_by_stage[stage] = self.failed_by_stage.get(stage, 0) + 1
        for bound in {f"{r['score']}_{r['bound']}" for r in row["reject_reasons"] or []}:
            self.rejected_by[bound] = self.rejected_by.get(bound, 0) + 1
        if with_scores and row["scores"]:
            for name in SCORES:
                if row["scores"].get(name) is not None:
                    self.values[name].append(float(row["scores"][name]))

    def summary(self) -> dict:
        distributions = {}
        for name, values in self.values.items():
            if values:
                arr = np.asarray(values)
                qs = np.quantile(arr, QUANTILES)
                distributions[name] = {"n": int(arr.size), "mean": round(float(arr.mean()), 4),
                                       **{f"p{int(q * 100):02d}": round(float(v), 4) for q, v in zip(QUANTILES, qs)}}
        return {**self.counts, "failed_by_stage": dict(sorted(self.failed_by_stage.items())),
                "rejected_by": dict(sorted(self.rejected_by.items())), "scores": distributions}


class Tally:
    """Counts over rows; per "scenario/edit" groups with score quantiles when `with_scores`."""

    def __init__(self, with_scores: bool = True):
        self.with_scores = with_scores
        self.total = _Group()
        self.groups: dict[str, _Group] = {}
        # per editor backend (chronoedit, corruption, ...)
        self.backends: dict[str, _Group] = {}
        # milliseconds per timing field over every row (with_scores only)
        self.timings: dict[str, list[float]] = {name: [] for name in TIMING_FIELDS}
        # the model components' calls over every row (what caching saved shows here)
        self.calls = dict.fromkeys(CALL_FIELDS, 0)
        # "sequence | scenario/edit #sample" -> [(temporal_flicker, source_id)] (with_scores only)
        self.flicker: dict[str, list[tuple[float, str]]] = {}

    def add(self, row: dict) -> str:
        """Count one row; returns its outcome."""
        self.total.add(row, self.with_scores)
        self.groups.setdefault(f"{row['scenario']}/{row['edit_id']}", _Group()).add(row, self.with_scores)
        self.backends.setdefault(str(row.get("backend")), _Group()).add(row, False)
        for name, n in (row.get("component_calls") or {}).items():
            self.calls[name] += n or 0
        if self.with_scores and row.get("timings_ms"):
            for name, ms in row["timings_ms"].items():
                if ms is not None:
                    self.timings[name].append(float(ms))
        value = (row.get("scores") or {}).get("temporal_flicker")
        if self.with_scores and value is not None and row.get("sequence_id") is not None:
            key = f"{row['sequence_id']} | {row['scenario']}/{row['edit_id']} #{row['sample_index']}"
            self.flicker.setdefault(key, []).append((float(value), row["source_id"]))
        return outcome(row)

    def sequences(self) -> dict:
        """Per sequence, edit and sample: its frames with a temporal_flicker, their mean, and the worst frame."""
        out = {}
        for key, values in sorted(self.flicker.items()):
            worst = max(values)
            out[key] = {"frames": len(values), "mean": round(float(np.mean([v for v, _ in values])), 4),
                        "worst": round(worst[0], 4), "worst_frame": worst[1]}
        return out

    @property
    def counts(self) -> dict:
        """{written, kept, rejected, failed} over every row added."""
        return dict(self.total.counts)

    @property
    def failed_by_stage(self) -> dict:
        return dict(sorted(self.total.failed_by_stage.items()))

    def per_edit(self, planned: dict[str, int] | None = None) -> dict:
        """Per "scenario/edit" summaries; with `planned` (jobs per edit) each says how many were planned too."""
        if planned is None:
            return {key: group.summary() for key, group in sorted(self.groups.items())}
        keys = sorted(set(self.groups) | set(planned))
        return {key: {"planned": planned.get(key), **self.groups.get(key, _Group()).summary()} for key in keys}

    def per_backend(self) -> dict:
        """Per editor backend: {written, kept, rejected, failed, ...} (no score quantiles)."""
        return {key: group.summary() for key, group in sorted(self.backends.items())}

    def score_values(self) -> dict[str, dict[str, list[float]]]:
        """{"scenario/edit": {score: every value}} (with_scores only): what the distributions are drawn from."""
        return {key: {name: values for name, values in group.values.items() if values}
                for key, group in sorted(self.groups.items())}

    def overall(self) -> dict:
        return self.total.summary()


def tally_dataset(out: Path, shards: list[Path] | None = None) -> Tally:
    """A Tally of `shards` (default: every readable complete shard, data/ and rejected/), column by column."""
    from .sink import readable_shards

    tally = Tally()
    shards = readable_shards(out) if shards is None else shards
    if shards:
        data = storage.parquet_dataset(shards)
        table = data.to_table(columns=readable_columns(COLUMNS, data.schema.names))
        for batch in table.to_batches(max_chunksize=4096):
            for row in fill_later(batch.to_pylist()):
                tally.add(row)
    return tally


class RunCounts:
    """One run's (or rescoring's) plan size and a Tally of the rows it wrote."""

    def __init__(self, planned: int, resumed_skipped: int = 0, planned_by_edit: dict[str, int] | None = None):
        self.planned, self.resumed_skipped = planned, resumed_skipped
        # jobs per "scenario/edit", when the plan knows them
        self.planned_by_edit = planned_by_edit
        self.rows = Tally(with_scores=False)

    def add(self, row: dict) -> str:
        return self.rows.add(row)

    @property
    def failed(self) -> int:
        return self.rows.counts["failed"]

    def as_dict(self) -> dict:
        return {"planned": self.planned, "resumed_skipped": self.resumed_skipped, **self.rows.counts,
                "failed_by_stage": self.rows.failed_by_stage, "component_calls": dict(self.rows.calls)}
