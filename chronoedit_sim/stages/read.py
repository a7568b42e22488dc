"""read: decode each frame once and fan it out to its jobs (stateless; runs as Ray tasks)."""

from __future__ import annotations

import json
import time

from ..config import InputConfig, OutputConfig
from ..dataset.encode import encode_image
from ..dataset.schema import base_row, fail_row, image_struct
from ..sources.video_cache import VideoCache
from ..sources.annotations import LabelError, read_kitti_labels
from ..sources.decode import FrameError
from .base import Resources, Stage


class ReadStage(Stage):
    """Input rows are frame tasks ({"ref": FrameRef, "jobs": [job, ...]}); output rows are jobs."""

    name = "read"

    def __init__(self, input_cfg: InputConfig, output_cfg: OutputConfig, run_id: str, resources: Resources):
        self.input_cfg, self.output_cfg, self.run_id = input_cfg, output_cfg, run_id
        self.resources, self.batch_size = resources, input_cfg.read_batch_size
        self.video_cache = VideoCache(input_cfg.video_cache_dir, int(input_cfg.video_cache_gb * 1e9))

    def process_batch(self, tasks: list[dict]) -> list[dict]:
        from ..sources.dispatch import read_input

        t0 = time.perf_counter()
        frames = read_input([t["ref"] for t in tasks], max_pixels=self.input_cfg.max_pixels,
                            min_side=self.input_cfg.min_side, video_cache=self.video_cache)
        read_ms = (time.perf_counter() - t0) * 1000 / max(len(tasks), 1)
        out = []
        for task, decoded in zip(tasks, frames):
            ref = task["ref"]
            meta = {"frame_index": ref.frame_index, "timestamp_s": ref.timestamp_s, **ref.meta}
            source = None
            if not isinstance(decoded, FrameError):
                meta.update(decoded.meta)
                source = image_struct(encode_image(decoded.rgb, self.output_cfg.source_format), ref.source_id)
            try:
                truth = ground_truth(ref)
            except LabelError as e:
                truth = e
            columns = None if ref.columns is None else json.dumps(ref.columns, sort_keys=True, default=str)
            for job in task["jobs"]:
                row = base_row({**job, "source_meta": meta}, self.run_id)
                # travels to the driver, which scores flicker against the previous frame (runtime.sequences)
                row["sequence_link"] = job.get("sequence_link")
                row.update(source_image=source, episode=ref.episode, source_columns=columns)
                row["timings_ms"] = {"read_ms": read_ms}
                if isinstance(decoded, FrameError):
                    fail_row(row, self.name, str(decoded))
                elif isinstance(truth, LabelError):
                    fail_row(row, self.name, str(truth))
                else:
                    row["_source_rgb"] = decoded.rgb
                    row["_source_annotations"] = truth
                    row["_group"] = job.get("group")
                    row["_anchor"] = job.get("anchor")
                out.append(row)
        return out


def ground_truth(ref) -> list[dict]:
    """The frame's source annotations: read while listing, or parsed from its label file here."""
    if isinstance(ref.annotations, str):
        raise LabelError(ref.annotations)
    if ref.label_file:
        return read_kitti_labels(ref.label_file)
    return list(ref.annotations or [])
