"""Videos on the local S3 server (the `s3` fixture: moto's standalone server over real HTTP): a listing reads
only each video's header through ranged GETs, and a video gone before its frames are read gives error rows."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import s3fs

from chronoedit_sim import storage
from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.decode import FrameError
from chronoedit_sim.sources.frames import iter_frames, read_frames
from chronoedit_sim.sources.pyav_video import HEADER_BLOCK


def noisy_video(path, fourcc: str, n: int, fps: float):
    """Random pixels compress badly, so the file is many header blocks long."""
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (640, 480))
    assert vw.isOpened()
    for _ in range(n):
        vw.write(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    vw.release()
    return path


@pytest.fixture
def fetched(monkeypatch):
    """The byte ranges s3fs's file objects GET from the server (the real client, observed, not replaced)."""
    ranges = []
    real = s3fs.core.S3File._fetch_range

    def counting(self, start, end):
        ranges.append(end - start)
        return real(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    return ranges


@pytest.mark.parametrize("name,fourcc,fps", [("a.mp4", "mp4v", 10.0), ("b.avi", "MJPG", 29.97), ("c.mkv", "XVID", 12.0)])
def test_a_video_on_s3_is_listed_from_its_header_as_on_disk(s3, tmp_path, fetched, name, fourcc, fps):
    local = noisy_video(tmp_path / name, fourcc, 40, fps)
    size = local.stat().st_size
    url = f"{s3}/{name}"
    storage.path(url).fs.put_file(str(local), storage.path(url).path)
    here = list(iter_frames(InputConfig(path=str(local))))
    there = list(iter_frames(InputConfig(path=url)))
    # the same frames and timestamps as OpenCV gives for the file on disk
    cap = cv2.VideoCapture(str(local))
    assert len(here) == int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    assert here[1].timestamp_s == pytest.approx(1 / cap.get(cv2.CAP_PROP_FPS), abs=1e-12)
    cap.release()
    assert [(r.source_id, r.frame_index, r.timestamp_s) for r in there] == \
           [(r.source_id, r.frame_index, r.timestamp_s) for r in here]
    # a few header blocks (the index, and the first frames FFmpeg probes), never the whole object
    assert size > 12 * HEADER_BLOCK and 0 < sum(fetched) <= 4 * HEADER_BLOCK
    # decoding (through a local copy) gives the pixels the file on disk gives
    a, b = (read_frames(refs[3:5], max_pixels=10**6, min_side=8) for refs in (here, there))
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, b))


def test_a_video_gone_from_s3_before_its_frames_are_read_gives_an_error_row_per_frame(s3, tmp_path):
    url = f"{s3}/clip.mp4"
    storage.path(url).fs.put_file(str(noisy_video(tmp_path / "clip.mp4", "mp4v", 6, 10.0)), storage.path(url).path)
    refs = list(iter_frames(InputConfig(path=url, stride=2)))
    storage.path(url).unlink()
    out = read_frames(refs, max_pixels=10**6, min_side=8)
    assert all(isinstance(o, FrameError) for o in out) and len(out) == 3
    assert [str(o).split(": cannot fetch video")[0] for o in out] == [f"{url}#frame={i}" for i in (0, 2, 4)]
    assert "FileNotFoundError" in str(out[0])


@pytest.mark.parametrize("fault", ["full disk", "credentials", "cache folder unusable"])
def test_a_node_or_store_problem_while_fetching_a_video_fails_the_task_not_its_frames(s3, tmp_path, monkeypatch, fault):
    """Error rows are final (a resume skips them); a task that raises is retried by Ray."""
    import errno

    from chronoedit_sim.sources.video_cache import VideoCache

    url = put(noisy_video(tmp_path / "clip.mp4", "mp4v", 2, 10.0), f"{s3}/clip.mp4")
    refs = list(iter_frames(InputConfig(path=url)))
    fs = storage.path(s3).fs  # the one client of the server (see whole_gets)

    def raising(exc):
        def get_file(*args, **kwargs):
            raise exc
        return get_file

    if fault == "full disk":
        monkeypatch.setattr(fs, "get_file", raising(OSError(errno.ENOSPC, "No space left on device")))
    elif fault == "credentials":
        monkeypatch.setattr(fs, "get_file", raising(PermissionError(errno.EACCES, "Access Denied")))
    else:
        (tmp_path / "cache").write_text("a file where the cache folder should be")
    for cache in (VideoCache(str(tmp_path / "cache"), 10**9), None):
        if cache is None and fault == "cache folder unusable":
            continue
        with pytest.raises(OSError) as e:
            read_frames(refs, max_pixels=10**6, min_side=8, video_cache=cache)
        assert not isinstance(e.value, FileNotFoundError)


def test_the_video_cache_folder_is_the_reading_nodes_not_the_drivers(tmp_path, monkeypatch):
    import pickle

    from chronoedit_sim.sources.video_cache import VideoCache

    cache = pickle.dumps(VideoCache("~/videos", 10**9))  # built on the driver, sent to the read tasks
    monkeypatch.setenv("HOME", str(tmp_path / "node-home"))
    assert pickle.loads(cache).root == tmp_path / "node-home" / "videos"


