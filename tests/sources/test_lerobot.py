"""Tests for chronoedit_sim.sources.lerobot on LeRobot v3.0 datasets written into tmp_path.

The dataset mimics what lerobot writes: meta/info.json, meta/tasks.parquet (a pandas frame indexed by
the task text), meta/episodes/chunk-000/file-000.parquet, data/chunk-000/file-XXX.parquet and one MP4
per camera (and video file) holding several episodes back to back.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import CAMS, FPS, H, TASKS, TOP, W, WRIST, code, decode_frame, make_dataset

from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.decode import DecodedImage
from chronoedit_sim.sources.base import InputError
from chronoedit_sim.sources.frames import read_frames
from chronoedit_sim.sources.lerobot import is_lerobot, list_lerobot

@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds")


def cfg(root: Path, **kw) -> InputConfig:
    return replace(InputConfig(path=str(root), type="lerobot"), **kw)


def sid(cam: str, ep: int, fi: int) -> str:
    return f"{cam}/episode_{ep:06d}/frame_{fi:06d}"


def test_is_lerobot(dataset, tmp_path):
    assert is_lerobot(dataset)
    assert not is_lerobot(tmp_path / "nothing")
    (tmp_path / "other" / "meta").mkdir(parents=True)
    (tmp_path / "other" / "meta" / "info.json").write_text('{"name": "not lerobot"}')
    assert not is_lerobot(tmp_path / "other")


def test_lists_every_frame_with_positions_timestamps_meta_captions(dataset):
    refs = list_lerobot(cfg(dataset), dataset)
    expected = [(ep, cam, fi) for ep, n in ((0, 6), (1, 4)) for cam in CAMS for fi in range(n)]
    assert [r.source_id for r in refs] == [sid(cam, ep, fi) for ep, cam, fi in expected]
    for r, (ep, cam, fi) in zip(refs, expected):
        mp4 = str(dataset / f"videos/{cam}/chunk-000/file-000.mp4")
        from_ts = 0.0 if ep == 0 else 0.6  # episode 1 starts after episode 0's 6 frames in the same MP4
        assert r.path == mp4 and Path(r.path).is_absolute()
        assert r.kind == "video"
        assert r.frame_index == round((from_ts + fi / FPS) * FPS) == fi + (6 if ep else 0)
        assert r.timestamp_s == pytest.approx(fi / FPS) and r.timestamp_s == round(fi / FPS, 6)
        assert r.source_uri == f"{mp4}#t={from_ts + fi / FPS:.6f}"
        task = TASKS[ep]
        assert r.caption == task
        assert r.meta == {"episode_index": ep, "frame_index": fi, "timestamp": round(fi / FPS, 6), "task": task,
                          "camera": cam, "dataset": "lerobot"}
    assert refs[6 + 6].source_uri.endswith("file-000.mp4#t=0.600000")  # episode 1, top, frame 0


def test_stride_filters_and_max_frames(dataset):
    refs = list_lerobot(cfg(dataset, stride=2), dataset)
    assert [r.source_id for r in refs] == (
        [sid(c, 0, f) for c in CAMS for f in (0, 2, 4)] + [sid(c, 1, f) for c in CAMS for f in (0, 2)]
    )
    refs = list_lerobot(cfg(dataset, cameras=[WRIST], episodes=[1]), dataset)
    assert [r.source_id for r in refs] == [sid(WRIST, 1, f) for f in range(4)]
    assert [r.frame_index for r in refs] == [6, 7, 8, 9]
    refs = list_lerobot(cfg(dataset, cameras=[WRIST, TOP], episodes=[1, 0, 1], stride=3), dataset)
    assert [r.source_id for r in refs] == [sid(c, e, f) for e in (0, 1) for c in CAMS for f in (0, 3)]
    refs = list_lerobot(cfg(dataset, max_frames=8), dataset)
    assert [r.source_id for r in refs] == [sid(TOP, 0, f) for f in range(6)] + [sid(WRIST, 0, 0), sid(WRIST, 0, 1)]
    refs = list_lerobot(cfg(dataset, use_input_captions=False), dataset)
    assert all(r.caption is None for r in refs) and refs[-1].meta["task"] == "open the drawer"


def test_read_frames_decodes_the_right_frames_of_both_episodes(dataset):
    refs = list_lerobot(cfg(dataset), dataset)
    out = read_frames(refs, max_pixels=50_000_000, min_side=1)
    starts = {0: 0, 1: 6}  # dataset index of each episode's first frame
    for r, img in zip(refs, out):
        assert isinstance(img, DecodedImage), img
        assert img.rgb.shape == (H, W, 3)
        assert decode_frame(img.rgb) == code(r.meta["camera"], starts[r.meta["episode_index"]] + r.meta["frame_index"])
    # a lone ref from the second episode (a fresh open, no earlier frames read) lands right too
    (only,) = list_lerobot(cfg(dataset, cameras=[TOP], episodes=[1], stride=3, max_frames=1), dataset)
    (img,) = read_frames([only], max_pixels=50_000_000, min_side=1)
    assert decode_frame(img.rgb) == code(TOP, 6)


def test_episodes_in_several_data_and_video_files(tmp_path):
    # episode 2 lives in data file-001 and video file-001, where it starts at time 0
    root = make_dataset(tmp_path / "ds", [(6, 0, 0, 0), (4, 1, 0, 0), (5, 1, 1, 1)], tasks_index_name=None)
    refs = list_lerobot(cfg(root, cameras=[TOP]), root)
    assert len(refs) == 15
    last = [r for r in refs if r.meta["episode_index"] == 2]
    assert [r.frame_index for r in last] == list(range(5))
    assert {r.path for r in last} == {str(root / f"videos/{TOP}/chunk-000/file-001.mp4")}
    assert {r.caption for r in last} == {"open the drawer"}  # tasks.parquet with an unnamed index
    out = read_frames(refs, max_pixels=50_000_000, min_side=1)
    starts = {0: 0, 1: 6, 2: 10}
    assert [decode_frame(i.rgb) for i in out] == [
        code(TOP, starts[r.meta["episode_index"]] + r.meta["frame_index"]) for r in refs
    ]


def test_source_ids_stable_for_a_copy(dataset, tmp_path):
    copy = Path(shutil.copytree(dataset, tmp_path / "elsewhere" / "copy"))
    a, b = list_lerobot(cfg(dataset), dataset), list_lerobot(cfg(copy), copy)
    assert [r.source_id for r in a] == [r.source_id for r in b]
    assert [r.frame_index for r in a] == [r.frame_index for r in b]
    assert all(str(copy) in r.path for r in b) and not any(str(copy) in r.path for r in a)
    # a filter changes which frames are listed, never their ids
    some = list_lerobot(cfg(copy, episodes=[1], stride=2), copy)
    assert {r.source_id for r in some} <= {r.source_id for r in a}


def test_errors(dataset, tmp_path):
    with pytest.raises(InputError, match=r"input\.cameras: unknown camera\(s\) front; available: "
                       r"observation\.images\.top, observation\.images\.wrist"):
        list_lerobot(cfg(dataset, cameras=["front"]), dataset)
    with pytest.raises(InputError, match=r"input\.episodes: unknown episode\(s\) 2, 7; available: 0\.\.1"):
        list_lerobot(cfg(dataset, episodes=[0, 7, 2]), dataset)

    missing = dataset / f"videos/{WRIST}/chunk-000/file-000.mp4"
    missing.unlink()
    with pytest.raises(InputError, match="episode 0 camera observation.images.wrist: video file") as e:
        list_lerobot(cfg(dataset), dataset)
    assert f"{missing} is missing" in str(e.value)
    assert len(list_lerobot(cfg(dataset, cameras=[TOP]), dataset)) == 10  # the other camera still lists

    (dataset / "meta" / "tasks.parquet").unlink()
    with pytest.raises(InputError, match=r"LeRobot tasks file .*meta/tasks\.parquet is missing"):
        list_lerobot(cfg(dataset, cameras=[TOP]), dataset)

    (dataset / "meta" / "info.json").unlink()
    with pytest.raises(InputError) as e:
        list_lerobot(cfg(dataset), dataset)
    assert f"{dataset / 'meta' / 'info.json'} is missing" in str(e.value)


def test_rejects_v2_and_missing_episodes(tmp_path):
    old = make_dataset(tmp_path / "old", version="v2.1")
    with pytest.raises(InputError, match=r"codebase_version v2\.1 is not supported; only v3\.0 .*one file per episode"):
        list_lerobot(cfg(old), old)
    ds = make_dataset(tmp_path / "ds")
    shutil.rmtree(ds / "meta" / "episodes")
    with pytest.raises(InputError, match=r"no episode files in .*meta/episodes"):
        list_lerobot(cfg(ds), ds)
