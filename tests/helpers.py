"""Builders of test inputs shared by several test modules (tests/ is on sys.path via conftest)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import cv2
import pandas as pd  # lerobot writes tasks.parquet with pandas; so do we
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (8-bit RGB) with a garbage-short IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# file name -> None when it must edit fine, else a part of its error message
BAD_CORPUS_OUTCOMES = {
    "truncated.jpg": "corrupt or truncated",
    "zero.png": "empty file (0 bytes)",
    "text.jpg": "not a recognised image",
    "sixteen_bit.png": None,
    "cmyk.jpg": None,
    "rgba.png": None,
    "exif_rotated.jpg": None,
    "one_pixel.png": "smaller than the minimum side of 16 px",
    "bomb.png": "exceeds the limit of",
    "folder.png": "cannot read: Is a directory",  # a folder named like an image: a row, not a silent gap
}


def write_bad_corpus(folder: Path) -> Path:
    """The bad-input corpus of the inputs issue, one file per case (see BAD_CORPUS_OUTCOMES)."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    jpeg = _encoded(Image.fromarray(rgb), "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is a text file, not a JPEG")
    Image.fromarray((np.tile(np.arange(64, dtype=np.uint16), (48, 1)) * 1000).astype(np.uint16)).save(
        folder / "sixteen_bit.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    Image.fromarray(np.dstack([rgb, np.full((48, 64), 128, np.uint8)]), "RGBA").save(folder / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "exif_rotated.jpg", quality=90, exif=exif.tobytes())
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "one_pixel.png")
    (folder / "bomb.png").write_bytes(png_header_only(30000, 30000))
    (folder / "folder.png").mkdir()
    return folder


# ---- a LeRobot v3.0 dataset as lerobot writes it (meta/, data/, videos/ with episodes back to back)

FPS = 10
W, H = 64, 48
BITS = 8  # one 8-px column per bit across the top half
TOP, WRIST = "observation.images.top", "observation.images.wrist"
CAMS = [TOP, WRIST]
TASKS = ["pick up the red cube", "open the drawer"]
# a lighting change drawn once per episode (conftest's lerobot_run)
LIGHT_SCENARIO = ("name: light\ndomain: robotics\ndescription: test\nannotations: keep\nconsistent_across: sequence\n"
                  "edits:\n  - id: relight\n    prompt: 'Relight the workspace with {colour} light.'\n"
                  "    vars: {colour: [warm, cold, green, purple]}\n    target_caption: a lit table\n"
                  "    source_caption: a table\n")
# (length, task_index, data file_index, video file_index): two episodes sharing one MP4 per camera
TWO_EPISODES = [(6, 0, 0, 0), (4, 1, 0, 0)]


def code(cam: str, global_index: int) -> int:
    return CAMS.index(cam) * 128 + global_index


