"""The Stage base class and its declared resources.

A stage sees lists of plain dict rows (schema columns plus transient `_` fields that carry
decoded frames to later stages). The runtime wraps every stage in one generic Ray adapter;
stages never import the runtime. Ray retries work, so process_batch must be safe to run
twice on the same rows.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from ..dataset.schema import fail_row


@dataclass(frozen=True)
class Resources:
    # CPUs per task or actor: fractions keep a core free for Ray Data's own tasks on small machines;
    # None (task stages only) = the runner's share of what the actor stages leave
    cpus: float | None = 1.0
    # GPUs per actor; fractional values share a GPU between actors
    gpus: float = 0.0
    # actors in the pool; 0 runs the stage as plain Ray tasks (stateless stages)
    actors: int = 0
    # jobs queued at each actor beyond the one it works on (its next input is ready when it finishes)
    queue: int = 1
    # place the pool's actors on different nodes first
    spread: bool = False


class Stage:
    """A pipeline step. setup() runs once where the stage runs (the actor), never on the driver."""

    name: str = "stage"
    resources: Resources = Resources()
    batch_size: int = 1
    # rows that share this field reach one process_batch together, in one call (batch_size then counts
    # such groups); None: rows travel one by one
    group_by: str | None = None

    def setup(self) -> None:
        """Load models here, once per actor (or per task for task stages)."""

    def process_batch(self, rows: list[dict]) -> list[dict]:
        """Rows in, rows out. By default each row goes through process_row; rows that already
        failed pass through untouched, and an exception fails only its own row."""
        return [self._guarded(row) for row in rows]

    def iter_batch(self, rows: list[dict]):
        """process_batch's output in parts as they are ready (a stage whose rows take long yields
        each as it finishes, so the next stage starts on it)."""
        yield self.process_batch(rows)

    def process_row(self, row: dict) -> dict:
        raise NotImplementedError

    def _guarded(self, row: dict) -> dict:
        if row["error"]:
            return row
        return self.guard([row], lambda rows: [self.process_row(rows[0])])[0]

    def guard(self, rows: list[dict], work) -> list[dict]:
        """work(rows) -> rows; an exception fails exactly these rows, never the run."""
        try:
            return work(rows)
        except Exception as exc:
            tb = traceback.format_exc(limit=5)
            for row in rows:
                row["_traceback"] = tb
                fail_row(row, self.name, f"{type(exc).__name__}: {exc}")
            return rows
