"""Driving-dataset folder trees (KITTI, nuScenes) listed by their folder conventions, no devkit.

KITTI object: training/image_2/000123.png; raw: 2011_09_26/<drive>_sync/image_02/data/0000000000.png.
nuScenes: samples/CAM_FRONT/<name>.jpg (LIDAR/RADAR folders and sweeps/ are ignored).
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from chronoedit_sim import storage
from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.annotations import kitti_label_path
from chronoedit_sim.sources.base import FrameRef, InputError, walk
from chronoedit_sim.sources.frames import IMAGE_EXTENSIONS

KITTI_CAMERAS = ("image_2", "image_3", "image_02", "image_03")


def _dirs(path: str) -> list[str]:
    try:
        return sorted(name for name, is_dir in storage.scandir(path) if is_dir and not name.startswith("."))
    except OSError as e:
        raise InputError(f"input.path: cannot list {path}: {e.strerror or e}") from None


def _abs(root: Path) -> str:
    return str(storage.located(root))


def is_kitti(root: Path) -> bool:
    level = [_abs(root)]
    for _ in range(3):  # camera folders at depth 1..3
        try:
            level = [os.path.join(d, n) for d in level for n in _dirs(d)]
        except InputError:
            return False
        if any(os.path.basename(d) in KITTI_CAMERAS for d in level):
            return True
    return False


def _kitti_camera_dirs(root: str) -> list[str]:
    """The camera folders under root, top-down in sorted order (images are listed per camera later)."""
    dirs = _dirs(root)
    found = [os.path.join(root, d) for d in dirs if d in KITTI_CAMERAS]
    for d in dirs:
        if d not in KITTI_CAMERAS:
            found += _kitti_camera_dirs(os.path.join(root, d))
    return found


def _pick(cfg: InputConfig, available: list[str], what: str, root: str) -> set[str]:
    unknown = sorted(set(cfg.cameras) - set(available))
    if unknown:
        raise InputError(
            f"input.cameras: {', '.join(unknown)} not found in the {what} tree {root} "
            f"(available: {', '.join(sorted(set(available)))})"
        )
    return set(cfg.cameras) if cfg.cameras else set(available)


def _camera_refs(cfg: InputConfig, root: str, cam_dir: str, meta: dict) -> Iterator[FrameRef]:
    for full, rel in itertools.islice(walk(cam_dir, IMAGE_EXTENSIONS), 0, None, cfg.stride):
        rid = Path(os.path.relpath(full, root)).as_posix()
        kitti = meta["dataset"] == "kitti"
        stem = Path(rel).stem
        # KITTI: a stereo pair is an instant. A raw drive (image_02/data/...) is a sequence, and so is each
        # folder of the tracking benchmark (image_02/0000/...); the object benchmark's frames (image_2/...)
        # are unrelated. nuScenes' groups come from its tables
        folder = Path(rel).parent.as_posix()
        seq = meta.get("sequence") if folder in (".", "data") else f"{meta.get('sequence')}/{folder}"
        yield FrameRef(rid, full, full, -1, None, kind="image", meta={**meta, "frame": stem},
                       label_file=kitti_label_path(full) if kitti else None,
                       sequence_id=seq if kitti and meta["camera"][-2] == "0" else None,
                       instant_id=f"{seq}/{stem}" if kitti else None)


def _finish(cfg: InputConfig, refs: Iterator[FrameRef], root: str, what: str) -> Iterator[FrameRef]:
    n = 0
    for n, ref in enumerate(itertools.islice(refs, cfg.max_frames or None), 1):
        yield ref
    if not n:
        raise InputError(f"input.path: {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the {what}")


def list_kitti(cfg: InputConfig, root: Path) -> list[FrameRef]:
    return list(iter_kitti(cfg, root))


def iter_kitti(cfg: InputConfig, root: Path) -> Iterator[FrameRef]:
    top = _abs(root)
    if cfg.stride < 1:
        raise InputError(f"input.stride: must be >= 1, got {cfg.stride}")
    cams = _kitti_camera_dirs(top) if storage.path(top).is_dir() else []
    if not cams:
        raise InputError(f"input.path: {root}: not a KITTI tree (no camera folder {', '.join(KITTI_CAMERAS)} found)")
    keep = _pick(cfg, [os.path.basename(c) for c in cams], "KITTI", str(root))
    refs = (ref for cam_dir in cams if os.path.basename(cam_dir) in keep
            for ref in _camera_refs(cfg, top, cam_dir, {"dataset": "kitti", "camera": os.path.basename(cam_dir),
                                                        "sequence": Path(os.path.relpath(os.path.dirname(cam_dir), top)).as_posix()}))
    yield from _finish(cfg, refs, str(root), f"KITTI camera folders {', '.join(sorted(keep))}")


def _nuscenes_cameras(top: str) -> list[str]:
    samples = os.path.join(top, "samples")
    return [d for d in _dirs(samples) if d.startswith("CAM_")] if storage.path(samples).is_dir() else []


def is_nuscenes(root: Path) -> bool:
    try:
        return bool(_nuscenes_cameras(_abs(root)))
    except InputError:
        return False


def list_nuscenes(cfg: InputConfig, root: Path) -> list[FrameRef]:
    return list(iter_nuscenes(cfg, root))


def iter_nuscenes(cfg: InputConfig, root: Path) -> Iterator[FrameRef]:
    top = _abs(root)
    if cfg.stride < 1:
        raise InputError(f"input.stride: must be >= 1, got {cfg.stride}")
    cams = _nuscenes_cameras(top)
    if not cams:
        raise InputError(f"input.path: {root}: not a nuScenes tree (no samples/CAM_* folders found)")
    keep = _pick(cfg, cams, "nuScenes", str(root))
    refs = (ref for cam in cams if cam in keep
            for ref in _camera_refs(cfg, top, os.path.join(top, "samples", cam), {"dataset": "nuscenes", "camera": cam}))
    yield from _finish(cfg, refs, str(root), f"nuScenes folders samples/{{{', '.join(sorted(keep))}}}")