def encode_frame(n: int) -> np.ndarray:
    """BGR frame: n in binary as white columns on top, grey below."""
    f = np.full((H, W, 3), 90, np.uint8)
    f[: H // 2] = 0
    for b in range(BITS):
        if (n >> b) & 1:
            f[: H // 2, b * 8 : (b + 1) * 8] = 255
    return f


def decode_frame(rgb: np.ndarray) -> int:
    # column centres only, away from block edges, so mp4v's codec noise does not flip a bit
    top = rgb[4 : H // 2 - 4].mean(axis=(0, 2))
    return sum(1 << b for b in range(BITS) if top[b * 8 + 2 : b * 8 + 6].mean() > 128)


def make_dataset(root: Path, episodes=TWO_EPISODES, *, version="v3.0", tasks_index_name="task", codec="mp4v") -> Path:
    """codec "mp4v": OpenCV's writer (key frames far apart: an episode may start between them); "av1": as
    lerobot 0.4.4 writes (libsvtav1, a key frame every 2 frames, BT.601 untagged)."""
    features = {
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["a", "b", "c"]},
        **{
            cam: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
                  "info": {"video.fps": FPS, "video.codec": codec}}
            for cam in CAMS
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": version, "robot_type": "so100", "total_episodes": len(episodes),
        "total_frames": sum(e[0] for e in episodes), "total_tasks": len(TASKS), "chunks_size": 1000,
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": FPS,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    # as LeRobotDatasetMetadata.save_episode_tasks (index named "task") or the v2.1->v3.0 converter (unnamed)
    pd.DataFrame({"task_index": range(len(TASKS))}, index=pd.Index(TASKS, name=tasks_index_name)).to_parquet(
        root / "meta" / "tasks.parquet"
    )

    ep_rows, data, videos, start = [], {}, {}, 0
    video_time: dict[int, float] = {}
    for ep, (length, task, dfile, vfile) in enumerate(episodes):
        rows = data.setdefault(dfile, [])
        rows += [dict(index=start + i, episode_index=ep, frame_index=i, timestamp=i / FPS, task_index=task,
                      action=[0.1 * i, -0.1 * i], **{"observation.state": [ep, i, 0.5]}) for i in range(length)]
        from_ts = video_time.get(vfile, 0.0)
        video_time[vfile] = from_ts + length / FPS
        row = {"episode_index": ep, "tasks": [TASKS[task]], "length": length,
               "data/chunk_index": 0, "data/file_index": dfile,
               "dataset_from_index": start, "dataset_to_index": start + length}
        for cam in CAMS:
            row |= {f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": vfile,
                    f"videos/{cam}/from_timestamp": from_ts, f"videos/{cam}/to_timestamp": from_ts + length / FPS}
            videos.setdefault((cam, vfile), []).extend(code(cam, start + i) for i in range(length))
        row |= {"stats/action/mean": [0.0, 0.0], "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        ep_rows.append(row)
        start += length

    ep_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    ep_path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), ep_path)
    for dfile, rows in data.items():
        path = root / f"data/chunk-000/file-{dfile:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([("index", pa.int64()), ("episode_index", pa.int64()), ("frame_index", pa.int64()),
                            ("timestamp", pa.float32()), ("task_index", pa.int64()),
                            ("action", pa.list_(pa.float32())), ("observation.state", pa.list_(pa.float32()))])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    for (cam, vfile), codes in videos.items():
        path = root / f"videos/{cam}/chunk-000/file-{vfile:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        if codec == "av1":
            from chronoedit_sim.dataset.video import encode_video

            rgb = np.stack([encode_frame(n)[..., ::-1] for n in codes])
            path.write_bytes(encode_video(rgb, crf=30, fps=FPS, codec="libsvtav1", gop=2, colour="bt601-untagged"))
            continue
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
        assert vw.isOpened()
        for n in codes:
            vw.write(encode_frame(n))
        vw.release()
    return root


def read_stage_rows(scenario, input_path, overrides) -> list[dict]:
    """The read stage's job rows for an input, as a run plans and reads them, without Ray: after the
    read stage a run is the same whatever the input kind, so one Ray run per kind proves nothing more."""
    return stage_rows([scenario], input_path, overrides, [])


def stage_rows(scenarios, input_path, overrides, stages, vlm=None, state_dir: str = "") -> list[dict]:
    """The rows a run's read stage and then `stages` (runtime.pipeline entries, e.g. edit_stage) make, in
    this process: the run's own stage code, without Ray (`vlm`: a VlmClient for the enhancer and judge)."""
    from chronoedit_sim.config import ConfigLoader
    from chronoedit_sim.runtime.pipeline import BuildContext, Cluster
    from chronoedit_sim.runtime.plan import make_plan
    from chronoedit_sim.stages.base import Resources
    from chronoedit_sim.stages.read import ReadStage

    plan = make_plan(ConfigLoader([*overrides, f"input.path={input_path}"]), [str(s) for s in scenarios])
    rows = ReadStage(plan.cfg.input, plan.cfg.output, "run", Resources()).process_batch(list(plan.frame_tasks()))
    ctx = BuildContext(plan, "run", Cluster(cpus=2, gpus=0), state_dir=state_dir, vlm=vlm)
    for make in stages:
        stage = make(ctx)
        stage.setup()
        rows = stage.process_batch(rows)
    return rows


