"""The in-flight ledger: which jobs each worker process is on, so a job that kills its worker is named.

Each actor process writes the job ids of the batch it is working on to
OUT/_state/inflight/<host>-<pid> and removes the file when the batch is done. A process that
dies mid-batch (OOM kill, segfault) leaves its file behind; after Ray gives up on the pipeline,
the runner counts those files per job and turns a job that killed `max_restarts + 1` workers
into an error row, so one poisonous frame cannot stop a run.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .. import storage
from ..dataset.sink import INFLIGHT


class Ledger:
    def __init__(self, state_dir: str | Path, stage: str):
        self.folder = storage.path(state_dir) / INFLIGHT
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}"
        self.stage = stage

    def mark(self, job_ids: list[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join([self.stage, *job_ids]))

    def done(self) -> None:
        self.path.unlink(missing_ok=True)


def clear(state_dir: str | Path) -> None:
    try:
        storage.rmtree(storage.path(state_dir) / INFLIGHT)
    except OSError:
        pass  # cleared by the next run's end


def deaths_per_job(state_dir: str | Path) -> dict[str, tuple[int, str]]:
    """job_id -> (how many worker processes died on it, the stage they ran)."""
    deaths: dict[str, tuple[int, str]] = {}
    folder = storage.path(state_dir) / INFLIGHT
    for path in folder.glob("*") if folder.exists() else []:
        stage, *job_ids = path.read_text().split("\n")
        for job_id in job_ids:
            deaths[job_id] = (deaths.get(job_id, (0, stage))[0] + 1, stage)
    return deaths
