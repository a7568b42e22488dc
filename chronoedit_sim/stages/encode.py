"""encode: the edit's raw frames to stored bytes (edited image, reasoning frames or video, previews,
and the small thumbnails the report lays out).

CPU work that used to hold the GPU actor (29 webp frames at 832x480 take about 2 s on one
core); here it runs in Ray tasks on the cores beside the editors. Decoded frames stay in the
row's transient fields for the score stage.
"""

from __future__ import annotations

import time

from ..dataset.encode import encode_image, make_thumbnails, shrink_frames
from ..dataset.schema import image_struct
from ..scenario import EditSettings, settings_key
from .base import Resources, Stage


class EncodeStage(Stage):
    name = "encode"

    def __init__(self, settings: dict[str, EditSettings], resources: Resources, batch_size: int = 1,
                 thumbnail_side: int = 0):
        self.settings, self.thumbnail_side = settings, thumbnail_side
        self.resources, self.batch_size = resources, batch_size

    def process_row(self, row: dict) -> dict:
        t0 = time.perf_counter()
        traj = self.settings[settings_key(row["scenario"], row["edit_id"])].trajectory
        fmt = traj.image_format

        def stored(frame, name: str) -> dict:
            return image_struct(encode_image(frame, fmt, traj.quality, traj.max_side), f"{name}.{fmt}")

        row["edited_image"] = image_struct(encode_image(row["_edited_rgb"], traj.edited_format),
                                           "edited." + traj.edited_format)
        for field, name in (("edited_base_image", "edited_base"), ("edit_input_image", "edit_input")):
            frame = row.get(f"_{name}_rgb")  # the edit before upscaling; a sketch edit's drawn input
            if frame is not None:
                row[field] = image_struct(encode_image(frame, traj.edited_format), f"{name}.{traj.edited_format}")
        frames = row.get("_reasoning_rgb")
        if frames is not None and traj.storage == "video":
            from ..dataset.video import encode_video

            data = encode_video(shrink_frames(frames, traj.max_side), crf=traj.video_crf, lossless=traj.video_lossless,
                                preset=traj.video_preset)
            row["reasoning_video"] = {"bytes": data, "path": "reasoning.mp4"}
        elif frames is not None:
            row["reasoning_frames"] = [stored(f, f"r{i:03d}") for i, f in enumerate(frames)]
        row["previews"] = [stored(f, f"p{step:03d}") for step, _, f in row.get("_previews") or []]
        if self.thumbnail_side:
            row["thumbnails"] = make_thumbnails(row["_source_rgb"], row["_edited_rgb"], frames, self.thumbnail_side)
        row["timings_ms"] = {**(row["timings_ms"] or {}), "encode_ms": (time.perf_counter() - t0) * 1000}
        return row
