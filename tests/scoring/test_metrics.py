"""Tests for chronoedit_sim.scoring.metrics: hand-computed values where possible."""

import math

import cv2
import numpy as np
import pytest

from chronoedit_sim.scoring.metrics import (
    PSNR_CAP,
    cosine,
    directional_similarity,
    flow_warp_error,
    psnr,
    resize_to,
    ssim,
    trajectory_scores,
)


def _textured(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    # smooth random texture: enough gradient everywhere for optical flow to lock on
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (5, 5), 1.0)


def _square(x: int) -> np.ndarray:
    f = np.full((64, 64, 3), 10, np.uint8)
    f[24:40, x : x + 16] = 240
    return f


def _unit(deg: float, r: float = 1.0) -> np.ndarray:
    t = math.radians(deg)
    return np.array([r * math.cos(t), r * math.sin(t)])


# ---- cosine -----------------------------------------------------------------


def test_cosine_hand_values():
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == 0.0
    assert cosine(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0, abs=1e-12)
    assert cosine(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == pytest.approx(-1.0, abs=1e-12)
    assert cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2), abs=1e-12)


def test_cosine_zero_vector_is_zero_not_nan():
    z = np.zeros(4)
    assert cosine(z, np.ones(4)) == 0.0
    assert cosine(np.ones(4), z) == 0.0
    assert cosine(z, z) == 0.0


def test_cosine_range_on_random_vectors():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = rng.normal(size=16).astype(np.float32), rng.normal(size=16).astype(np.float32)
        c = cosine(a, b)
        assert isinstance(c, float)
        assert -1.0 <= c <= 1.0
    # nearly parallel float32 vectors must not drift past 1
    v = rng.normal(size=512).astype(np.float32)
    assert cosine(v, v) <= 1.0


# ---- directional_similarity --------------------------------------------------


def test_directional_similarity_aligned_and_flipped():
    src_img, edit_img = np.array([1.0, 0, 0]), np.array([1.0, 1, 0])
    src_txt = np.array([0.0, 0, 1])
    score, reason = directional_similarity(src_img, edit_img, src_txt, np.array([0.0, 1, 1]))
    assert score == pytest.approx(1.0, abs=1e-12) and reason is None
    score, reason = directional_similarity(src_img, edit_img, src_txt, np.array([0.0, -1, 1]))
    assert score == pytest.approx(-1.0, abs=1e-12) and reason is None


def test_directional_similarity_partial_alignment():
    # image moves along (0,1,1), text along (0,1,0): cos 45 deg
    score, reason = directional_similarity(
        np.array([1.0, 0, 0]), np.array([1.0, 1, 1]), np.array([0.0, 0, 1]), np.array([0.0, 1, 1])
    )
    assert score == pytest.approx(1 / math.sqrt(2), abs=1e-12) and reason is None


def test_directional_similarity_zero_image_change():
    e = np.array([0.6, 0.8, 0.0])
    score, reason = directional_similarity(e, e.copy(), np.array([0.0, 0, 1]), np.array([0.0, 1, 1]))
    assert (score, reason) == (0.0, "clip_direction undefined: zero image change")


def test_directional_similarity_identical_captions():
    t = np.array([0.0, 0.6, 0.8])
    score, reason = directional_similarity(np.array([1.0, 0, 0]), np.array([1.0, 1, 0]), t, t.copy())
    assert (score, reason) == (0.0, "clip_direction undefined: identical captions")


def test_directional_similarity_threshold_is_relative():
    # unnormalised embeddings of norm ~1e3 differing by 1e-8: noise, not an edit
    big = np.array([1000.0, 0.0, 0.0])
    score, reason = directional_similarity(big, big + 1e-8, np.array([0.0, 0, 1]), np.array([0.0, 1, 1]))
    assert (score, reason) == (0.0, "clip_direction undefined: zero image change")
    # ... while a small but real change on normalised embeddings is scored
    score, reason = directional_similarity(
        np.array([1.0, 0, 0]), np.array([1.0, 1e-3, 0]), np.array([0.0, 0, 1]), np.array([0.0, 1, 1])
    )
    assert reason is None and score == pytest.approx(1.0, abs=1e-9)


# ---- trajectory_scores --------------------------------------------------------


def test_trajectory_rotating_towards_edit_is_monotonic():
    edited = _unit(90)
    # norms vary on purpose: only directions matter
    frames = np.stack([_unit(0), _unit(30, 2.0), _unit(60, 0.5), _unit(90, 3.0)])
    s = trajectory_scores(frames, edited)
    assert s["trajectory_monotonic"] == 1.0
    assert s["trajectory_min_adjacent"] == pytest.approx(math.sqrt(3) / 2, abs=1e-12)


def test_trajectory_with_backward_step():
    edited = _unit(90)
    # angles 0, 45, 30, 90: similarity to edited 0, .707, .5, 1 -> steps up, down, up
    frames = np.stack([_unit(0), _unit(45), _unit(30), _unit(90)])
    s = trajectory_scores(frames, edited)
    assert s["trajectory_monotonic"] == pytest.approx(2 / 3, abs=1e-12)
    # adjacent angles 45, 15, 60 -> min cosine = cos 60 = 0.5
    assert s["trajectory_min_adjacent"] == pytest.approx(0.5, abs=1e-12)


def test_trajectory_plateau_counts_as_progress():
    frames = np.stack([_unit(0), _unit(0), _unit(90)])
    s = trajectory_scores(frames, _unit(90))
    assert s == {"trajectory_min_adjacent": pytest.approx(0.0, abs=1e-12), "trajectory_monotonic": 1.0}


