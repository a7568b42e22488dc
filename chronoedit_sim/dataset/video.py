"""A reasoning trajectory as one in-memory MP4 (H.264 through PyAV's bundled libx264).

`trajectory.storage: video` stores each row's reasoning frames as one MP4 in its own
column, an Arrow struct {bytes: binary, path: string} like the image columns. Decode a row:

    frames = decode_video(row["reasoning_video"]["bytes"])      # (F, H, W, 3) uint8 RGB

and without this package, with PyAV alone (`pip install av`, no system FFmpeg needed):

    frames = np.stack([f.to_ndarray(format="rgb24") for f in av.open(io.BytesIO(data)).decode(video=0)])

Two kinds of stream:

- lossy (default): libx264, yuv420p, BT.709 limited range (tagged in the stream), `crf`
  0-51 (lower is better; 18 is close to visually lossless, 23 is x264's default). 4:2:0
  needs an even width and height; odd sizes raise ValueError (use lossless, or crop).
  Plays everywhere (browsers included).
- lossless (`lossless=True`): libx264rgb, rgb24, qp 0: H.264 "High 4:4:4 Predictive" on
  the RGB planes themselves, with no colour conversion, so the frames decode back bit
  for bit (any size). FFmpeg-based decoders (PyAV, torchcodec, decord) read it; browsers
  and most hardware players do not.

The bytes are deterministic for the same frames, settings, `threads`, library versions
and CPU features (the MP4 muxer writes no timestamps). A different `threads` changes how
x264 splits its work, so it gives different (equally valid) bytes; the default is one
thread, as one Ray CPU gives. x264's AVX-512 code is not deterministic: with the same
frames it gave other bytes whenever the process's heap held other data (measured
2026-12-05, x264 165 in PyAV 18's FFmpeg 8, on a CPU with AVX-512: 7 variants in 25
encodes of a 17-frame 832x480 clip, 15 in 40 at 160x96, pixels up to 11 levels apart;
none with `mbtree=0`, `asm=0` or AVX-512 left out, so its macroblock-tree path reads
memory it did not write). On such CPUs x264 is given every feature but AVX-512
(x264_cpu): measured as fast (0.26 s for that clip either way) and deterministic.

Hugging Face features: the column is declared as a plain struct (HF_FEATURE), not as
`datasets.Video`. datasets 5.x's Video decodes only through torchcodec, which needs a
system FFmpeg (libavutil.so.56-61) that PyAV's wheel does not provide; with Video
declared, every `ds[i]` raises on a machine without it. With the struct, `load_dataset`
gives {"bytes", "path"} dicts that decode_video reads; where torchcodec works, a user
opts in with `ds = ds.cast_column("reasoning_video", datasets.Video())`.
Note VIDEO == schema.IMAGE as Arrow types, so a features writer must not infer the
feature from the Arrow type alone (it would declare the MP4 an Image).
"""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import numpy as np
import pyarrow as pa

# the column's Arrow type: same struct as the image columns (and as HF datasets' Video feature)
VIDEO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

# the column's `huggingface` features entry: bytes + path, decoded by us (see the module docstring)
HF_FEATURE = {"bytes": {"dtype": "binary", "_type": "Value"}, "path": {"dtype": "string", "_type": "Value"}}

LOSSY_CODEC = "libx264"
LOSSLESS_CODEC = "libx264rgb"
# the RGB -> YUV matrix of each colour convention (limited range both)
COLOURS = {"bt709": lambda cs: cs.ITU709, "bt601-untagged": lambda cs: cs.ITU601}
# AVCOL_SPC / AVCOL_PRI / AVCOL_TRC_BT709 = 1, AVCOL_RANGE_MPEG = 1
_BT709 = 1
_RANGE_MPEG = 1


# x264's names of the features every x86 CPU with AVX-512 also has: what it is given there instead of its own
# detection, which adds AVX-512 (see the module docstring); never where AVX-512 is absent, since x264 uses what
# it is given without checking the CPU has it
_BELOW_AVX512 = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2,LZCNT,AVX,FMA3,BMI1,BMI2,AVX2,Cache64"


