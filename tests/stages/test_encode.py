"""The encode stage: raw frames from the edit stage to stored bytes, without Ray."""

from __future__ import annotations

import numpy as np

from chronoedit_sim.config import load_config
from chronoedit_sim.dataset.encode import decode_rgb
from chronoedit_sim.dataset.schema import base_row
from chronoedit_sim.dataset.video import decode_video
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.stages.encode import EncodeStage

JOB = {"job_id": "j", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": 0, "source_id": "f.png",
       "source_uri": "/f.png", "prompt": "p", "negative_prompt": "", "target_caption": "t", "source_caption": "c",
       "labels": {}, "choices": {}}


def encode(overrides, frames, previews=(), reasoning=True):
    cfg = load_config(["model=tiny", "model.path=/m", *overrides])
    stage = EncodeStage({"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)}, Resources())
    row = base_row(JOB, "r")
    row.update(_edited_rgb=frames[-1], _reasoning_rgb=frames if reasoning else None, _previews=list(previews), timings_ms={"read_ms": 1.0})
    (out,) = stage.process_batch([row])
    return out


def clip(n=9, h=96, w=160):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x + 4 * i) % 256, y * 2, np.full_like(x, 20 * i)], -1) for i in range(n)]).astype(np.uint8)


def test_frames_storage_encodes_every_frame_and_keeps_the_raw_frames_for_scoring():
    frames = clip()
    out = encode(["trajectory.image_format=png", "trajectory.edited_format=png"], frames, [(1, 0.5, frames[3])])
    assert np.array_equal(decode_rgb(out["edited_image"]["bytes"]), frames[-1])  # png: lossless
    assert [f["path"] for f in out["reasoning_frames"]] == [f"r{i:03d}.png" for i in range(9)]
    assert np.array_equal(decode_rgb(out["reasoning_frames"][4]["bytes"]), frames[4])
    assert [p["path"] for p in out["previews"]] == ["p001.png"]
    assert out["reasoning_video"] is None and out["_reasoning_rgb"] is frames  # the score stage reads these
    assert out["timings_ms"]["encode_ms"] > 0 and out["timings_ms"]["read_ms"] == 1.0


def test_max_side_shrinks_stored_frames_but_not_the_edit():
    out = encode(["trajectory.max_side=80", "trajectory.image_format=webp"], clip())
    assert decode_rgb(out["reasoning_frames"][0]["bytes"]).shape == (48, 80, 3)
    assert decode_rgb(out["edited_image"]["bytes"]).shape == (96, 160, 3)


def test_video_storage_is_one_mp4_lossless_when_asked():
    frames = clip()
    lossy = encode(["trajectory.storage=video"], frames)
    assert lossy["reasoning_frames"] == [] and lossy["reasoning_video"]["path"] == "reasoning.mp4"
    assert decode_video(lossy["reasoning_video"]["bytes"]).shape == frames.shape
    exact = encode(["trajectory.storage=video", "trajectory.video_lossless=true"], frames)
    assert np.array_equal(decode_video(exact["reasoning_video"]["bytes"]), frames)
    small = encode(["trajectory.storage=video", "trajectory.max_side=80"], frames)
    assert decode_video(small["reasoning_video"]["bytes"]).shape == (9, 48, 80, 3)


def test_a_row_without_reasoning_stores_only_the_edit():
    for storage in ("frames", "video"):
        out = encode([f"trajectory.storage={storage}"], clip(n=1), reasoning=False)
        assert out["reasoning_frames"] == [] and out["reasoning_video"] is None and out["edited_image"]["bytes"]


def test_thumbnails_of_source_edit_and_trajectory_for_the_report():
    frames = clip()
    cfg = load_config(["model=tiny", "model.path=/m"])
    stage = EncodeStage({"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)}, Resources(),
                        thumbnail_side=40)
    row = base_row(JOB, "r")
    row.update(_source_rgb=frames[0], _edited_rgb=frames[-1], _reasoning_rgb=frames, timings_ms={})
    thumbs = stage.process_batch([row])[0]["thumbnails"]
    assert decode_rgb(thumbs["source"]["bytes"]).shape == decode_rgb(thumbs["edited"]["bytes"]).shape == (24, 40, 3)
    # the trajectory is one strip of equal tiles, as many as the frames
    assert thumbs["trajectory_frames"] == 9 and decode_rgb(thumbs["trajectory"]["bytes"]).shape == (24, 9 * 40, 3)
    # off (report.thumbnail_side=0): no thumbnails
    assert encode([], frames)["thumbnails"] is None


def test_a_webp_strip_wider_than_webp_allows_gets_smaller_tiles():
    from chronoedit_sim.dataset.encode import WEBP_MAX_SIDE, frame_strip

    frames = clip(n=29, h=48, w=800)  # 29 x 800 px: above webp's 16383
    strip = decode_rgb(frame_strip(frames, 0, "webp"))
    assert strip.shape[1] <= WEBP_MAX_SIDE and strip.shape[1] % 29 == 0
    assert decode_rgb(frame_strip(frames[:3], 0)).shape == (48, 3 * 800, 3)  # png keeps the size
