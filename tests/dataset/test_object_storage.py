"""The output dataset and the inputs on an object store: the local S3 server that the `s3` fixture starts
(moto's standalone server) and the local GCS emulator of the `gs` fixture (fake-gcs-server), real HTTP
endpoints; no client is mocked. A test taking `store` runs on each. The runs against S3 are in
tests/runtime/test_object_storage_runs.py (make test-slow)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
from PIL import Image

from chronoedit_sim import storage
from chronoedit_sim.config import InputConfig, OutputConfig
from chronoedit_sim.dataset.lock import OutputLock, OutputLocked, lock_path, read_holder
from chronoedit_sim.dataset.manifest import read_manifest, write_manifest
from chronoedit_sim.dataset.sink import (DATA, SinkWriteError, atomic_write, complete_shards, readable_shards,
                                         resume_index)
from chronoedit_sim.sources.dispatch import iter_input, read_input
from helpers import upload
from verify_helpers import fake_row, write_dataset


def keys(url: str) -> list[str]:
    """Every object under a prefix, as the store lists it."""
    p = storage.path(url)
    return sorted(k[len(p.path) + 1:] for k in p.fs.find(p.path))


def test_a_url_is_an_fsspec_path_and_a_local_path_stays_a_pathlib_path(tmp_path):
    from pathlib import Path

    assert type(storage.path(tmp_path / "x")) is type(tmp_path) and storage.path("a/b") == Path("a/b")
    remote = storage.path("s3://bucket/out") / "data"
    assert storage.is_remote(remote) and str(remote) == "s3://bucket/out/data"
    assert storage.absolute("s3://bucket/out") == "s3://bucket/out"
    assert storage.absolute("rel") == str(Path("rel").resolve())


def test_shards_on_a_store_are_whole_objects_read_back_by_the_resume_index(store):
    shards = write_dataset(store, 3, per_shard=2)
    assert [s.name for s in complete_shards(store)] == [s.name for s in shards] and len(shards) == 2
    assert sorted(keys(store)) == sorted(f"data/{s.name}" for s in shards)  # no temporary object anywhere
    assert len(resume_index(store)) == 3 and "job2" in resume_index(store)
    assert readable_shards(store) == complete_shards(store)
    write_manifest(store, {"runs": [1]})
    assert read_manifest(store) == {"runs": [1]}


def test_a_shard_whose_write_fails_midway_leaves_no_object(store):
    final = storage.path(store) / DATA / "part-x.parquet"
    seen = []

    def write(fh):
        fh.write(b"PAR1" + b"\0" * 1000)  # half a shard, then the writer dies
        raise OSError(28, "No space left on device")

    with pytest.raises(SinkWriteError):
        atomic_write(final, write)
    assert keys(store) == []
    # before the PUT (where the runtime's fault injection kills the driver) nothing is visible either
    atomic_write(final, lambda fh: fh.write(b"whole"), before_rename=lambda p: seen.append(keys(store)))
    assert seen == [[]] and keys(store) == ["data/part-x.parquet"] and final.read_bytes() == b"whole"


def test_the_lock_is_an_object_created_only_if_absent(store):
    lock = storage.path(store) / "lock"
    # the server honours the condition: S3's If-None-Match: *, GCS's ifGenerationMatch=0
    assert storage.create(lock, b"first") and not storage.create(lock, b"second")
    assert lock.read_bytes() == b"first"


def test_a_second_writer_on_a_store_is_refused_naming_the_holder_and_a_release_deletes_the_lock(store):
    with OutputLock(store, command="chronoedit-sim run a.yaml"):
        assert read_holder(store)["command"] == "chronoedit-sim run a.yaml"
        with pytest.raises(OutputLocked, match=rf"another writer is using this output \(pid {os.getpid()} on "
                                               rf"{socket.gethostname()}, .*`chronoedit-sim run a.yaml`\)"):
            with OutputLock(store, command="second"):
                pass
        assert read_holder(store)["command"] == "chronoedit-sim run a.yaml"  # never overwritten
    assert not lock_path(store).exists()
    with OutputLock(store, command="third"):
        assert read_holder(store)["command"] == "third"


def test_a_dead_writers_lock_on_a_store_is_taken_over_and_another_hosts_is_refused(store):
    from test_lock import _dead_pid

    pid = _dead_pid()
    lock_path(store).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started_at": "t",
                                            "command": "old"}))
    notices = []
    with OutputLock(store, command="new", echo=notices.append):
        assert read_holder(store)["command"] == "new"
    assert len(notices) == 1 and f"previous writer (pid {pid} on" in notices[0]
    lock_path(store).write_text(json.dumps({"host": "other-node", "pid": 1, "started_at": "t", "command": "c"}))
    with pytest.raises(OutputLocked,
                       match=rf"cannot tell whether .* object store.* delete {lock_path(store)} and rerun"):
        with OutputLock(store, command="new"):
            pass


def test_of_two_writers_taking_over_the_same_dead_lock_on_a_store_only_the_first_gets_it(store, monkeypatch):
    from test_lock import _dead_pid

    dead = {"host": socket.gethostname(), "pid": _dead_pid(), "started_at": "t", "command": "old"}
    lock_path(store).write_text(json.dumps(dead))
    first, second = (OutputLock(store, command=name, echo=print) for name in ("first", "second"))
    check = OutputLock._check_holder

    def first_takes_over_meanwhile(self, holder, alive):
        check(self, holder, alive)  # the second writer has found the dead holder...
        if self is second:
            first.__enter__()  # ...and the first takes the lock over before the second acts on it

    monkeypatch.setattr(OutputLock, "_check_holder", first_takes_over_meanwhile)
    with pytest.raises(OutputLocked, match="another writer took this output's lock just now"):
        second.__enter__()
    assert read_holder(store)["command"] == "first" and first.fd == -1 and second.fd is None
    first.__exit__(None, None, None)
    assert keys(store) == []  # the lock and its takeover marker are both gone at release
    with OutputLock(store, command="next"):
        assert read_holder(store)["command"] == "next"


def test_a_writer_that_died_taking_over_a_dead_lock_on_a_store_is_taken_over_in_turn(store):
    from test_lock import _dead_pid

    here = socket.gethostname()
    dead = json.dumps({"host": here, "pid": _dead_pid(), "started_at": "t", "command": "old"}).encode()
    lock_path(store).write_bytes(dead)
    first = OutputLock(store, command="first")
    # a taker killed between its marker and its lock: the marker names it, the lock still names the old writer
    died = json.dumps({"host": here, "pid": _dead_pid(), "started_at": "t2", "command": "taker"}).encode()
    first._marker(dead).write_bytes(died)
    notices = []
    with OutputLock(store, command="next", echo=notices.append) as lock:
        assert read_holder(store)["command"] == "next" and lock.takeover == first._marker(died)
    assert len(notices) == 2 and "died taking over the lock" in notices[1]
    assert keys(store) == [f"_state/{first._marker(dead).name}"]  # the dead taker's marker stays: its name never recurs
    # a taker that is alive, or on another host, is still refused, and named
    lock_path(store).write_bytes(dead)
    first._marker(dead).write_bytes(json.dumps({"host": "other-node", "pid": 1, "started_at": "t3",
                                                "command": "far"}).encode())
    with pytest.raises(OutputLocked, match=r"took this output's lock just now \(pid 1 on other-node.*delete .*/lock"):
        with OutputLock(store, command="again"):
            pass


def test_an_empty_lock_object_copied_from_a_released_local_dataset_is_taken_over(store):
    lock_path(store).write_bytes(b"")
    with OutputLock(store, command="new", echo=print):
        assert read_holder(store)["command"] == "new"
    assert keys(store) == []


def _frames(folder, n):
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((20, 24, 3), 30 * i, np.uint8)).save(folder / ("sub" if i % 2 else "") / f"f{i}.png")
    (folder / ".hidden.png").write_bytes(b"x")
    return folder


def test_an_image_folder_on_a_store_lists_and_reads_as_the_same_folder_on_disk(store, tmp_path):
    local = _frames(tmp_path / "in", 4)
    url = upload(local, f"{store}/in")
    here, there = (list(iter_input(InputConfig(path=p))) for p in (str(local), url))
    assert [r.source_id for r in there] == [r.source_id for r in here] == ["f0.png", "f2.png", "sub/f1.png",
                                                                            "sub/f3.png"]
    assert there[0].path == f"{url}/f0.png"
    pixels = [img.rgb for img in read_input(there, max_pixels=10**6, min_side=16)]
    assert [int(p[0, 0, 0]) for p in pixels] == [0, 60, 30, 90]


def test_a_parquet_input_and_a_kitti_tree_on_s3_list_their_rows(s3, tmp_path):
    from helpers import write_scored_kitti

    write_dataset(tmp_path / "pq", 2, per_shard=2)
    rows = list(iter_input(InputConfig(path=upload(tmp_path / "pq" / "data", f"{s3}/pq"), type="parquet",
                                       image_column="source_image")))
    assert len(rows) == 2 and rows[0].source_id.endswith("#00000000")
    assert read_input(rows, max_pixels=10**6, min_side=8)[1].rgb[0, 0, 0] == 10
    kitti = list(iter_input(InputConfig(path=upload(write_scored_kitti(tmp_path / "kitti"), f"{s3}/kitti"))))
    assert [r.source_id for r in kitti] == [f"training/image_2/{i:06d}.png" for i in range(4)]
    assert kitti[0].label_file == f"{s3}/kitti/training/label_2/000000.txt"


def test_a_lerobot_dataset_and_a_video_on_s3_list_and_decode_as_on_disk(s3, tmp_path):
    """LeRobot v3 from a store: its tables through pyarrow, its MP4s through a local copy for the decoder."""
    from helpers import make_dataset

    local = make_dataset(tmp_path / "ds")
    url = upload(local, f"{s3}/ds")
    here, there = (list(iter_input(InputConfig(path=p, type="lerobot"))) for p in (str(local), url))
    assert here and [r.source_id for r in there] == [r.source_id for r in here]
    pick = [0, len(here) // 2, len(here) - 1]
    frames = [read_input([refs[i] for i in pick], max_pixels=10**6, min_side=8) for refs in (here, there)]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(*frames))
    # one of its MP4s as a plain video input (type video: OpenCV's decoder on a local copy)
    mp4 = sorted(local.rglob("*.mp4"))[0]
    here, there = (list(iter_input(InputConfig(path=p, type="video")))
                   for p in (str(mp4), f"{url}/{mp4.relative_to(local).as_posix()}"))
    assert len(here) > 2 and [r.source_id for r in there] == [r.source_id for r in here]
    frames = [read_input(refs[:3], max_pixels=10**6, min_side=8) for refs in (here, there)]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(*frames))


def test_the_writer_keeps_rows_out_of_sight_until_a_shard_is_whole(store):
    from chronoedit_sim.dataset.sink import DatasetWriter

    writer = DatasetWriter(store, OutputConfig(shard_max_rows=2))
    writer.add(fake_row(0), write_rejected=True)
    assert keys(store) == []
    writer.add(fake_row(1), write_rejected=True)
    assert len(keys(store)) == 1 and writer.rows_in_shards == 2


def test_a_store_without_a_conditional_write_gets_the_lock_with_a_notice_that_it_stops_no_second_writer():
    import uuid

    out = f"memory://cesim/{uuid.uuid4().hex}"  # fsspec's in-memory file system: create-if-absent is check-then-write
    notices = []
    with OutputLock(out, command="new", echo=notices.append):
        assert read_holder(out)["command"] == "new"
    assert len(notices) == 1 and "no conditional write" in notices[0] and "one writer per output" in notices[0]
    assert storage.conditional_create(storage.path("s3://b/x")) and storage.conditional_create(storage.path("gs://b/x"))