def test_trajectory_short_inputs():
    for n in (0, 1):
        s = trajectory_scores(np.ones((n, 8)), np.ones(8))
        assert s == {"trajectory_min_adjacent": 1.0, "trajectory_monotonic": 1.0}


# ---- ssim ----------------------------------------------------------------------


def test_ssim_identical_is_exactly_one():
    t = _textured()
    assert ssim(t, t.copy()) == 1.0


def test_ssim_constant_images_hand_value():
    # constant images: variances and covariance vanish, so SSIM reduces to the
    # luminance term (2*mx*my + C1) / (mx^2 + my^2 + C1)
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_decreases_with_distortion():
    t = _textured()
    noise = np.random.default_rng(0).normal(size=t.shape)
    mild = np.clip(t + 10 * noise, 0, 255).astype(np.uint8)
    strong = np.clip(t + 25 * noise, 0, 255).astype(np.uint8)
    s_mild, s_strong = ssim(t, mild), ssim(t, strong)
    assert 0.0 < s_strong < s_mild < 1.0
    brighter = np.clip(t.astype(int) + 40, 0, 255).astype(np.uint8)
    assert 0.0 < ssim(t, brighter) < 1.0


def test_ssim_shape_mismatch():
    with pytest.raises(ValueError) as exc:
        ssim(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 48, 3), np.uint8))
    assert "(32, 32, 3)" in str(exc.value) and "(32, 48, 3)" in str(exc.value)


# ---- psnr ----------------------------------------------------------------------


def test_psnr_identical_is_finite_cap():
    t = _textured()
    v = psnr(t, t.copy())
    assert v == PSNR_CAP and math.isfinite(v)


def test_psnr_uniform_error():
    # every pixel/channel off by 10 gray levels: MSE = 100
    a = (_textured().astype(int) * 200 // 255).astype(np.uint8)  # room to add 10 without clipping
    b = (a.astype(int) + 10).astype(np.uint8)
    expected = 10 * math.log10(255**2 / 100)
    assert expected == pytest.approx(28.1308036, abs=1e-6)
    assert psnr(a, b) == pytest.approx(expected, abs=1e-6)
    assert psnr(b, a) == pytest.approx(expected, abs=1e-6)  # no uint8 wrap-around


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))


# ---- flow_warp_error -------------------------------------------------------------
# Measured (OpenCV 4.x): static ~8e-5, 1 px/frame translation ~1.3e-3,
# sliding square ~1.6e-3, square teleporting across the frame ~8e-2.


def test_flow_warp_error_short_trajectory_is_zero():
    t = _textured()
    assert flow_warp_error([]) == 0.0
    assert flow_warp_error([t]) == 0.0


def test_flow_warp_error_static():
    t = _textured()
    assert flow_warp_error(np.stack([t] * 4)) < 1e-3


def test_flow_warp_error_smooth_vs_teleport():
    wide = _textured(64, 96)
    translating = [wide[:, 16 - i : 16 - i + 64] for i in range(4)]  # 1 px per frame
    smooth = flow_warp_error(translating)
    # flow must explain the motion: far below the raw frame difference
    raw = np.mean([np.abs(translating[i].astype(float) - translating[i + 1]).mean() / 255 for i in range(3)])
    assert smooth < 0.02 and smooth < raw / 10

    sliding = flow_warp_error([_square(x) for x in range(4)])
    teleport = flow_warp_error([_square(0), _square(48)])
    assert sliding < 0.01
    assert teleport > 0.04
    assert teleport > 5 * max(smooth, sliding)
    # a single jump inside an otherwise static trajectory still stands out
    assert flow_warp_error([_square(0), _square(0), _square(48), _square(48)]) > 5 * sliding


def test_flow_warp_error_max_side_shrinks_before_the_flow_and_keeps_the_verdict():
    big_smooth = [cv2.resize(_square(x), (256, 256), interpolation=cv2.INTER_NEAREST) for x in range(4)]
    big_jump = [cv2.resize(_square(x), (256, 256), interpolation=cv2.INTER_NEAREST) for x in (0, 48)]
    small = flow_warp_error(big_smooth, max_side=64)
    # at max_side=64 the 256 px frames are measured exactly as their 64 px versions would be
    assert small == flow_warp_error([resize_to(f, (64, 64)) for f in big_smooth])
    assert small != flow_warp_error(big_smooth)  # the full-size measurement differs
    assert flow_warp_error(big_jump, max_side=64) > 5 * small
    assert flow_warp_error(big_smooth, max_side=512) == flow_warp_error(big_smooth)  # never enlarges
    with pytest.raises(ValueError, match="flow_warp_error: image shapes differ"):
        flow_warp_error([big_smooth[0], big_smooth[1][:100]], max_side=64)


# ---- resize_to ---------------------------------------------------------------------


def test_resize_to_noop_returns_same_object():
    t = _textured()
    assert resize_to(t, (64, 64)) is t


def test_resize_to_shapes_and_area_on_shrink():
    checker = np.indices((9, 9)).sum(axis=0) % 2 * 255  # 1-px checkerboard
    img = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    small = resize_to(img, (3, 3))
    assert small.shape == (3, 3, 3)
    # INTER_AREA averages each 3x3 block (4 or 5 white of 9 -> 113/142);
    # INTER_LINEAR would sample block centres and return pure 0/255
    assert set(np.unique(small).tolist()) == {113, 142}
    big = resize_to(img, (16, 12))
    assert big.shape == (16, 12, 3) and big.dtype == np.uint8
