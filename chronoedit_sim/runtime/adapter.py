"""The one generic Ray adapter for every stage, and the payload rows travel in.

Rows travel between stages as pickled blobs in a single binary column, so Ray Data never
has to infer an Arrow schema from rows whose fields differ (an error row has no images).
The adapter adds what the runtime owns and stages must not know: the in-flight ledger, the
Ray node each actor stage ran on, deterministic fault injection, and finishing rows at the
last stage (so decoded frames never travel to the driver).
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from ..config import FaultConfig
from ..dataset.schema import finish_row
from ..stages.base import Stage
from .ledger import Ledger

PAYLOAD = "payload"


def to_payload(rows: list[dict]) -> dict:
    blobs = np.empty(len(rows), dtype=object)
    blobs[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in rows]
    return {PAYLOAD: blobs}


def from_payload(batch: dict) -> list[dict]:
    """Rows, with packed groups (one blob holding a list of rows) flattened."""
    rows = []
    for blob in batch[PAYLOAD]:
        item = pickle.loads(blob)
        rows.extend(item if isinstance(item, list) else [item])
    return rows


def packed(rows: list[dict], group_by: str | None) -> list[dict]:
    """Payloads of one blob each, for the next stage: a row, or the consecutive rows sharing
    `group_by` as one list (one Ray Data row, so they reach one actor in one batch; pickled
    together, the frame they share travels once)."""
    if group_by is None:
        return [to_payload([row]) for row in rows]
    groups: list[list[dict]] = []
    for row in rows:
        if groups and groups[-1][0][group_by] == row[group_by]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return [to_payload([group]) for group in groups]


class ActorFaults:
    """Kill the worker process like an OOM kill would: on its Nth job once per output, or on a source."""

    def __init__(self, cfg: FaultConfig, state_dir: str):
        self.cfg = cfg
        self.marker = os.path.join(state_dir, "fault-injected")
        self.seen = 0

    def before(self, rows: list[dict]) -> None:
        for row in rows:
            self.seen += 1
            if self.cfg.kill_actor_on_source and row["source_id"] == self.cfg.kill_actor_on_source:
                os._exit(137)
            if self.cfg.kill_actor_at_job and self.seen == self.cfg.kill_actor_at_job and not os.path.exists(self.marker):
                with open(self.marker, "w") as fh:
                    fh.write(str(os.getpid()))
                os._exit(137)


class StageAdapter:
    """What Ray Data runs: an actor (setup once in __init__) or, through run_stage_task, a task."""

    def __init__(self, stage: Stage, state_dir: str = "", last: bool = False, faults: FaultConfig | None = None,
                 pack: str | None = None):
        # pack: the next stage's group_by
        self.stage, self.last, self.pack = stage, last, pack
        self.ledger = Ledger(state_dir, stage.name) if state_dir else None
        self.faults = ActorFaults(faults, state_dir) if faults else None
        self.node = _node_id()
        stage.setup()

    def stream(self, rows: list[dict]):
        """The stage's output as it is ready (lists of rows), finished at the last stage. The ledger
        names the whole batch until its last row is out: a retried batch repeats rows the driver
        already has, and it keeps each job's first."""
        live = [r["job_id"] for r in rows if not r["error"]] if self.ledger else []
        if live:
            self.ledger.mark(live)
        if self.faults:
            self.faults.before(rows)
        for out in self.stage.iter_batch(rows):
            for row in out:
                row.setdefault("_nodes", {})[self.stage.name] = self.node
            yield [finish_row(r) for r in out] if self.last else out
        if live:
            self.ledger.done()

    def process(self, rows: list[dict]) -> list[dict]:
        return [row for out in self.stream(rows) for row in out]

    def __call__(self, batch: dict):
        """Yields one payload per row or group as soon as it is ready: with the runner's one-row
        blocks, a batch that fans out into many jobs feeds the next stage (and the sink) one unit at
        a time, and a frame's first edit is encoded while its next ones run."""
        for out in self.stream(from_payload(batch)):
            yield from packed(out, self.pack)


def run_stage_task(batch: dict, stage: Stage, last: bool = False, pack: str | None = None):
    """Task form for stateless stages: setup is cheap and runs per batch."""
    yield from StageAdapter(stage, last=last, pack=pack)(batch)


def _node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
