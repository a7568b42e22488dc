"""nuScenes trees and Hugging Face datasets on an object store (the local S3 server and GCS emulator of the
`store` fixture): the corpora the local tests build, uploaded, list and decode as they do on disk; a
`save_to_disk` folder (Arrow files, not read) is refused the same way on disk and on a store."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.base import InputError
from chronoedit_sim.sources.dispatch import list_input, read_input
from helpers import upload
from perception_helpers import write_nuscenes
from test_parquet_source import color, write_hf_dataset


def listed_and_read(cfg: dict, local, url: str):
    """(refs, frames) of the same input read from disk and from the store."""
    refs = [list_input(InputConfig(path=p, **cfg)) for p in (str(local), url)]
    return refs, [read_input(r, max_pixels=2 * 10**6, min_side=8) for r in refs]


def test_a_nuscenes_tree_on_a_store_lists_its_cameras_boxes_and_pixels_as_on_disk(store, tmp_path):
    root = tmp_path / "nusc"
    write_nuscenes(root)  # CAM_FRONT/f.jpg with a car in its tables
    for i in range(2):  # a camera without table entries: frames without boxes
        (root / "samples" / "CAM_BACK").mkdir(exist_ok=True)
        Image.fromarray(np.full((90, 160, 3), 50 * i + 20, np.uint8)).save(root / "samples" / "CAM_BACK" / f"b{i}.jpg")
    (root / "samples" / "LIDAR_TOP").mkdir()
    (root / "samples" / "LIDAR_TOP" / "l.pcd.bin").write_bytes(b"\0" * 32)
    url = upload(root, f"{store}/nusc")
    (here, there), (pixels_here, pixels_there) = listed_and_read({}, root, url)
    assert [r.source_id for r in there] == [r.source_id for r in here] == [
        "samples/CAM_BACK/b0.jpg", "samples/CAM_BACK/b1.jpg", "samples/CAM_FRONT/f.jpg"]
    assert [r.path for r in there] == [f"{url}/{r.source_id}" for r in here]
    assert [r.meta for r in there] == [r.meta for r in here]
    assert [(r.instant_id, r.sequence_id) for r in there] == [(r.instant_id, r.sequence_id) for r in here]
    assert [r.annotations for r in there] == [r.annotations for r in here]
    (car,) = there[2].annotations
    assert car["label"] == "vehicle.car" and car["source_box"] == pytest.approx([675.0, 356.25, 925.0, 543.75])
    assert there[0].annotations == [] and there[2].instant_id == "s"
    assert [p.rgb.shape for p in pixels_there] == [(90, 160, 3), (90, 160, 3), (900, 1600, 3)]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(pixels_here, pixels_there))
    assert [r.source_id for r in list_input(InputConfig(path=url, cameras=["CAM_FRONT"]))] == [
        "samples/CAM_FRONT/f.jpg"]


def test_a_hugging_face_dataset_on_a_store_lists_its_rows_and_pixels_as_on_disk(store, tmp_path):
    ds = write_hf_dataset(tmp_path / "ds")
    url = upload(ds, f"{store}/ds")
    (here, there), (pixels_here, pixels_there) = listed_and_read({"id_column": "key"}, ds, url)
    assert [r.source_id for r in there] == [r.source_id for r in here] == [
        "data/train-00000-of-00002.parquet#a", "data/train-00000-of-00002.parquet#b",
        "data/train-00000-of-00002.parquet#c", "data/train-00001-of-00002.parquet#a",
        "data/train-00001-of-00002.parquet#d"]
    assert there[3].path == f"{url}/data/train-00001-of-00002.parquet" and there[3].meta == here[3].meta
    assert [tuple(p.rgb[0, 0]) for p in pixels_there] == [color(i) for i in (0, 1, 2, 0, 1)]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(pixels_here, pixels_there))


def test_a_dataset_saved_with_save_to_disk_is_refused_with_how_to_convert_it(store, tmp_path):
    import datasets

    rows = datasets.Dataset.from_dict({"image": [Image.new("RGB", (24, 20), color(i)) for i in range(2)]},
                                      features=datasets.Features({"image": datasets.Image()}))
    rows.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": rows}).save_to_disk(str(tmp_path / "splits"))
    for name in ("one", "splits"):
        for path in (str(tmp_path / name), upload(tmp_path / name, f"{store}/{name}")):
            with pytest.raises(InputError, match=rf"^input.path: {path} is a Hugging Face dataset saved with "
                                                 r"save_to_disk \(Arrow files\), which is not read: write each "
                                                 r"split as Parquet \(ds.to_parquet\('DIR/data/train.parquet'\)\)"):
                list_input(InputConfig(path=path))
