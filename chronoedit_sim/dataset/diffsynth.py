"""`chronoedit-sim export DIR --format diffsynth --output OUT`: kept edits as a ChronoEdit LoRA training set
for DiffSynth-Studio, in the layout of ChronoEdit's `docs/CREAT_DATASET.md` and `scripts/train_diffsynth.py`:

  OUT/metadata.csv          key,video,prompt   (one row per edit)
  OUT/videos/<job_id>.mp4   two frames: the input frame (at the edit's size), then the edited frame

`train_diffsynth.py --dataset_base_path OUT --dataset_metadata_path OUT/metadata.csv --num_frames 2
--extra_inputs input_image` reads it as it is: frame 0 is the input image, the last frame the target.
Frames are H.264 (4:2:0, CRF 10: visually lossless, and what any FFmpeg reads); the prompt is the
instruction the edit ran with.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .. import storage
from ..errors import UserError
from ..scoring.metrics import resize_to
from .encode import decode_rgb
from .sink import atomic_write_bytes
from .trajectories import file_stem
from .where import scan

# near-lossless, still 4:2:0 H.264: the format every FFmpeg build (and imageio) decodes
CRF = 10
BATCH_ROWS = 16


def training_pair(source: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """(2, H, W, 3): the source stretched to the edited size (as the editor saw it), then the edit."""
    return np.stack([resize_to(source, edited.shape[:2]), edited])


def export_diffsynth(dataset: Path, output: Path, where: list[str] = (), echo=print) -> int:
    """Write the training set; returns how many examples."""
    from .video import encode_video

    rows = scan(dataset, where, ["job_id", "prompt", "source_image", "edited_image"], BATCH_ROWS, echo,
                default=["outcome=kept"])
    output = storage.path(output)
    (output / "videos").mkdir(parents=True, exist_ok=True)
    entries = []
    for batch in rows:
        for row in batch:
            if row["edited_image"] is None or row["source_image"] is None:
                continue
            pair = training_pair(decode_rgb(row["source_image"]["bytes"]), decode_rgb(row["edited_image"]["bytes"]))
            h, w = pair.shape[1:3]
            even = np.pad(pair, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # 4:2:0 wants even sides
            rel = f"videos/{file_stem(row['job_id'])}.mp4"
            atomic_write_bytes(output / rel, encode_video(even, crf=CRF, fps=1))
            entries.append({"key": row["job_id"], "video": rel, "prompt": row["prompt"]})
    if not entries:
        raise UserError(f"{dataset}: no rows with a source and an edited image match; nothing to export")
    buf = io.StringIO()
    out = csv.DictWriter(buf, fieldnames=["key", "video", "prompt"], lineterminator="\n")
    out.writeheader()
    out.writerows(entries)
    atomic_write_bytes(output / "metadata.csv", buf.getvalue().encode())
    echo(f"{len(entries)} training example(s) (DiffSynth-Studio: metadata.csv + videos/) in {output}")
    return len(entries)
