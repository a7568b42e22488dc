"""What every source shares: the frame reference, the input error, and a deterministic directory walk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..errors import UserError


class InputError(UserError):
    """The input as a whole is unusable (missing path, empty source): raised before Ray starts, or when the
    listing reaches it (a bad file deep in a corpus ends the run with this one line)."""


@dataclass(frozen=True)
class FrameRef:
    """One frame of any source: what the listing yields and a read task decodes. Small and picklable."""

    source_id: str  # stable: relative POSIX path, or "<video>@<frame:06d>"; never absolute or read order
    source_uri: str  # absolute path; for videos f"{abs_path}#frame={index}"
    path: str  # absolute file path (image, video, or Parquet file)
    frame_index: int  # image: -1; video: frame position in the file; parquet: row index in the file
    timestamp_s: float | None  # video: position / fps; None for images
    # how read_frames decodes it: "image" (a file), "video" (a frame of path), "parquet" (a row of path)
    kind: str = "image"
    # source metadata kept in the row's source_meta (camera, episode, task, row key ...)
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    # a caption the input itself provides (Parquet caption column, LeRobot task): fills source_caption
    caption: str | None = None
    # ground truth read while listing (COCO, nuScenes: a list of source annotations, or the message of an
    # entry that cannot be read, which fails the frame); None = none read here
    annotations: list | str | None = field(default=None, compare=False, hash=False)
    # a label file the read task parses (KITTI), so a malformed one fails only its frame
    label_file: str | None = None
    # LeRobot: the frame's episode record (the `episode` column)
    episode: dict | None = field(default=None, compare=False, hash=False)
    # Parquet: the input's columns named by input.keep_columns
    columns: dict | None = field(default=None, compare=False, hash=False)
    # the source's natural sequence (a video file, a LeRobot episode, a KITTI raw drive, a nuScenes scene) and
    # its moment (the cameras of one LeRobot frame, a nuScenes sample, a KITTI stereo pair); None: none
    sequence_id: str | None = None
    instant_id: str | None = None


def has_ext(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def walk(root: str, exts: tuple[str, ...], folders_too: bool = False) -> Iterator[tuple[str, str]]:
    """(absolute path, relative POSIX path) of matching non-hidden files, in a deterministic order, lazily: one
    folder's names at a time, so a corpus of millions of files is never listed whole.
    `folders_too`: a folder named like a match (`x.png/`) is listed too, so it becomes an error row, not a gap."""

    if storage.is_url(root):
        yield from _walk_store(storage.path(root), exts, folders_too)
        return

    def unreadable(e: OSError) -> None:
        # os.walk skips unreadable folders silently by default: that would drop their frames unseen.
        raise InputError(f"input.path: cannot list {e.filename}: {e.strerror or e}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        # Sorting in place fixes the descent order; os.walk's order is the filesystem's.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # the folder's relative prefix once, not per file (millions of files)
        prefix = Path(os.path.relpath(dirpath, root)).as_posix() + "/"
        prefix = "" if prefix == "./" else prefix
        for name in sorted([*filenames, *(dirnames if folders_too else ())]):
            # Zero-byte/corrupt files are kept on purpose: they become error rows, not silent gaps.
            if not name.startswith(".") and has_ext(name, exts):
                yield os.path.join(dirpath, name), prefix + name


def _walk_store(root, exts: tuple[str, ...], folders_too: bool) -> Iterator[tuple[str, str]]:
    """walk() on an object store, in the same order: one folder's listing at a time, its sorted matches,
    then its sorted sub-folders."""

    def visit(folder: str, prefix: str) -> Iterator[tuple[str, str]]:
        try:
            names = dict(storage.scandir(folder))
        except OSError as e:
            raise InputError(f"input.path: cannot list {folder}: {e.strerror or e}") from None
        for name in sorted(n for n, is_dir in names.items() if folders_too or not is_dir):
            if not name.startswith(".") and has_ext(name, exts):
                yield f"{folder}/{name}", prefix + name
        for d in sorted(n for n, is_dir in names.items() if is_dir and not n.startswith(".")):
            yield from visit(f"{folder}/{d}", f"{prefix}{d}/")

    yield from visit(str(root).rstrip("/"), "")