@functools.cache
def x264_cpu() -> dict[str, str]:
    """The x264 options that keep its output deterministic on this CPU: {} unless it has AVX-512."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:  # not Linux: no x86 CPU with AVX-512 to guard against, as far as we run
        return {}
    return {"x264-params": f"asm={_BELOW_AVX512}"} if "avx512f" in flags else {}


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array (F, H, W, 3) uint8, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (F, H, W, 3), got {frames.shape}")
    if 0 in frames.shape[:3]:
        raise ValueError(f"frames must hold at least one frame of at least 1x1, got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def encode_video(frames: np.ndarray, *, crf: int = 23, lossless: bool = False, fps: int = 8,
                 preset: str = "medium", threads: int = 1, codec: str = LOSSY_CODEC, gop: int | None = None,
                 colour: str = "bt709") -> bytes:
    """(F, H, W, 3) uint8 RGB frames to the bytes of one MP4: H.264 (see the module docstring), or another
    4:2:0 codec (LeRobot's `libsvtav1`, whose presets are numbers: `preset` then applies to x264 only);
    `gop`: frames between key frames (LeRobot's 2 keeps random access cheap). `colour`: "bt709" converts
    with BT.709 and tags the stream so; "bt601-untagged" is what lerobot writes (PyAV's default conversion,
    no tags) and what its decoder, and any FFmpeg reader of an untagged stream, assumes."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    frames = _check_frames(frames)
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    if int(fps) < 1:
        raise ValueError(f"fps must be a positive integer, got {fps}")
    _, height, width, _ = frames.shape
    if not lossless and (height % 2 or width % 2):
        raise ValueError(f"lossy H.264 (yuv420p) needs an even width and height, got {width}x{height}; "
                         "crop or pad the frames, or use lossless=True (RGB, any size)")

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream(LOSSLESS_CODEC if lossless else codec, rate=int(fps))
        stream.width, stream.height = width, height
        stream.time_base = Fraction(1, int(fps))
        ctx = stream.codec_context
        ctx.thread_count = int(threads)
        if lossless:
            stream.pix_fmt = "rgb24"
            stream.options = {"qp": "0", "preset": preset, **x264_cpu()}
        else:
            stream.pix_fmt = "yuv420p"
            if colour == "bt709":
                ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
                ctx.color_range = _RANGE_MPEG
            x264 = {"preset": preset, **x264_cpu()} if codec == LOSSY_CODEC else {}
            stream.options = {"crf": str(int(crf)), **x264, **({"g": str(int(gop))} if gop else {})}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if not lossless:
                frame = frame.reformat(format="yuv420p", dst_colorspace=COLOURS[colour](Colorspace),
                                       dst_color_range=ColorRange.MPEG)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def decode_video(data: bytes, colour: str | None = None) -> np.ndarray:
    """Bytes written by encode_video (or any video PyAV reads) back to (F, H, W, 3) uint8 RGB: by the
    stream's colour tags, or as `colour` says whatever the tags (lerobot's reader: "bt601-untagged")."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    def rgb(frame):
        if colour is None:
            return frame.to_ndarray(format="rgb24")
        return frame.reformat(format="rgb24", src_colorspace=COLOURS[colour](Colorspace),
                              src_color_range=ColorRange.MPEG).to_ndarray()

    with av.open(io.BytesIO(data)) as container:
        frames = [rgb(f) for f in container.decode(video=0)]
    if not frames:
        raise ValueError("the video holds no frames")
    return np.stack(frames)


def copy_packets(path: str, start_s: float, end_s: float, frames: int) -> bytes | None:
    """The video stream's packets of [start_s, end_s) in a new MP4 starting at time 0, without decoding or
    encoding: the frames decode exactly as the source's do. None where that cannot be done: the range does
    not start at a key frame (a decoder would need packets before it), or it does not hold `frames` frames."""
    import av

    with av.open(path) as src:
        stream = src.streams.video[0]
        tb = stream.time_base
        # half a frame of slack: stored timestamps are rounded to the stream's time base
        slack = 0.5 / float(stream.average_rate or stream.guessed_rate or 30)
        packets = [p for p in src.demux(stream) if p.pts is not None and p.size
                   and start_s - slack <= float(p.pts * tb) < end_s - slack]
        if len(packets) != frames or not packets[0].is_keyframe:
            return None
        first_pts, first_dts = packets[0].pts, packets[0].dts if packets[0].dts is not None else packets[0].pts
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            copy = out.add_stream_from_template(stream, opaque=True)  # no codec: the packets pass as they are
            for p in packets:
                p.pts -= first_pts
                if p.dts is not None:
                    p.dts -= first_dts
                p.stream = copy
                out.mux(p)
    return buf.getvalue()
