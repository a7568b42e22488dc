"""`chronoedit-sim export DIR --format video --output OUT`: one MP4 per (sequence, camera, edit, sample).

For video and sequence sources (a video file, a LeRobot episode, a KITTI raw drive, a nuScenes scene): the
edited frames of each camera stream in source order, at the source's frame rate (from the frames'
timestamps; `--fps` where they have none), optionally beside their source frames (`--side-by-side`). Rows
without an edited image (failed, or rejected and stored without images) are left out, so such a clip is
shorter than its sequence; `--where` picks rows as everywhere (e.g. outcome=kept). File names are the
sanitised key plus a short hash of it, so two keys never share a file. A two-pass scan: the light columns first, then each clip's
images alone, so memory holds one clip.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import storage
from ..errors import UserError
from ..scoring.metrics import resize_to
from .encode import decode_rgb
from .sink import atomic_write_bytes
from .where import scan

_LIGHT = ["job_id", "scenario", "edit_id", "sample_index", "sequence_id", "source_id", "source_meta"]
BATCH_ROWS = 256


def _fps(timestamps: list[float | None], default: float) -> int:
    steps = np.diff([t for t in timestamps if t is not None])
    steps = steps[steps > 0]
    return max(1, round(1 / float(np.median(steps)))) if len(steps) else max(1, round(default))


def _name(*parts) -> str:
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:8]
    return "__".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", str(p)).strip("_") for p in parts) + f"__{digest}"


def export_video(dataset: Path, output: Path, where: list[str] = (), side_by_side: bool = False,
                 fps: float = 10.0, echo=print) -> int:
    """Write the clips; returns how many."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .sink import readable_shards
    from .video import encode_video

    clips: dict[tuple, list[tuple]] = defaultdict(list)
    for batch in scan(dataset, where, _LIGHT, BATCH_ROWS, echo):
        for row in batch:
            if row["sequence_id"] is None:
                continue
            meta = json.loads(row["source_meta"])
            key = (row["sequence_id"], meta.get("camera") or "", row["scenario"], row["edit_id"], row["sample_index"])
            t = meta.get("timestamp_s", meta.get("timestamp"))
            order = (t if t is not None else meta.get("frame_index", -1), row["source_id"])
            clips[key].append((order, row["job_id"], t))
    if not clips:
        raise UserError(f"{dataset}: no rows of a sequence source (video, LeRobot, KITTI raw, nuScenes) match: "
                        "nothing to export as video")
    data = storage.parquet_dataset(readable_shards(storage.path(dataset)))
    output = storage.path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = 0
    for key, frames in sorted(clips.items()):
        frames.sort()
        ids = [job for _, job, _ in frames]
        table = data.to_table(columns=["job_id", "source_image", "edited_image"], filter=pc.field("job_id").isin(pa.array(ids, pa.string())))
        rows = {r["job_id"]: r for r in table.to_pylist() if r["edited_image"]}
        images = []
        for job in ids:
            if job not in rows:
                continue
            edited = decode_rgb(rows[job]["edited_image"]["bytes"])
            if side_by_side:
                edited = np.concatenate([resize_to(decode_rgb(rows[job]["source_image"]["bytes"]), edited.shape[:2]),
                                         edited], axis=1)
            images.append(edited)
        if not images:
            continue
        clip = np.stack(images)
        h, w = clip.shape[1:3]
        clip = np.pad(clip, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # 4:2:0 wants even sides
        rate = _fps([t for _, _, t in frames], fps)
        atomic_write_bytes(output / f"{_name(*key)}.mp4", encode_video(clip, crf=18, fps=rate))
        written += 1
    echo(f"{written} clip(s) (one MP4 per sequence, camera, edit and sample) in {output}")
    return written
