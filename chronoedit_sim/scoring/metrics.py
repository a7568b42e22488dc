"""Consistency metrics for scoring an edit: embedding cosines, SSIM, PSNR, flow-warp error.

Pure numpy/OpenCV; embeddings come in already computed, so nothing here loads a model.
Every score is a finite float: degenerate inputs map to defined values, never NaN/inf,
because scores end up in Parquet columns, quantiles and filters.
"""

from __future__ import annotations

import cv2
import numpy as np

# Identical images give inf PSNR; a finite cap keeps float32 columns and quantiles finite.
PSNR_CAP: float = 100.0

_COS_EPS = 1e-12  # below this norm a vector has no direction
_DIR_REL_EPS = 1e-6  # a difference this small relative to the embeddings is numerical noise

REASON_ZERO_IMAGE_CHANGE = "clip_direction undefined: zero image change"
REASON_IDENTICAL_CAPTIONS = "clip_direction undefined: identical captions"


def _vec(x: np.ndarray) -> np.ndarray:
    # float64 so that cosines of nearly parallel float16/32 embeddings don't drift past 1
    return np.asarray(x, dtype=np.float64).reshape(-1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two 1-D vectors; 0.0 if either has ~zero norm."""
    a, b = _vec(a), _vec(b)
    if a.shape != b.shape:
        raise ValueError(f"cosine: vector shapes differ: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < _COS_EPS or nb < _COS_EPS:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def _is_zero_change(x: np.ndarray, y: np.ndarray) -> bool:
    # relative test: embeddings may or may not be L2-normalised, so an absolute
    # threshold would be wrong for one of the two conventions
    scale = max(np.linalg.norm(x), np.linalg.norm(y))
    return bool(np.linalg.norm(y - x) <= _DIR_REL_EPS * scale)


def directional_similarity(
    src_img: np.ndarray,
    edit_img: np.ndarray,
    src_txt: np.ndarray,
    tgt_txt: np.ndarray,
) -> tuple[float, str | None]:
    """InstructPix2Pix directional CLIP score: cos(edit_img - src_img, tgt_txt - src_txt).

    Returns (score, None), or (0.0, reason) when a direction is undefined.
    """
    si, ei, st, tt = _vec(src_img), _vec(edit_img), _vec(src_txt), _vec(tgt_txt)
    if _is_zero_change(si, ei):
        return 0.0, REASON_ZERO_IMAGE_CHANGE
    if _is_zero_change(st, tt):
        return 0.0, REASON_IDENTICAL_CAPTIONS
    return cosine(ei - si, tt - st), None


def trajectory_scores(frame_embs: np.ndarray, edited_emb: np.ndarray) -> dict[str, float]:
    """Smoothness and progress of a reasoning trajectory in embedding space.

    trajectory_min_adjacent: min cosine between consecutive frames (1.0 if N < 2).
    trajectory_monotonic: fraction of steps i->i+1 whose similarity to the edited
    embedding does not drop (1e-6 tolerance; 1.0 if N < 2).
    """
    embs = np.asarray(frame_embs, dtype=np.float64)
    if embs.ndim != 2:
        raise ValueError(f"trajectory_scores: frame_embs must be (N, D), got {embs.shape}")
    n = embs.shape[0]
    if n < 2:
        return {"trajectory_min_adjacent": 1.0, "trajectory_monotonic": 1.0}
    adjacent = [cosine(embs[i], embs[i + 1]) for i in range(n - 1)]
    to_edit = [cosine(e, edited_emb) for e in embs]
    # tolerance: a plateau (equal similarity) counts as progress, not regression
    steps_ok = sum(to_edit[i + 1] >= to_edit[i] - 1e-6 for i in range(n - 1))
    return {
        "trajectory_min_adjacent": float(min(adjacent)),
        "trajectory_monotonic": float(steps_ok) / (n - 1),
    }


def _check_same_shape(name: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: image shapes differ: {a.shape} vs {b.shape}")


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an HxWx3 RGB or HxW gray image, got shape {img.shape}")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) of the luminance of two uint8 RGB images."""
    a, b = np.asarray(a), np.asarray(b)
    _check_same_shape("ssim", a, b)
    x = _gray(a).astype(np.float64)
    y = _gray(b).astype(np.float64)
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = blur(x * x) - mu_xx
    var_y = blur(y * y) - mu_yy
    cov = blur(x * y) - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    # float cancellation can push a hair past 1; SSIM is bounded by definition
    return float(np.clip(ssim_map.mean(), -1.0, 1.0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB for 8-bit images over all channels, capped at PSNR_CAP."""
    a, b = np.asarray(a), np.asarray(b)
    _check_same_shape("psnr", a, b)
    # float64 before subtracting: uint8 arithmetic would wrap around
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return float(min(10.0 * np.log10(255.0**2 / mse), PSNR_CAP))


def flow_warp_error(frames: list[np.ndarray] | np.ndarray, max_side: int = 0) -> float:
    """Mean photometric error after flow-warping each frame onto the next, in [0, 1].

    Near zero when consecutive frames are related by smooth motion; large when
    content appears or jumps in a way optical flow cannot explain. `max_side` > 0 first
    shrinks the frames (INTER_AREA) so their longest side is at most that: Farneback flow
    over 29 frames at 832x480 costs about 4 CPU seconds, at 256 px about a tenth of it.
    """
    frames = [np.asarray(f) for f in frames]
    if len(frames) < 2:
        return 0.0
    for i in range(len(frames) - 1):
        _check_same_shape("flow_warp_error", frames[i], frames[i + 1])
    frames = _shrink(frames, max_side)
    grid = _grid(frames[0])
    grays = [_gray(f) for f in frames]
    return float(np.mean([_warp_error(frames[i], frames[i + 1], _backward_flow(grays[i], grays[i + 1]), grid)
                          for i in range(len(frames) - 1)]))


def temporal_flicker(prev_source: np.ndarray, source: np.ndarray, prev_edit: np.ndarray, edit: np.ndarray,
                     max_side: int = 0) -> float:
    """How much more an edited sequence changes from one frame to the next than its source explains, in
    [0, 1]: the error of the previous edit warped onto this one along the source frames' optical flow, minus
    the same error of the source frames themselves, floored at 0. Near 0 when the edit moves with the scene;
    large when it flickers (a different change on every frame). Everything is compared at the edit's size."""
    size = edit.shape[:2]
    frames = _shrink([resize_to(prev_source, size), resize_to(source, size), resize_to(prev_edit, size), edit],
                     max_side)
    flow, grid = _backward_flow(_gray(frames[0]), _gray(frames[1])), _grid(frames[0])
    return max(0.0, _warp_error(frames[2], frames[3], flow, grid) - _warp_error(frames[0], frames[1], flow, grid))


def _shrink(frames: list[np.ndarray], max_side: int) -> list[np.ndarray]:
    longest = max(frames[0].shape[:2])
    if not max_side or longest <= max_side:
        return frames
    scale = max_side / longest
    size = (max(1, round(frames[0].shape[0] * scale)), max(1, round(frames[0].shape[1] * scale)))
    return [resize_to(f, size) for f in frames]


def _grid(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = frame.shape[:2]
    return tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))


def _backward_flow(prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
    # backward flow (next -> prev): for every pixel of the next frame it says where to sample the previous
    # one, which is exactly what remap needs; forward flow would leave holes
    return cv2.calcOpticalFlowFarneback(next_gray, prev_gray, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _warp_error(prev: np.ndarray, nxt: np.ndarray, flow: np.ndarray, grid) -> float:
    """Mean absolute error, in [0, 1], of `prev` warped along `flow` onto `nxt`."""
    warped = cv2.remap(prev, grid[0] + flow[..., 0], grid[1] + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(warped.astype(np.float64) - nxt.astype(np.float64)).mean() / 255.0)


def resize_to(img: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Resize to (H, W): INTER_AREA when shrinking (anti-aliased), INTER_LINEAR otherwise."""
    th, tw = int(shape_hw[0]), int(shape_hw[1])
    if th <= 0 or tw <= 0:
        raise ValueError(f"resize_to: target shape must be positive, got {shape_hw}")
    h, w = img.shape[:2]
    if (h, w) == (th, tw):
        return img
    # mixed cases (one side grows) go to INTER_LINEAR: INTER_AREA only helps when
    # every output pixel covers several input pixels
    interp = cv2.INTER_AREA if th <= h and tw <= w else cv2.INTER_LINEAR
    return cv2.resize(img, (tw, th), interpolation=interp)