@pytest.fixture
def whole_gets(s3_requests):
    """The videos the server sent whole (GETs answered 200, not 206), as the server logged them."""
    return lambda: [key.rsplit("/", 1)[-1] for method, key, status in s3_requests
                    if method == "GET" and status == 200 and key.endswith(".mp4")]


def put(local, url):
    storage.path(url).fs.put_file(str(local), storage.path(url).path)
    return url


def test_the_read_tasks_of_one_video_on_s3_fetch_it_once_per_node_and_again_when_it_is_replaced(s3, tmp_path,
                                                                                                 whole_gets):
    from chronoedit_sim.sources.video_cache import VideoCache

    url = put(noisy_video(tmp_path / "v.mp4", "mp4v", 6, 10.0), f"{s3}/v.mp4")
    refs = list(iter_frames(InputConfig(path=url)))
    cache = VideoCache(str(tmp_path / "cache"), 10**9)
    tasks = [refs[0:2], refs[2:4], refs[4:6]]  # three read tasks of two frames
    first = [read_frames(t, max_pixels=10**6, min_side=8, video_cache=cache) for t in tasks]
    assert whole_gets() == ["v.mp4"] and all(isinstance(f, type(first[0][0])) for t in first for f in t)
    assert sorted(p.name.rsplit(".", 1)[-1] for p in (tmp_path / "cache").iterdir()) == ["fetch", "mp4", "use"]
    # without the cache, each task fetches the whole video
    for t in tasks:
        read_frames(t, max_pixels=10**6, min_side=8)
    assert whole_gets() == ["v.mp4"] * 4
    # a replaced object is another entry: fetched again, and its pixels are the new ones
    rng = np.random.default_rng(1)
    vw = cv2.VideoWriter(str(tmp_path / "w.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
    for _ in range(6):
        vw.write(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    vw.release()
    put(tmp_path / "w.mp4", url)
    again = read_frames(tasks[0], max_pixels=10**6, min_side=8, video_cache=cache)
    assert whole_gets() == ["v.mp4"] * 5 and not np.array_equal(again[0].rgb, first[0][0].rgb)
    assert np.array_equal(again[0].rgb, read_frames(tasks[0], max_pixels=10**6, min_side=8)[0].rgb)


def test_the_video_cache_removes_the_least_recently_used_video_that_no_task_is_reading(s3, tmp_path, whole_gets):
    from chronoedit_sim.sources.video_cache import VideoCache

    urls = [put(noisy_video(tmp_path / f"{n}.mp4", "mp4v", 3, 10.0), f"{s3}/{n}.mp4") for n in "abc"]
    size = (tmp_path / "a.mp4").stat().st_size
    cache = VideoCache(str(tmp_path / "cache"), int(2.5 * size))  # room for two

    def cached():
        return sorted(p.name for p in (tmp_path / "cache").iterdir() if p.suffix == ".mp4")

    with cache.local(urls[0]) as a:  # a task is reading a
        with cache.local(urls[1]):
            pass
        with cache.local(urls[2]):  # three do not fit: b goes (a is in use, though least recently used)
            assert len(cached()) == 2 and os.path.basename(a) in cached()
    # a fetch killed midway left its part: removed with the next eviction unless a task is fetching into it
    (tmp_path / "cache" / "killed.mp4.part").write_bytes(b"x" * 100)
    with cache.local(urls[1]):  # b again: fetched again; a, now free and the oldest, goes
        assert os.path.basename(a) not in cached() and len(cached()) == 2
    assert whole_gets() == ["a.mp4", "b.mp4", "c.mp4", "b.mp4"]
    assert not (tmp_path / "cache" / "killed.mp4.part").exists()


def test_two_read_tasks_wanting_one_video_at_once_fetch_it_once(s3, tmp_path, whole_gets):
    import fcntl
    import threading
    import time

    from chronoedit_sim.sources.video_cache import VideoCache
    from helpers import flock_waiters

    url = put(noisy_video(tmp_path / "v.mp4", "mp4v", 2, 10.0), f"{s3}/v.mp4")
    cache = VideoCache(str(tmp_path / "cache"), 10**9)
    cache.root.mkdir(parents=True)
    fetch_lock = cache.root / (cache._key(storage.path(url)) + ".fetch")
    got = []

    def task():
        with cache.local(url) as local:
            got.append(os.path.getsize(local))

    with open(fetch_lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a task that is fetching it
        tasks = [threading.Thread(target=task) for _ in range(2)]
        for t in tasks:
            t.start()
        deadline = time.monotonic() + 30
        while flock_waiters(fetch_lock) < 2 and time.monotonic() < deadline:  # a state, polled: not a timing
            time.sleep(0.02)
        assert flock_waiters(fetch_lock) == 2 and whole_gets() == []  # both wait; neither has fetched
    for t in tasks:
        t.join()
    assert whole_gets() == ["v.mp4"] and got == [(tmp_path / "v.mp4").stat().st_size] * 2
