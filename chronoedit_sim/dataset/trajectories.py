"""`chronoedit-sim export-trajectories DIR --output DIR`: one file per row's reasoning trajectory.

Rows stream from the shards a batch at a time (a `--where` filter is pushed into the scan), so
memory stays bounded whatever the dataset's size. Files are named `<job_id>.<ext>` and written
atomically; a row without a trajectory (no reasoning, a failed row, a rejected row kept without
images) is counted, not exported.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np

from .. import storage
from ..errors import UserError
from .encode import frame_strip, stored_trajectory
from .sink import atomic_write_bytes
from .where import scan

# format -> file extension
FORMATS = {"mp4": ".mp4", "gif": ".gif", "webp": ".webp", "png-strip": ".png"}
# rows per batch read: a row holds a whole trajectory
BATCH_ROWS = 16
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def file_stem(job_id: str) -> str:
    """The job_id itself (a hex hash); anything that is not a plain name is hashed, never used as a path."""
    return job_id if _SAFE_NAME.fullmatch(job_id) else "job-" + hashlib.sha256(job_id.encode()).hexdigest()[:20]


def encode_trajectory(frames: np.ndarray, fmt: str, fps: int = 8) -> bytes:
    """(F, H, W, 3) RGB frames as the bytes of one file in `fmt` (see FORMATS)."""
    if fmt == "png-strip":
        return frame_strip(frames, 0, "png")
    if fmt == "mp4":
        from .video import encode_video

        # H.264 4:2:0 (what browsers play) needs even sides: repeat the last row / column
        h, w = frames.shape[1:3]
        even = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        return encode_video(even, crf=18, fps=fps)
    from PIL import Image

    images = [Image.fromarray(f, "RGB") for f in frames]
    buf = io.BytesIO()
    extra = {"quality": 90} if fmt == "webp" else {}
    images[0].save(buf, fmt.upper(), save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                   **extra)
    return buf.getvalue()


def export_trajectories(dataset: Path, output: Path, fmt: str = "mp4", where: list[str] = (), fps: int = 8,
                        echo=print) -> int:
    """Write the matching rows' trajectories; returns how many files were written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    rows = scan(dataset, where, ["job_id", "reasoning_frames", "reasoning_video"], BATCH_ROWS, echo)
    output = storage.path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = without = 0
    for batch in rows:
        for row in batch:
            path = output / f"{file_stem(row['job_id'])}{FORMATS[fmt]}"
            if fmt == "mp4" and row["reasoning_video"]:
                data = row["reasoning_video"]["bytes"]  # already an MP4: as stored, not encoded again
            else:
                frames = stored_trajectory(row)
                if frames is None:
                    without += 1
                    continue
                data = encode_trajectory(frames, fmt, fps)
            atomic_write_bytes(path, data)
            written += 1
    echo(f"{written} trajectory file(s) ({fmt}) in {output}; {without} matching row(s) without a trajectory")
    return written
