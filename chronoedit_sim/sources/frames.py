"""List the frames of an input (image folder, image file, video, folder of videos) and read them.

iter_frames runs lazily in the plan's listing task (and on the driver for --dry-run), so it only looks at
names and video headers; a frame that turns out bad later (corrupt file, video ending early)
is read_frames' job and becomes a FrameError, i.e. one error row, never a gap.
"""
from __future__ import annotations

import contextlib
import fnmatch
import itertools
import math
from collections import defaultdict
from collections.abc import Iterator

import cv2

from chronoedit_sim import storage
from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.base import FrameRef, InputError, has_ext, walk
from chronoedit_sim.sources.decode import DecodedImage, FrameError, decode_image, normalize_array

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
# input.type -> (extensions, plural noun, "a ... file") for listing and its messages
_KINDS = {"images": (IMAGE_EXTENSIONS, "images", "an image file"), "video": (VIDEO_EXTENSIONS, "videos", "a video file")}

# codecs OpenCV's PyPI wheels open but cannot decode (no software AV1 decoder): read with PyAV
_PYAV_CODECS = ("av01",)
# Jumping further ahead than this seeks; nearer frames are grabbed sequentially,
# which is cheap (no pixel conversion) and always frame-exact, unlike seeking.
_SEEK_THRESHOLD = 30


