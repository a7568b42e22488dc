"""List the camera frames of a LeRobot v3.0 dataset as video FrameRefs (metadata only, no pixels).

Layout (codebase_version "v3.0", as lerobot's dataset_metadata.py / utils.py write it):
  meta/info.json                          fps, features (cameras: dtype "video"), data_path, video_path
  meta/tasks.parquet                      task_index + the task text (the pandas index)
  meta/episodes/chunk-XXX/file-XXX.parquet one row per episode: data/chunk_index, data/file_index,
                                          videos/<key>/chunk_index|file_index|from_timestamp|to_timestamp
  data/chunk-XXX/file-XXX.parquet         one row per frame: episode_index, frame_index, timestamp, task_index
  videos/<key>/chunk-XXX/file-XXX.mp4     several episodes back to back; an episode's frame at
                                          `timestamp` is at from_timestamp + timestamp in the file.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc

from chronoedit_sim import storage
from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.base import FrameRef, InputError

# lerobot's defaults, used only when info.json leaves a template out
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
_DATA_COLUMNS = ["episode_index", "frame_index", "timestamp", "task_index"]
# the `episode` column's action and state, read where info.json declares them
_VECTOR_COLUMNS = ["action", "observation.state"]


def _load_info(root: Path) -> dict | None:
    try:
        info = json.loads((root / "meta" / "info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "fps" in info and isinstance(info.get("features"), dict) else None


def is_lerobot(root: Path) -> bool:
    return _load_info(storage.path(root)) is not None


def _read(path: Path, columns: list[str] | None, what: str, filters=None):
    """Read a Parquet file (only `columns`), turning a missing file or column into an InputError naming it."""
    if not path.is_file():
        raise InputError(f"input.path: LeRobot {what} {path} is missing")
    try:
        if columns is not None:
            missing = [c for c in columns if c not in storage.parquet(path).schema_arrow.names]
            if missing:
                raise InputError(f"input.path: LeRobot {what} {path} has no column(s) {', '.join(missing)}")
        return storage.read_table(path, columns=columns, filters=filters)
    except InputError:
        raise
    except Exception as e:  # corrupt or truncated Parquet: the dataset as a whole is unusable
        raise InputError(f"input.path: cannot read LeRobot {what} {path} ({type(e).__name__}: {e})") from None


def _load_tasks(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.parquet"
    table = _read(path, None, "tasks file")
    # lerobot writes a pandas frame indexed by the task text: the index is stored as a column named
    # "task" (LeRobotDatasetMetadata) or "__index_level_0__" (convert_dataset_v21_to_v30's unnamed index).
    text_col = "task" if "task" in table.column_names else None
    if text_col is None:
        pandas_meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
        text_col = next((c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)), None)
    if text_col not in table.column_names or "task_index" not in table.column_names:
        raise InputError(f"input.path: LeRobot tasks file {path} has no task text / task_index columns")
    return dict(zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist()))


def _summary(values: list[int]) -> str:
    if values and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values[:20])) + (" ..." if len(values) > 20 else "")


def list_lerobot(cfg: InputConfig, root: Path) -> list[FrameRef]:
    return list(iter_lerobot(cfg, root))


def iter_lerobot(cfg: InputConfig, root: Path) -> Iterator[FrameRef]:
    """The dataset's camera frames, episode by episode, lazily (the episode index is read whole: one row each)."""
    root = storage.located(root)
    shown = cfg.path or str(root)
    if cfg.stride < 1:
        raise InputError(f"input.stride: must be >= 1, got {cfg.stride}")
    if cfg.max_frames < 0:
        raise InputError(f"input.max_frames: must be >= 0, got {cfg.max_frames}")
    info_path = root / "meta" / "info.json"
    info = _load_info(root)
    if info is None:
        why = "is missing" if not info_path.is_file() else "is not a LeRobot info.json (needs fps and features)"
        raise InputError(f"input.path: {shown}: {info_path} {why}")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        # v2.x keeps one Parquet/MP4 per episode plus meta/episodes.jsonl: a different layout altogether.
        raise InputError(
            f"input.path: {shown}: LeRobot codebase_version {version or '(none)'} is not supported; only v3.0 "
            "(v2.x stores one file per episode; convert it with lerobot's convert_dataset_v21_to_v30)"
        )
    try:
        fps = float(info["fps"])
    except (TypeError, ValueError):
        fps = float("nan")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"input.path: {info_path}: fps must be > 0, got {info['fps']!r}")
    data_tpl = info.get("data_path") or DEFAULT_DATA_PATH
    video_tpl = info.get("video_path") or DEFAULT_VIDEO_PATH

    cameras = sorted(k for k, ft in info["features"].items() if isinstance(ft, dict) and ft.get("dtype") == "video")
    if not cameras:
        raise InputError(f"input.path: {shown}: {info_path} has no video features (dtype \"video\")")
    if cfg.cameras:
        unknown = [c for c in cfg.cameras if c not in cameras]
        if unknown:
            raise InputError(f"input.cameras: unknown camera(s) {', '.join(unknown)}; available: {', '.join(cameras)}")
        cameras = [c for c in cameras if c in cfg.cameras]

    # Episodes: only the columns that locate data and video; the stats/* columns are never read.
    ep_dir = root / "meta" / "episodes"
    ep_files = sorted(ep_dir.glob("chunk-*/file-*.parquet"))
    if not ep_files:
        raise InputError(f"input.path: {shown}: no episode files in {ep_dir} (chunk-*/file-*.parquet)")
    cols = ["episode_index", "data/chunk_index", "data/file_index"]
    cols += [f"videos/{c}/{k}" for c in cameras for k in ("chunk_index", "file_index", "from_timestamp")]
    episodes: dict[int, dict] = {}
    for f in ep_files:
        for row in _read(f, cols, "episodes file").to_pylist():
            episodes[int(row["episode_index"])] = row
    available = sorted(episodes)
    if cfg.episodes:
        unknown_eps = ", ".join(map(str, sorted({int(e) for e in cfg.episodes} - set(available))))
        if unknown_eps:
            raise InputError(f"input.episodes: unknown episode(s) {unknown_eps}; available: {_summary(available)}")
        available = sorted({int(e) for e in cfg.episodes})

    tasks = _load_tasks(root)
    # Frames: an episode's rows are read from its data file when the listing reaches it, and the file's selected
    # episodes with it (the four columns needed), so a file is read once while its episodes come in order
    vectors = [c for c in _VECTOR_COLUMNS if c in info["features"]]
    by_file: dict[tuple[int, int], list[int]] = defaultdict(list)
    for ep in available:
        by_file[(episodes[ep]["data/chunk_index"], episodes[ep]["data/file_index"])].append(ep)
    loaded: dict = {"file": None, "frames": {}}

    def frames_of(ep: int) -> list[tuple]:
        key = (episodes[ep]["data/chunk_index"], episodes[ep]["data/file_index"])
        if loaded["file"] != key:
            path = root / data_tpl.format(chunk_index=key[0], file_index=key[1])
            # the robot's vectors ride along, so edited frames can be put back into their episodes
            table = _read(path, _DATA_COLUMNS + vectors, "data file",
                          filters=pc.field("episode_index").isin(by_file[key]))
            cols_ = [table.column(c).to_pylist() for c in _DATA_COLUMNS + vectors]
            cols_ += [[None] * table.num_rows] * (len(_VECTOR_COLUMNS) - len(vectors))
            frames: dict[int, list[tuple]] = defaultdict(list)
            for e, fi, ts, ti, *vec in zip(*cols_):
                frames[int(e)].append((int(fi), float(ts), ti, *vec))
            loaded.update(file=key, frames=frames)
        return loaded["frames"][ep]

    n = 0
    for ep in available:
        rows = sorted(frames_of(ep))[:: cfg.stride]
        for cam in cameras:
            e = episodes[ep]
            mp4 = root / video_tpl.format(
                video_key=cam, chunk_index=e[f"videos/{cam}/chunk_index"], file_index=e[f"videos/{cam}/file_index"]
            )
            if not mp4.is_file():
                raise InputError(f"input.path: {shown}: episode {ep} camera {cam}: video file {mp4} is missing")
            start = float(e[f"videos/{cam}/from_timestamp"])
            for fi, ts, ti, action, state in rows:
                # timestamp is float32 in the data file: round off its binary noise (0.1 -> 0.10000000149)
                ts = round(ts, 6)
                t = start + ts
                task = tasks.get(ti)
                yield FrameRef(
                    # relative and independent of file layout/order: stable across copies and re-chunking
                    source_id=f"{cam}/episode_{ep:06d}/frame_{fi:06d}",
                    # an episode is a sequence, its cameras at one frame an instant
                    sequence_id=f"episode_{ep:06d}",
                    instant_id=f"episode_{ep:06d}/frame_{fi:06d}",
                    source_uri=f"{mp4}#t={t:.6f}",
                    path=str(mp4),
                    # constant-rate MP4 starting at 0: the position is the time in frames (rounded, as
                    # lerobot matches the nearest frame within a tolerance)
                    frame_index=round(t * fps),
                    timestamp_s=ts,
                    kind="video",
                    meta={"episode_index": ep, "frame_index": fi, "timestamp": ts, "task": task,
                          "camera": cam, "dataset": "lerobot"},
                    caption=task if cfg.use_input_captions else None,
                    episode={"episode_index": ep, "frame_index": fi, "timestamp": ts, "task": task,
                             "action": action, "state": state},
                )
                n += 1
                if n == cfg.max_frames:
                    return  # no need to look at the remaining episodes