# bounds on the weight-free scores only (random CLIP scores mean nothing): no row is rejected by CLIP
NO_CLIP_BOUNDS = ["filter.clip_text_min=null", "filter.clip_image_min=null", "filter.clip_direction_min=null"]
# the tiny preset's 4 steps with 2 reasoning steps (partial reasoning) and a preview every 2 steps
SCORED_STEPS, SCORED_PREVIEW_EVERY = 4, 2


# the scored dataset's KITTI labels: frame -> [(label, box)]; frame 3 also has a DontCare region
SCORED_LABELS = {0: [("Car", (4.0, 20.0, 30.0, 40.0)), ("Pedestrian", (50.0, 6.0, 58.0, 30.0))],
                 1: [("Cyclist", (10.5, 12.0, 22.5, 36.0))], 2: [],
                 3: [("Car", (40.0, 24.0, 78.0, 46.0)), ("DontCare", (0.0, 0.0, 12.0, 8.0))]}


def write_scored_kitti(root: Path) -> Path:
    """The scored frames as a KITTI object tree, training/image_2/00000i.png with label_2 files."""
    for i, objects in SCORED_LABELS.items():
        for sub in ("image_2", "label_2"):
            (root / "training" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(scored_frame(i)).save(root / "training" / "image_2" / f"{i:06d}.png")
        (root / "training" / "label_2" / f"{i:06d}.txt").write_text("".join(
            f"{label} 0.00 0 -1.00 {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f} 1.50 1.60 3.90 1.00 1.60 12.00 0.10\n"
            for label, b in objects))
    return root


def scored_frame(i: int) -> np.ndarray:
    """Frame i of the scored dataset (80x48): four different gradients."""
    y, x = np.mgrid[0:48, 0:80]
    if i == 0:
        return np.stack([x * 3, y * 5, (x + y) % 256], -1).astype(np.uint8)
    return np.stack([(x * 3 + 40 * i) % 256, y * 5, np.full_like(x, 30 * i)], -1).astype(np.uint8)


# one job as the plan makes it (runtime.plan), for stage tests without a plan
JOB = {"job_id": "j1", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": 1, "source_id": "a.png",
       "source_uri": "/x/a.png", "prompt": "p", "negative_prompt": "", "target_caption": "t",
       "source_caption": "c", "labels": {}, "choices": {}}


def write_diffsynth_lora(path: Path, seed: int) -> Path:
    """A rank-4 LoRA for the tiny model in DiffSynth-Studio's layout: Wan module names, no prefix, peft's
    .default segment."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for block in range(2):
        for module, (fan_in, fan_out) in {"self_attn.q": (24, 24), "cross_attn.k": (24, 24), "ffn.0": (24, 32)}.items():
            sd[f"blocks.{block}.{module}.lora_A.default.weight"] = torch.randn(4, fan_in, generator=g)
            sd[f"blocks.{block}.{module}.lora_B.default.weight"] = torch.randn(fan_out, 4, generator=g)
    save_file(sd, str(path))
    return path


def upload(local: Path, url: str) -> str:
    """Copy a local folder to a URL of a test's object store (the s3/gs fixtures); returns the URL."""
    from chronoedit_sim import storage

    p = storage.path(url)
    p.fs.put(str(local), p.path, recursive=True)
    return url


def flock_waiters(lock_path) -> int:
    """How many processes (or threads, each with its own open file) wait for the flock of `lock_path`:
    /proc/locks marks a waiter with '->'."""
    inode = os.stat(lock_path).st_ino
    return sum(1 for line in open("/proc/locks") if "->" in line and line.split()[-3].endswith(f":{inode}"))


def older_toolkit_hash(recorded: dict, input_path: str, scenario_shas: list[str]) -> str:
    """The config hash a toolkit whose config had only `recorded`'s keys gave a dataset: plan.content_hash's
    formula, written apart."""
    from chronoedit_sim.runtime.plan import content_config

    content = content_config(recorded)
    content["input"]["path"] = input_path
    content["scenarios"] = sorted(scenario_shas)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