def _selected(rel: str, include: list[str], exclude: list[str]) -> bool:
    # fnmatch's "*" also crosses "/", so "cam_front/*" selects a whole subtree
    if include and not any(fnmatch.fnmatchcase(rel, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(rel, g) for g in exclude)


def _video_refs(path: str, rel: str, cfg: InputConfig, shown: str) -> Iterator[FrameRef]:
    import av

    from .pyav_video import video_header

    try:
        # Header values only: decoding every frame here would read the whole video while listing.
        count, fps = video_header(path)
    except (av.error.FFmpegError, IndexError) as e:
        why = "no video stream" if isinstance(e, IndexError) else f"{type(e).__name__}: {e}"
        raise InputError(f"input.path: {shown}: cannot open video {rel} (not a video FFmpeg can read: {why})") from None
    except OSError as e:  # the store's answer (credentials, network), or PyAV seeking past an empty object
        raise InputError(f"input.path: {shown}: cannot read video {rel} ({type(e).__name__}: {e})") from None
    if not math.isfinite(count) or int(count) <= 0:
        raise InputError(f"input.path: {shown}: video {rel} has no frames")
    # Some containers report no frame rate; a made-up one would give wrong timestamps.
    good_fps = math.isfinite(fps) and fps > 0
    first, stop = 0, int(count)
    if cfg.start_s or cfg.end_s is not None:
        if not good_fps:
            raise InputError(f"input.start_s/end_s: video {rel} reports no frame rate, so times cannot be mapped to frames")
        first = math.ceil(cfg.start_s * fps - 1e-9)
        if cfg.end_s is not None:
            stop = min(stop, math.floor(cfg.end_s * fps + 1e-9) + 1)
    for i in range(first, stop, cfg.stride):
        yield FrameRef(
            # frame index and, when the container knows its rate, the timestamp: both stable for a file
            source_id=f"{rel}@{i:06d}" + (f"@{i / fps:.3f}s" if good_fps else ""),
            source_uri=f"{path}#frame={i}",
            path=path,
            frame_index=i,
            timestamp_s=i / fps if good_fps else None,
            kind="video",
            sequence_id=rel,  # a video is one sequence
        )


def list_frames(cfg: InputConfig) -> list[FrameRef]:
    return list(iter_frames(cfg))


def iter_frames(cfg: InputConfig) -> Iterator[FrameRef]:
    """The input's frames in order, lazily (a folder's names at a time, a video's header when it is reached)."""
    shown = cfg.path
    if not shown:
        raise InputError("input.path: not set (use --input PATH)")
    if cfg.stride < 1:
        raise InputError(f"input.stride: must be >= 1, got {cfg.stride}")
    if cfg.max_frames < 0:
        raise InputError(f"input.max_frames: must be >= 0, got {cfg.max_frames}")
    if cfg.type not in ("auto", "images", "video"):
        raise InputError(f"input.type: {cfg.type!r} is not one of auto, images, video")
    where = storage.located(shown)
    root = str(where)
    if not where.exists():
        raise InputError(f"input.path: {shown} does not exist")
    supported = f"images: {', '.join(IMAGE_EXTENSIONS)}; videos: {', '.join(VIDEO_EXTENSIONS)}"
    is_dir = where.is_dir()
    name = where.name
    kind = cfg.type
    if kind == "auto":
        if is_dir or has_ext(name, IMAGE_EXTENSIONS):
            kind = "images"
        elif has_ext(name, VIDEO_EXTENSIONS):
            kind = "video"
        else:
            raise InputError(f"input.path: {shown}: unsupported file type ({supported})")

    exts, plural, single = _KINDS[kind]
    if is_dir:
        files = walk(root, exts, folders_too=kind == "images")
    elif has_ext(name, exts):
        files = iter([(root, name)])
    else:
        raise InputError(f"input.path: {shown}: input.type={kind} needs a folder or {single} ({supported})")
    seen = [0]  # files of the right kind, before include/exclude: tells an empty folder from an empty selection

    def counted():
        for pair in files:
            seen[0] += 1
            yield pair

    if kind == "images":
        selected = ((full, rel) for full, rel in counted() if _selected(rel, cfg.include, cfg.exclude))
        refs = (FrameRef(rel, full, full, -1, None) for full, rel in itertools.islice(selected, 0, None, cfg.stride))
    else:
        refs = (ref for full, rel in counted() for ref in _video_refs(full, rel, cfg, shown))
    n = 0
    for n, ref in enumerate(itertools.islice(refs, cfg.max_frames or None), 1):
        yield ref
    if not n:
        if not seen[0]:
            raise InputError(f"input.path: {shown}: no {plural} ({', '.join(exts)}) found")
        raise InputError(f"input.path: {shown}: no images left after input.include/input.exclude")


def _read_image(ref: FrameRef, max_pixels: int, min_side: int) -> DecodedImage | FrameError:
    uri = ref.source_uri
    try:
        data = storage.path(ref.path).read_bytes()
    except OSError as e:
        return FrameError(f"{uri}: cannot read: {e.strerror or e}")
    try:
        return decode_image(data, uri=uri, max_pixels=max_pixels, min_side=min_side)
    except FrameError as e:
        return e
    except MemoryError:
        raise  # a worker resource problem, not a property of this frame
    except Exception as e:  # decode_image should not raise others; one frame must still not stop the run
        return FrameError(f"{uri}: unexpected decode failure ({type(e).__name__}: {e})")


def _convert(frame, uri: str, min_side: int) -> DecodedImage | FrameError:
    try:
        img = normalize_array(frame, uri=uri)
    except FrameError as e:
        return e
    h, w = img.rgb.shape[:2]
    if min(w, h) < max(min_side, 1):  # same rule and wording as decode_image
        return FrameError(f"{uri}: image is {w}x{h}, smaller than the minimum side of {max(min_side, 1)} px")
    return img


def _read_video(path: str, uris: dict[int, str], min_side: int) -> dict[int, DecodedImage | FrameError]:
    """Decode the frames uris names (index -> uri) of one video, opened once, in ascending order."""
    indices = sorted(uris)
    out: dict[int, DecodedImage | FrameError] = {}

    def fail_rest(n: int, why: str) -> None:
        out.update((j, FrameError(f"{uris[j]}: {why} at frame {j}")) for j in indices[n:])

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            # It opened when listed; it may have been moved or replaced since.
            fail_rest(0, "cannot open video")
            return out
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower()
        if fourcc in _PYAV_CODECS:
            from .pyav_video import read_video_pyav

            return read_video_pyav(path, uris, lambda bgr, uri: _convert(bgr, uri, min_side))
        pos = 0  # index of the frame the next grab() returns
        for n, i in enumerate(indices):
            try:
                if i - pos > _SEEK_THRESHOLD and cap.set(cv2.CAP_PROP_POS_FRAMES, i):
                    pos = i
                while pos < i and cap.grab():
                    pos += 1
                if pos < i or not cap.grab():
                    # The stream has ended (or the decoder gave up): this and all later frames fail.
                    fail_rest(n, "video ended or frame unreadable")
                    break
                pos += 1
                ok, frame = cap.retrieve()
            except cv2.error as e:
                # The position is unknown now; reading on could return the wrong frames silently.
                fail_rest(n, f"OpenCV error ({str(e).strip()})")
                break
            if ok and frame is not None:
                out[i] = _convert(frame, uris[i], min_side)
            else:  # grabbed but not decodable: only this frame is lost
                out[i] = FrameError(f"{uris[i]}: video ended or frame unreadable at frame {i}")
    finally:
        cap.release()
    return out


def _fetch_and_read_video(path: str, uris: dict[int, str], min_side: int,
                          video_cache) -> dict[int, DecodedImage | FrameError]:
    with contextlib.ExitStack() as stack:
        try:
            # OpenCV opens files by name: an object is fetched to the node's cache, or for this task alone
            local = stack.enter_context((video_cache.local if video_cache else storage.local_copy)(path))
        except FileNotFoundError as e:
            # gone since it was listed: each wanted frame becomes an error row. Any other error (the network,
            # credentials, the node's disk) is the task's, which Ray retries: an error row would never be
            why = f"cannot fetch video ({type(e).__name__}: {e.strerror or e})"
            return {i: FrameError(f"{uri}: {why}") for i, uri in uris.items()}
        return _read_video(local, uris, min_side)


def read_frames(refs: list[FrameRef], *, max_pixels: int, min_side: int,
                video_cache=None) -> list[DecodedImage | FrameError]:
    """One DecodedImage or FrameError per ref, in the order of refs; per-frame problems never raise.
    `video_cache`: a video_cache.VideoCache that keeps remote videos for the node's later read tasks."""
    results: list[DecodedImage | FrameError | None] = [None] * len(refs)
    by_video: dict[str, list[int]] = defaultdict(list)  # video path -> positions in refs
    for pos, ref in enumerate(refs):
        if ref.kind == "image":
            results[pos] = _read_image(ref, max_pixels, min_side)
        elif ref.kind == "video":
            by_video[ref.path].append(pos)
        else:
            raise ValueError(f"read_frames: unknown FrameRef.kind {ref.kind!r}")
    for path, positions in by_video.items():
        uris: dict[int, str] = {}
        for p in positions:
            uris.setdefault(refs[p].frame_index, refs[p].source_uri)
        decoded = _fetch_and_read_video(path, uris, min_side, video_cache)
        seen: set[int] = set()
        for p in positions:
            i = refs[p].frame_index
            r = decoded[i]
            if i in seen and isinstance(r, DecodedImage):
                # A repeated ref gets its own array, so editing one result cannot change another.
                r = DecodedImage(rgb=r.rgb.copy(), meta=dict(r.meta))
            seen.add(i)
            results[p] = r
    return results  # type: ignore[return-value]  # every slot is filled above
