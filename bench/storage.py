"""Trajectory storage cost: bytes and encode/decode seconds per row for image frames vs one MP4.

One row's reasoning trajectory is 29 frames at 832x480 (ChronoEdit's default). The clip is a
procedural driving scene, not noise: sky gradient with soft clouds, a perspective road with
textured asphalt and dashed lane markings that move towards the camera, textured buildings on
both sides, a slow camera pan, a car fading in over the trajectory (as an edit would insert it),
a little lens blur and sensor noise. Everything runs on ONE thread (PIL, libwebp, zlib, x264).

Run: python bench/storage.py [--quick | --smoke]    (quick: 1 timed repetition instead of 5, same size;
smoke: 1 repetition of 3 frames at 160x96)
Prints a table and writes bench/results/storage.json.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"


import common  # noqa: E402  (puts this checkout's package first on the path)

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import features  # noqa: E402

from chronoedit_sim.dataset.encode import decode_rgb, encode_image  # noqa: E402
from chronoedit_sim.dataset.video import decode_video, encode_video  # noqa: E402

cv2.setNumThreads(1)

FRAMES, HEIGHT, WIDTH = 29, 480, 832


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [0, 1): random values on a coarse grid, upsampled and blurred."""
    coarse = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    up = cv2.resize(coarse, ((width // cell + 2) * cell, (height // cell + 2) * cell), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(up, (0, 0), cell / 3)[:height, :width]


def driving_scene(frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """(frames, height, width, 3) uint8 RGB: a street seen from a car, the camera panning slowly right."""
    rng = np.random.default_rng(seed)
    pan = 3  # pixels per frame
    cw = width + pan * frames  # the canvas the camera pans over
    horizon = int(height * 0.42)
    vanish_x = cw // 2
    yy, xx = np.mgrid[0:height, 0:cw].astype(np.float32)

    # sky: blue at the top to pale haze at the horizon, with soft clouds
    t = np.clip(yy / horizon, 0, 1)[..., None]
    sky = (1 - t) * np.array([70, 120, 200], np.float32) + t * np.array([190, 210, 230], np.float32)
    clouds = np.clip(_smooth_noise(rng, height, cw, 60) * 1.6 - 0.8, 0, 1)[..., None] * (1 - t)
    canvas = sky * (1 - clouds) + 245 * clouds

    # ground: grass/pavement then asphalt with fine texture
    ground = np.array([105, 110, 95], np.float32) + 25 * (_smooth_noise(rng, height, cw, 8)[..., None] - 0.5)
    canvas = np.where((yy >= horizon)[..., None], ground, canvas)

    # buildings on both sides: boxes of varied colour with window grids
    for side in (-1, 1):
        x = vanish_x + side * 60
        while 0 < x < cw:
            bw = int(rng.integers(70, 160))
            bh = int(rng.integers(60, horizon + 40))
            x0, x1 = (x, x + bw) if side > 0 else (x - bw, x)
            x0, x1 = max(x0, 0), min(x1, cw)
            top, bottom = horizon + 25 - bh, horizon + 25
            colour = rng.integers(90, 200, 3).astype(np.float32)
            block = canvas[max(top, 0):bottom, x0:x1]
            block[:] = colour + 12 * (_smooth_noise(rng, block.shape[0], block.shape[1], 4)[..., None] - 0.5)
            wy, wx = np.mgrid[0:block.shape[0], 0:block.shape[1]]
            windows = ((wy % 18) > 6) & ((wx % 16) > 5) & (wy > 6) & (wx > 4) & (wx < block.shape[1] - 4)
            block[windows] = block[windows] * 0.45 + np.array([60, 70, 90]) * 0.55
            x += side * (bw + int(rng.integers(4, 20)))

    # the road: a trapezoid to the vanishing point, with textured asphalt
    near_half = cw * 0.55
    depth = np.clip((yy - horizon) / (height - horizon), 0, 1)  # 0 at horizon, 1 at the bottom
    road = (yy > horizon) & (np.abs(xx - vanish_x) < 8 + depth * near_half)
    asphalt = 80 + 14 * (_smooth_noise(rng, height, cw, 3) - 0.5) + 6 * (_smooth_noise(rng, height, cw, 30) - 0.5)
    canvas[road] = np.stack([asphalt, asphalt, asphalt + 4], -1)[road]
    base = canvas

    # a car (body, windows, wheels) to fade in along the trajectory, as an edit would insert it
    car = np.zeros((height, cw, 3), np.float32)
    car_mask = np.zeros((height, cw), np.float32)
    cx, cy = vanish_x + 110, horizon + 120
    cv2.rectangle(car, (cx, cy), (cx + 170, cy + 70), (170, 30, 35), -1, cv2.LINE_AA)
    cv2.rectangle(car, (cx + 25, cy - 40), (cx + 140, cy + 5), (150, 25, 30), -1, cv2.LINE_AA)
    cv2.rectangle(car, (cx + 35, cy - 33), (cx + 130, cy), (60, 80, 100), -1, cv2.LINE_AA)
    for wx in (cx + 35, cx + 135):
        cv2.circle(car, (wx, cy + 70), 18, (25, 25, 25), -1, cv2.LINE_AA)
    for mask_fill in ((cx, cy, cx + 170, cy + 70), (cx + 25, cy - 40, cx + 140, cy + 5)):
        cv2.rectangle(car_mask, mask_fill[:2], mask_fill[2:], 1.0, -1, cv2.LINE_AA)
    for wx in (cx + 35, cx + 135):
        cv2.circle(car_mask, (wx, cy + 70), 18, 1.0, -1, cv2.LINE_AA)
    car_mask = car_mask[..., None]

    out = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        img = base.copy()
        # dashed centre and edge lines, the dashes moving towards the camera
        lines = np.zeros((height, cw), np.float32)
        for offset in (-0.6, 0.0, 0.6):
            for k in range(14):
                z0 = ((k + f * 0.12) % 14) / 14  # 0 far .. 1 near, along the road
                z1 = z0 + 0.035
                y0, y1 = horizon + (height - horizon) * z0 ** 2, horizon + (height - horizon) * z1 ** 2
                if y1 - y0 < 0.5:
                    continue
                half = 1 + 6 * z1
                xc0, xc1 = vanish_x + offset * near_half * z0 ** 2, vanish_x + offset * near_half * z1 ** 2
                poly = np.array([[xc0 - half * 0.6, y0], [xc0 + half * 0.6, y0], [xc1 + half, y1], [xc1 - half, y1]])
                cv2.fillPoly(lines, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        img = img * (1 - lines[..., None]) + 225 * lines[..., None]
        alpha = f / (frames - 1)
        img = img * (1 - alpha * car_mask) + car * alpha * car_mask
        img = cv2.GaussianBlur(img, (0, 0), 0.7)  # lens
        view = img[:, f * pan:f * pan + width]
        out[f] = np.clip(view + rng.normal(0, 2.0, view.shape), 0, 255).round().astype(np.uint8)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def image_codec(fmt: str, quality: int = 90):
    def encode(frames: np.ndarray) -> list[bytes]:
        return [encode_image(f, fmt, quality) for f in frames]

    def decode(blobs: list[bytes]) -> np.ndarray:
        return np.stack([decode_rgb(b) for b in blobs])

    return encode, decode


def video_codec(**kwargs):
    return (lambda frames: [encode_video(frames, threads=1, **kwargs)]), (lambda blobs: decode_video(blobs[0]))


FORMATS = {
    "webp q90 (frames)": image_codec("webp", 90),
    "png (frames)": image_codec("png"),
    "jpeg q90 (frames)": image_codec("jpeg", 90),
    "video h264 crf23": video_codec(crf=23),
    "video h264 crf18": video_codec(crf=18),
    "video h264rgb lossless": video_codec(lossless=True),
    # not a default: how much a faster x264 preset saves
    "video h264 crf23 veryfast": video_codec(crf=23, preset="veryfast"),
}


def yuv420_ceiling(frames: np.ndarray) -> float:
    """PSNR of the RGB -> yuv420p (BT.709) -> RGB conversion alone: the best any 4:2:0 stream can reach."""
    from av.video.reformatter import ColorRange, Colorspace

    back = [av.VideoFrame.from_ndarray(f, format="rgb24")
            .reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
            .to_ndarray(format="rgb24") for f in frames]
    return psnr(np.stack(back), frames)


def timed(fn, arg, reps: int):
    """The result, and the median wall and process-CPU seconds (CPU time is what a busy shared machine
    distorts least: it does not count the time other processes held the core)."""
    wall, cpu, result = [], [], None
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn(arg)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return result, statistics.median(wall), statistics.median(cpu)


def machine() -> dict:
    x264 = re.search(rb"x264 - core (\d+)", encode_video(np.zeros((1, 16, 16, 3), np.uint8)))
    return {
        **common.machine(),
        "threads_used": 1,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "x264_core": x264.group(1).decode() if x264 else None,
        "pillow": PIL.__version__,
        "libwebp": features.version("webp"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = common.parse_args(parser, quick="1 timed repetition instead of 5 (same clip size)")
    reps = 1 if args.quick or args.smoke else 5

    info = machine()
    frames = driving_scene(3, 96, 160) if args.smoke else driving_scene()
    raw = frames.nbytes
    print(f"{len(frames)} frames {frames.shape[2]}x{frames.shape[1]} RGB ({raw / 1e6:.1f} MB raw per row), 1 thread, "
          f"median of {reps}; {info['cpu_model']}, load {info['loadavg_1m_at_start']:.2f}")
    rows = []
    for name, (encode, decode) in FORMATS.items():
        encode(frames[:2])  # warm the codec libraries
        blobs, enc_s, enc_cpu = timed(encode, frames, reps)
        back, dec_s, dec_cpu = timed(decode, blobs, reps)
        assert back.shape == frames.shape, (name, back.shape)
        size = sum(len(b) for b in blobs)
        rows.append({"format": name, "bytes_per_row": size, "encode_s_per_row": round(enc_s, 4),
                     "decode_s_per_row": round(dec_s, 4), "encode_cpu_s_per_row": round(enc_cpu, 4),
                     "decode_cpu_s_per_row": round(dec_cpu, 4), "psnr_db": round(psnr(back, frames), 2),  # inf: exact
                     "ratio_vs_raw": round(raw / size, 1)})

    ceiling = round(yuv420_ceiling(frames), 2)
    header = (f"{'format':<26}{'bytes/row':>12}{'vs raw':>8}{'encode s':>10}{'(cpu)':>7}{'decode s':>10}{'(cpu)':>7}"
              f"{'PSNR dB':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['format']:<26}{r['bytes_per_row']:>12,}{r['ratio_vs_raw']:>7}x{r['encode_s_per_row']:>10.3f}"
              f"{r['encode_cpu_s_per_row']:>7.2f}{r['decode_s_per_row']:>10.3f}{r['decode_cpu_s_per_row']:>7.2f}"
              f"{r['psnr_db']:>9.2f}")
    print(f"(wall and CPU seconds; load average {os.getloadavg()[0]:.2f} at the end)")
    print(f"the yuv420p conversion alone gives {ceiling} dB on this clip (webp, jpeg q90 and lossy video are all 4:2:0)")
    info["loadavg_1m_at_end"] = os.getloadavg()[0]
    doc = {"frames": FRAMES, "height": HEIGHT, "width": WIDTH, "raw_bytes_per_row": raw, "repetitions": reps,
           "timing": "median seconds for the whole row (all frames), one thread: wall (*_s_per_row) and "
                     "process CPU (*_cpu_s_per_row)", "machine": info,
           "yuv420p_conversion_psnr_db": ceiling,
           "results": rows}
    # strict JSON has no inf: an exact (lossless) PSNR is written as the string "inf"
    for r in rows:
        r["psnr_db"] = "inf" if r["psnr_db"] == float("inf") else r["psnr_db"]
    common.write_result("storage", doc)


if __name__ == "__main__":
    main()
