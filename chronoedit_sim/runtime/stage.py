"""Stage base class, declared resources, and the one generic Ray adapter for every stage.

Stages see lists of plain dict rows; Ray only sees the adapter. Rows travel between
stages as pickled blobs in a single binary column, so Ray Data never has to infer
an Arrow schema from rows whose fields differ (an error row has no images).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np

PAYLOAD = "payload"


@dataclass(frozen=True)
class Resources:
    # CPUs per task or actor: fractions keep a core free for Ray Data's own tasks on small machines
    cpus: float = 1.0
    # GPUs per actor; fractional values share a GPU between actors
    gpus: float = 0.0
    # actors in the pool; 0 runs the stage as plain tasks (stateless stages)
    actors: int = 0


class Stage:
    """A pipeline step. setup() runs once where the stage runs; process_batch must be retry-safe."""

    name: str = "stage"
    resources: Resources = Resources()
    batch_size: int = 1

    def setup(self) -> None:
        """Load models here (on the actor), never in __init__ (which runs on the driver)."""

    def process_batch(self, rows: list[dict]) -> list[dict]:
        raise NotImplementedError


def to_payload(rows: list[dict]) -> dict:
    blobs = np.empty(len(rows), dtype=object)
    blobs[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in rows]
    return {PAYLOAD: blobs}


def from_payload(batch: dict) -> list[dict]:
    return [pickle.loads(b) for b in batch[PAYLOAD]]


class StageAdapter:
    """The Ray Data callable for any stage: an actor when the stage has a pool, else a task function."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.setup()

    def __call__(self, batch: dict) -> dict:
        return to_payload(self.stage.process_batch(from_payload(batch)))


def run_stage_task(batch: dict, stage: Stage):
    """Task form for stateless stages (no pool): setup is cheap and runs per batch.

    Yields one row at a time: with the runner's small target block size each row becomes its own
    block, so a read task that fans a batch of frames out into many jobs still feeds the editors
    (and the sink, and the crash accounting) one job at a time.
    """
    stage.setup()
    for row in stage.process_batch(from_payload(batch)):
        yield to_payload([row])
