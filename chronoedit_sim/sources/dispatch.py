"""Which source reads an input: `input.type`, or a look at the path when it is "auto".

Every source lists FrameRefs lazily (names, headers and id columns only, never pixels): a run's listing
task expands them into jobs as it goes, and read_input decodes them in Ray read tasks, so every input kind gives the same Frame rows.
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import storage
from ..config import InputConfig
from .decode import DecodedImage, FrameError
from .base import FrameRef, InputError
from .frames import iter_frames, read_frames


def detect(cfg: InputConfig) -> str:
    """The input type for cfg.path ("auto" resolved); only cheap looks at the top of the tree."""
    if cfg.type != "auto":
        return cfg.type
    root = storage.located(cfg.path)
    if root.is_file():
        return "parquet" if root.suffix.lower() == ".parquet" else "images_or_video"
    if not root.is_dir():
        return "images_or_video"  # iter_frames reports the missing path
    from .lerobot import is_lerobot
    from .trees import is_kitti, is_nuscenes

    if is_lerobot(root):
        return "lerobot"
    if is_nuscenes(root):
        return "nuscenes"
    if is_kitti(root):
        return "kitti"
    # a Hugging Face dataset on disk: Parquet files at the top or under data/, and no images beside them
    top = [p for d in (root, root / "data") if d.is_dir() for p in d.iterdir() if not p.name.startswith(".")]
    names = {p.name for p in top}
    if "dataset_dict.json" in names or ("state.json" in names and any(p.suffix == ".arrow" for p in top)):
        # save_to_disk's Arrow streams have no footer to list ids from or row groups to read one row of
        raise InputError(f"input.path: {cfg.path} is a Hugging Face dataset saved with save_to_disk (Arrow files), "
                         "which is not read: write each split as Parquet (ds.to_parquet('DIR/data/train.parquet')) "
                         "and give DIR")
    if any(p.suffix == ".parquet" for p in top) and not any(p.suffix.lower() in (".jpg", ".png") for p in top):
        return "parquet"
    return "images_or_video"


def list_input(cfg: InputConfig) -> list[FrameRef]:
    """The input's frames as a list: for small inputs (exports, tests); a run streams iter_input."""
    return list(iter_input(cfg))


def iter_input(cfg: InputConfig) -> Iterator[FrameRef]:
    """The input's frames in order, lazily, each with the ground truth found beside it (or named by
    input.annotations). Input errors are raised when the listing reaches them."""
    from .annotations import attach_coco

    refs = _iter(cfg, detect(cfg))
    return attach_coco(cfg.annotations, refs) if cfg.annotations else refs


def _iter(cfg: InputConfig, kind: str) -> Iterator[FrameRef]:
    if kind in ("images", "video", "images_or_video"):
        return iter_frames(cfg)
    root = storage.path(storage.absolute(cfg.path))
    if not root.exists():
        raise InputError(f"input.path: {cfg.path} does not exist")
    if kind == "parquet":
        from .parquet import iter_parquet

        return iter_parquet(cfg, root)
    if kind == "lerobot":
        from .lerobot import iter_lerobot

        return iter_lerobot(cfg, root)
    from .annotations import attach_nuscenes
    from .trees import iter_kitti, iter_nuscenes

    if kind == "kitti":
        return iter_kitti(cfg, root)
    return attach_nuscenes(root, iter_nuscenes(cfg, root))


def read_input(refs: list[FrameRef], *, max_pixels: int, min_side: int,
               video_cache=None) -> list[DecodedImage | FrameError]:
    """One DecodedImage or FrameError per ref, in order, whatever the refs' kinds (`video_cache`: read_frames')."""
    from .parquet import read_parquet

    out: list = [None] * len(refs)
    parquet = [i for i, r in enumerate(refs) if r.kind == "parquet"]
    other = [i for i, r in enumerate(refs) if r.kind != "parquet"]
    if parquet:
        for i, result in zip(parquet, read_parquet([refs[i] for i in parquet], max_pixels=max_pixels,
                                                   min_side=min_side)):
            out[i] = result
    if other:
        for i, result in zip(other, read_frames([refs[i] for i in other], max_pixels=max_pixels, min_side=min_side,
                                                video_cache=video_cache)):
            out[i] = result
    return out
