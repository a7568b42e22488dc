"""Run by the side venv's Python (lerobot pins torch < 2.11, so it never enters the project's venv): load
an export with lerobot's own LeRobotDataset and print what it sees as JSON; with a second argument, also
save every camera's frames as lerobot hands them out (uint8 HWC, per camera in dataset order) to that .npz."""

import json
import sys
from pathlib import Path

import numpy as np

from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = Path(sys.argv[1])
ds = LeRobotDataset("local/chronoedit-export", root=root, video_backend="pyav")
items = [ds[i] for i in range(len(ds))]
cams = ds.meta.video_keys
print(json.dumps({
    "frames": len(ds), "episodes": ds.num_episodes, "cameras": cams,
    "shapes": {c: list(items[0][c].shape) for c in cams},
    "actions": [items[i]["action"].tolist() for i in range(len(ds))],
    "episode_index": [int(x["episode_index"]) for x in items],
    "tasks": sorted({x["task"] for x in items}),
    "pixel_mean": {c: float(sum(x[c].mean() for x in items) / len(items)) for c in cams},
}))
if len(sys.argv) > 2:  # lerobot's float CHW in [0, 1] back to the uint8 it decoded
    np.savez(sys.argv[2], **{c: np.stack([(x[c].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                                          for x in items]) for c in cams})
