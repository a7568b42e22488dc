"""Video frames through PyAV, for codecs OpenCV's wheels cannot decode.

OpenCV's PyPI build has no software AV1 decoder ("doesn't support hardware accelerated AV1
decoding"), and AV1 is LeRobot's default codec. PyAV's wheels bundle FFmpeg with dav1d.
"""

from __future__ import annotations

from .decode import DecodedImage, FrameError

# seek instead of decoding through more than this many frames
_SEEK_FRAMES = 30


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
