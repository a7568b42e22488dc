"""Tests for chronoedit_sim.sources.trees (KITTI / nuScenes folder layouts), generated in tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.decode import DecodedImage
from chronoedit_sim.sources.base import InputError
from chronoedit_sim.sources.frames import read_frames
from chronoedit_sim.sources.trees import is_kitti, is_nuscenes, list_kitti, list_nuscenes


def img(path: Path, fmt="PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (1, 2, 3)).save(path, fmt)


@pytest.fixture
def kitti_object(tmp_path) -> Path:
    root = tmp_path / "kitti"
    for split, cam, n in (("training", "image_2", 3), ("training", "image_3", 2), ("testing", "image_2", 1)):
        for i in range(n):
            img(root / split / cam / f"{i:06d}.png")
    (root / "training" / "label_2").mkdir()
    (root / "training" / "label_2" / "000000.txt").write_text("Car 0 0 0")
    (root / "training" / "velodyne").mkdir()
    (root / "training" / "image_2" / ".hidden.png").write_bytes(b"x")
    return root


@pytest.fixture
def kitti_raw(tmp_path) -> Path:
    root = tmp_path / "raw"
    drive = root / "2011_09_26" / "2011_09_26_drive_0001_sync"
    for cam in ("image_02", "image_03"):
        for i in range(3):
            img(drive / cam / "data" / f"{i:010d}.png")
        (drive / cam / "timestamps.txt").write_text("t")
    img(drive / "image_00" / "data" / "0000000000.png")  # grey camera: not a colour camera folder
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    (drive / "velodyne_points" / "data" / "0000000000.bin").write_bytes(b"\0" * 16)
    return root


@pytest.fixture
def nuscenes(tmp_path) -> Path:
    root = tmp_path / "nusc"
    name = "n008-2018-08-01-15-16-36-0400__{cam}__15331516035{i}2404.jpg"
    for cam, n in (("CAM_FRONT", 3), ("CAM_BACK", 2)):
        for i in range(n):
            img(root / "samples" / cam / name.format(cam=cam, i=i), "JPEG")
    (root / "samples" / "LIDAR_TOP").mkdir(parents=True)
    (root / "samples" / "LIDAR_TOP" / "n008__LIDAR_TOP__1.pcd.bin").write_bytes(b"\0" * 32)
    img(root / "sweeps" / "CAM_FRONT" / "sweep.jpg", "JPEG")
    (root / "v1.0-mini").mkdir()
    return root


def test_kitti_object_ids_and_meta(kitti_object):
    assert is_kitti(kitti_object)
    refs = list_kitti(InputConfig(), kitti_object)
    assert [r.source_id for r in refs] == [
        "testing/image_2/000000.png",
        "training/image_2/000000.png", "training/image_2/000001.png", "training/image_2/000002.png",
        "training/image_3/000000.png", "training/image_3/000001.png",
    ]
    r = refs[2]
    assert r.kind == "image" and r.frame_index == -1 and r.timestamp_s is None
    assert r.path == r.source_uri == str(kitti_object / "training" / "image_2" / "000001.png")
    assert r.meta == {"dataset": "kitti", "camera": "image_2", "sequence": "training", "frame": "000001"}
    assert all(isinstance(x, DecodedImage) for x in read_frames(refs, max_pixels=10**7, min_side=1))


def test_kitti_camera_filter_stride_max_frames(kitti_object):
    refs = list_kitti(InputConfig(cameras=["image_3"]), kitti_object)
    assert [r.source_id for r in refs] == ["training/image_3/000000.png", "training/image_3/000001.png"]
    refs = list_kitti(InputConfig(cameras=["image_2"], stride=2), kitti_object)
    assert [r.source_id for r in refs] == [
        "testing/image_2/000000.png", "training/image_2/000000.png", "training/image_2/000002.png"]
    refs = list_kitti(InputConfig(max_frames=2), kitti_object)
    assert [r.source_id for r in refs] == ["testing/image_2/000000.png", "training/image_2/000000.png"]
    with pytest.raises(InputError, match=r"image_02 not found .*\(available: image_2, image_3\)"):
        list_kitti(InputConfig(cameras=["image_02"]), kitti_object)


def test_kitti_raw_ids_and_meta_and_stable_copy(kitti_raw, tmp_path):
    assert is_kitti(kitti_raw)
    refs = list_kitti(InputConfig(), kitti_raw)
    d = "2011_09_26/2011_09_26_drive_0001_sync"
    cams = ("image_02", "image_03")
    assert [r.source_id for r in refs] == [f"{d}/{c}/data/{i:010d}.png" for c in cams for i in range(3)]
    assert refs[4].meta == {"dataset": "kitti", "camera": "image_03", "sequence": d, "frame": "0000000001"}
    refs = list_kitti(InputConfig(cameras=["image_03"], stride=2), kitti_raw)
    assert [r.meta["frame"] for r in refs] == ["0000000000", "0000000002"]
    copy = tmp_path / "moved" / "raw"
    shutil.copytree(kitti_raw, copy)
    assert [r.source_id for r in list_kitti(InputConfig(), copy)] == [
        r.source_id for r in list_kitti(InputConfig(), kitti_raw)]
    # pointing at the drive folder itself still works; the sequence is then "."
    drive = list_kitti(InputConfig(), kitti_raw / d)
    assert drive[0].source_id == "image_02/data/0000000000.png" and drive[0].meta["sequence"] == "."


def test_kitti_nothing_found(tmp_path, nuscenes):
    assert not is_kitti(nuscenes)
    assert not is_kitti(tmp_path / "missing")
    deep = tmp_path / "deep" / "a" / "b" / "c" / "image_2"
    img(deep / "0.png")
    assert not is_kitti(tmp_path / "deep")  # depth 4
    assert is_kitti(tmp_path / "deep" / "a")
    with pytest.raises(InputError, match=r"nusc: not a KITTI tree \(no camera folder image_2, image_3"):
        list_kitti(InputConfig(), nuscenes)
    (tmp_path / "empty" / "training" / "image_2").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no images .* in the KITTI camera folders image_2"):
        list_kitti(InputConfig(), tmp_path / "empty")


def test_nuscenes_ids_filter_and_ignored_folders(nuscenes):
    assert is_nuscenes(nuscenes)
    refs = list_nuscenes(InputConfig(), nuscenes)
    name = "n008-2018-08-01-15-16-36-0400__{cam}__15331516035{i}2404.jpg"
    expected = [f"samples/CAM_BACK/{name.format(cam='CAM_BACK', i=i)}" for i in range(2)]
    expected += [f"samples/CAM_FRONT/{name.format(cam='CAM_FRONT', i=i)}" for i in range(3)]
    assert [r.source_id for r in refs] == expected
    r = refs[2]
    assert r.path == str(nuscenes / r.source_id) and r.kind == "image"
    stem = Path(name.format(cam="CAM_FRONT", i=0)).stem
    assert r.meta == {"dataset": "nuscenes", "camera": "CAM_FRONT", "frame": stem}
    front = list_nuscenes(InputConfig(cameras=["CAM_FRONT"], stride=2), nuscenes)
    assert [x.meta["frame"] for x in front] == [Path(name.format(cam="CAM_FRONT", i=i)).stem for i in (0, 2)]
    assert len(list_nuscenes(InputConfig(max_frames=3), nuscenes)) == 3
    with pytest.raises(InputError, match=r"LIDAR_TOP not found .*\(available: CAM_BACK, CAM_FRONT\)"):
        list_nuscenes(InputConfig(cameras=["LIDAR_TOP"]), nuscenes)


def test_nuscenes_false_cases(tmp_path, kitti_object):
    assert not is_nuscenes(kitti_object)
    assert not is_nuscenes(tmp_path / "missing")
    (tmp_path / "lidar_only" / "samples" / "LIDAR_TOP").mkdir(parents=True)
    assert not is_nuscenes(tmp_path / "lidar_only")
    with pytest.raises(InputError, match=r"lidar_only: not a nuScenes tree \(no samples/CAM_\* folders found\)"):
        list_nuscenes(InputConfig(), tmp_path / "lidar_only")
    (tmp_path / "lidar_only" / "samples" / "CAM_FRONT").mkdir()
    with pytest.raises(InputError, match=r"no images .* in the nuScenes folders samples/\{CAM_FRONT\}"):
        list_nuscenes(InputConfig(), tmp_path / "lidar_only")
