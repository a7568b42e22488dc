"""Videos through PyAV: headers for listing, and frames for codecs OpenCV's wheels cannot decode.

OpenCV's PyPI build has no software AV1 decoder ("doesn't support hardware accelerated AV1
decoding"), and AV1 is LeRobot's default codec. PyAV's wheels bundle FFmpeg with dav1d.
PyAV also reads from a Python file object, so a video on an object store is listed from ranged
reads of its header instead of a download of the whole object (OpenCV opens files by name only).
"""

from __future__ import annotations

import contextlib
import math

from chronoedit_sim import storage

from .decode import DecodedImage, FrameError

# seek instead of decoding through more than this many frames
_SEEK_FRAMES = 30
# a remote video's header is read in ranged GETs of this size (an MP4's index may sit at its end)
HEADER_BLOCK = 256 * 1024


def video_header(path) -> tuple[int, float]:
    """(frame count, frames per second) from a video's header, as OpenCV's FFmpeg backend reports them, so
    a listing is the same whichever decodes the frames later: nb_frames, else the duration times the rate,
    rounded; avg_frame_rate, else FFmpeg's guess; 0.0 when the container gives no rate. Raises
    av.error.FFmpegError, IndexError when the file has no video stream, OSError when an object cannot be read."""
    import av

    p = storage.path(path)
    with contextlib.ExitStack() as stack:
        # a local file by name (FFmpeg's own I/O); an object through the store's file object
        source = stack.enter_context(p.open("rb", block_size=HEADER_BLOCK)) if storage.is_remote(p) else str(p)
        container = stack.enter_context(av.open(source))
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        seconds = (container.duration / av.time_base if container.duration
                   else float((stream.duration or 0) * stream.time_base))
        return stream.frames or math.floor(seconds * fps + 0.5), fps


def read_video_pyav(path: str, uris: dict[int, str], convert) -> dict[int, DecodedImage | FrameError]:
    """Like frames._read_video: index -> DecodedImage or FrameError; `convert(bgr, uri)` normalises."""
    import av

    wanted = sorted(uris)
    out: dict[int, DecodedImage | FrameError] = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if not fps:
                raise ValueError("the stream has no frame rate")
            if wanted[0] > _SEEK_FRAMES:
                # back to the keyframe before the first wanted frame; positions come from timestamps
                container.seek(int(wanted[0] / fps / stream.time_base), stream=stream, backward=True)
            pending = set(wanted)
            for frame in container.decode(stream):
                index = round(frame.time * fps)
                if index in pending:
                    out[index] = convert(frame.to_ndarray(format="bgr24"), uris[index])
                    pending.discard(index)
                if not pending or index > wanted[-1]:
                    break
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        for i in wanted:
            out.setdefault(i, FrameError(f"{uris[i]}: cannot decode video ({type(exc).__name__}: {exc})"))
    for i in wanted:
        out.setdefault(i, FrameError(f"{uris[i]}: video ended or frame unreadable at frame {i}"))
    return out
