"""The read+expand and edit stages. Model code lives in engine/; these adapt it to rows.

Row flow: a frame task -> one row per job (schema columns plus transient `_`
fields carrying decoded arrays to later stages) -> edited row -> scored row.
Every failure becomes the row's `error`, never an exception out of a stage.
"""

from __future__ import annotations

import os
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from ..config import InputConfig, ModelConfig, OutputConfig
from ..dataset.encode import encode_image
from ..dataset.schema import base_row, generation_struct, image_struct, timings_struct
from ..sources.decode import FrameError
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
        from ..sources.frames import read_frames

        out = []
        for task in tasks:
            ref = task["ref"]
            t0 = time.perf_counter()
            (decoded,) = read_frames([ref], max_pixels=self.input_cfg.max_pixels, min_side=self.input_cfg.min_side)
            read_ms = (time.perf_counter() - t0) * 1000
            meta = {"frame_index": ref.frame_index, "timestamp_s": ref.timestamp_s}
            source = None
            if not isinstance(decoded, FrameError):
                meta.update(decoded.meta)
                source = image_struct(encode_image(decoded.rgb, self.output_cfg.source_format), Path(ref.path).name)
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
                 fault_kill_at_job: int = 0, fault_marker: str = ""):
        self.model_cfg, self.settings = model_cfg, settings
        self.resources, self.batch_size = resources, batch_size
        # fault injection for tests: die (like an OOM kill) on the Nth job, once per marker file
        self.fault_kill_at_job, self.fault_marker = fault_kill_at_job, fault_marker
        self.jobs_seen = 0
        self.editor = None

    def setup(self) -> None:
        from ..engine.editor import Editor

        self.editor = Editor(self.model_cfg)

    def _maybe_die(self) -> None:
        self.jobs_seen += 1
        if self.fault_kill_at_job and self.jobs_seen == self.fault_kill_at_job and not os.path.exists(self.fault_marker):
            Path(self.fault_marker).write_text(str(os.getpid()))
            os._exit(137)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self._edit(row) for row in rows]

    def _edit(self, row: dict) -> dict:
        if row["error"]:
            return row
        self._maybe_die()
        s = self.settings[f"{row['scenario']}/{row['edit_id']}"]
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


def finish_row(row: dict) -> dict:
    """Drop transient fields and stamp the row; what the sink writes."""
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    if row["timings_ms"] is not None:
        row["timings_ms"] = timings_struct(row["timings_ms"])
    row["created_at"] = _now()
    if row["error"]:
        row["keep"] = False
    return row
