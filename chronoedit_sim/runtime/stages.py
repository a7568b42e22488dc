"""The read+expand and edit stages. Model code lives in engine/; these adapt it to rows.

Row flow: a frame task -> one row per job (schema columns plus transient `_`
fields carrying decoded arrays to later stages) -> edited row -> scored row.
Every failure becomes the row's `error`, never an exception out of a stage.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from ..config import InputConfig, ModelConfig, OutputConfig
from ..dataset.encode import encode_image
from ..dataset.schema import base_row, generation_struct, image_struct, timings_struct
from ..sources.decode import FrameError
from .plan import settings_key
from .stage import Resources, Stage


def _now():
    return datetime.now(timezone.utc)


class ReadStage(Stage):
    """Decode each frame once and fan it out to its jobs (stateless; runs as tasks)."""

    name = "read"

    def __init__(self, input_cfg: InputConfig, output_cfg: OutputConfig, run_id: str, cpus: float):
        self.input_cfg, self.output_cfg, self.run_id = input_cfg, output_cfg, run_id
        self.resources = Resources(cpus=cpus)

    def process_batch(self, tasks: list[dict]) -> list[dict]:
        from ..sources.dispatch import read_input

        t0 = time.perf_counter()
        frames = read_input([t["ref"] for t in tasks], max_pixels=self.input_cfg.max_pixels,
                            min_side=self.input_cfg.min_side)
        read_ms = (time.perf_counter() - t0) * 1000 / max(len(tasks), 1)
        out = []
        for task, decoded in zip(tasks, frames):
            ref = task["ref"]
            meta = {"frame_index": ref.frame_index, "timestamp_s": ref.timestamp_s, **ref.meta}
            source = None
            if not isinstance(decoded, FrameError):
                meta.update(decoded.meta)
                source = image_struct(encode_image(decoded.rgb, self.output_cfg.source_format), ref.source_id)
            for job in task["jobs"]:
                row = base_row({**job, "source_meta": meta}, self.run_id)
                row["source_image"] = source
                row["timings_ms"] = {"read_ms": read_ms}
                if isinstance(decoded, FrameError):
                    row["error"] = f"read: {decoded}"
                else:
                    row["_source_rgb"] = decoded.rgb
                out.append(row)
        return out


class EditStage(Stage):
    """Runs ChronoEdit on each row; one Editor (one loaded model) per actor."""

    name = "edit"

    def __init__(self, model_cfg: ModelConfig, settings: dict, resources: Resources, batch_size: int,
                 state_dir: str, fault_kill_at_job: int = 0, fault_kill_source: str = ""):
        self.model_cfg, self.settings = model_cfg, settings
        self.resources, self.batch_size = resources, batch_size
        # OUT/_state: the in-flight ledger (which job each worker process is editing) lives here
        self.state_dir = Path(state_dir)
        # fault injection for tests: die (like an OOM kill) on the Nth job, once per marker file,
        # or on every job of one source (a job that can never succeed)
        self.fault_kill_at_job, self.fault_kill_source = fault_kill_at_job, fault_kill_source
        self.fault_marker = self.state_dir / "fault-injected"
        self.jobs_seen = 0
        self.editor = None

    def setup(self) -> None:
        import torch

        from ..engine.editor import Editor

        if self.resources.gpus and not torch.cuda.is_available():
            # Ray granted a GPU but torch cannot use it (CPU build, driver mismatch): fail loudly
            # instead of letting model.device=auto quietly edit on the CPU
            raise RuntimeError(f"edit actor was given {self.resources.gpus} GPU(s) but torch sees no CUDA device "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        self.editor = Editor(self.model_cfg)

    def _maybe_die(self, row: dict) -> None:
        self.jobs_seen += 1
        if self.fault_kill_source and row["source_id"] == self.fault_kill_source:
            os._exit(137)
        if self.fault_kill_at_job and self.jobs_seen == self.fault_kill_at_job and not os.path.exists(self.fault_marker):
            self.fault_marker.write_text(str(os.getpid()))
            os._exit(137)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self._edit(row) for row in rows]

    def _edit(self, row: dict) -> dict:
        if row["error"]:
            return row
        # a process that dies mid-edit leaves this file naming the job it died on
        mark_inflight(self.state_dir, row["job_id"])
        self._maybe_die(row)
        s = self.settings[settings_key(row["scenario"], row["edit_id"])]
        try:
            result = self.editor.edit(row["_source_rgb"], row["prompt"], seed=row["seed"], gen=s.generation,
                                      negative_prompt=row["negative_prompt"])
            t0 = time.perf_counter()
            traj = s.trajectory
            frames = result.reasoning_frames if result.reasoning_frames is not None else []
            row.update(
                edited_image=image_struct(encode_image(result.edited, traj.edited_format), "edited." + traj.edited_format),
                reasoning_frames=[
                    image_struct(encode_image(f, traj.image_format, traj.quality, traj.max_side), f"r{i:03d}.{traj.image_format}")
                    for i, f in enumerate(frames)
                ],
                previews=[
                    image_struct(encode_image(f, traj.image_format, traj.quality, traj.max_side), f"p{step:03d}.{traj.image_format}")
                    for step, _, f in result.previews
                ],
                reasoning_kind=result.reasoning_kind,
                reasoning_step=result.reasoning_step,
                reasoning_sigma=result.reasoning_sigma,
                generation=generation_struct(result.settings),
                _edited_rgb=result.edited,
                _reasoning_rgb=result.reasoning_frames,
            )
            row["timings_ms"] = timings_struct({**row["timings_ms"], **result.timings_ms,
                                                "encode_ms": (time.perf_counter() - t0) * 1000})
        except Exception as exc:  # a failed edit is a row, never a crashed run
            row["error"] = f"edit: {type(exc).__name__}: {exc}"
            row["_traceback"] = traceback.format_exc(limit=5)
        identity = self.editor.identity
        row.update(model_id=identity.model_id, model_hash=identity.model_hash, random_weights=identity.random_weights)
        return row


def _inflight_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "inflight"


def mark_inflight(state_dir: Path, job_id: str) -> None:
    folder = _inflight_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{socket.gethostname()}-{os.getpid()}").write_text(job_id)


def clear_inflight(state_dir: Path) -> None:
    shutil.rmtree(_inflight_dir(state_dir), ignore_errors=True)


def deaths_per_job(state_dir: Path) -> dict[str, int]:
    """How many worker processes were last seen editing each job (a dead one never moves on)."""
    counts: dict[str, int] = {}
    folder = _inflight_dir(state_dir)
    for path in folder.glob("*") if folder.exists() else []:
        job_id = path.read_text()
        counts[job_id] = counts.get(job_id, 0) + 1
    return counts


def finish_row(row: dict) -> dict:
    """Drop transient fields and stamp the row; what the sink writes."""
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    if row["timings_ms"] is not None:
        row["timings_ms"] = timings_struct(row["timings_ms"])
    row["created_at"] = _now()
    if row["error"]:
        row["keep"] = False
    return row
