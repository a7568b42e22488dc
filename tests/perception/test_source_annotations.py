"""Ground truth read beside the frames (KITTI, COCO, nuScenes, LeRobot, Parquet columns) and carried by the
read stage: known labels in, the same labels out; a malformed file fails its frame, naming file and line."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers import read_stage_rows
from perception_helpers import SCENES, kitti_line, quaternion_yaw, scene, write_kitti, write_nuscenes

from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.annotations import (LabelError, attach_nuscenes, box_corners, project_box,
                                                read_kitti_labels)
from chronoedit_sim.sources.base import InputError
from chronoedit_sim.sources.dispatch import list_input

KEEP = ["model=tiny", "model.path=/unused"]


def by_source(rows):
    return {r["source_id"]: r for r in rows}


def test_kitti_labels_are_read_with_their_3d_fields_and_dontcare_is_an_ignore_region(tmp_path, one_edit_scenario):
    root = write_kitti(tmp_path / "kitti", dontcare=True)
    rows = by_source(read_stage_rows(one_edit_scenario, root, KEEP))
    anns = rows["training/image_2/000001.png"]["_source_annotations"]
    assert [(a["label"], a["source_box"], a["ignore"]) for a in anns] == [
        ("Car", [50.0, 30.0, 90.0, 56.0], False), ("DontCare", [0.0, 0.0, 10.0, 10.0], True)]
    assert anns[0]["attributes"] == {"truncated": 0.0, "occluded": 0, "alpha": -1.57, "dimensions_hwl": [1.5, 1.6, 3.9],
                                     "location_xyz": [1.0, 1.6, 12.0], "rotation_y": 0.1}
    assert len(rows["training/image_2/000000.png"]["_source_annotations"]) == len(SCENES["000000"])


def test_a_malformed_kitti_file_fails_only_its_frame_naming_file_and_line(tmp_path, one_edit_scenario):
    root = write_kitti(tmp_path / "kitti")
    bad = root / "training" / "label_2" / "000002.txt"
    bad.write_text(kitti_line("Car", (1, 2, 3, 4)) + "\nCar 0 0 x 1 2 3 4\n")
    (root / "training" / "label_2" / "000001.txt").unlink()  # no label file: a frame without labels
    rows = by_source(read_stage_rows(one_edit_scenario, root, KEEP))
    failed = rows["training/image_2/000002.png"]
    assert failed["error"] == f"read: {bad}:2: expected 15 fields ({'type truncated occluded alpha x0 y0 x1 y1 h w l x y z ry'}), got 8"
    assert failed["error_stage"] == "read" and "_source_rgb" not in failed
    assert rows["training/image_2/000001.png"]["error"] is None
    assert rows["training/image_2/000001.png"]["_source_annotations"] == []
    with pytest.raises(LabelError, match=r":1: could not convert string to float: 'x'"):
        bad.write_text("Car 0 0 x 1 2 3 4 1 1 1 1 1 1 1\n")
        read_kitti_labels(str(bad))


def _coco(tmp_path, entries, images=("a.png", "sub/b.png")):
    data = {"images": [{"id": i + 1, "file_name": n, "width": 96, "height": 64} for i, n in enumerate(images)],
            "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "person"}], "annotations": entries}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_annotations_are_matched_by_file_name(tmp_path, one_edit_scenario):
    frames = tmp_path / "frames"
    (frames / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "c.png"):
        Image.fromarray(scene("000000")).save(frames / name)
    coco = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 5]},
                            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 1}])
    rows = by_source(read_stage_rows(one_edit_scenario, frames, [*KEEP, f"input.annotations={coco}"]))
    assert [(a["label"], a["source_box"], a["ignore"]) for a in rows["a.png"]["_source_annotations"]] == [
        ("car", [10.0, 20.0, 40.0, 25.0], False)]
    assert rows["sub/b.png"]["_source_annotations"][0]["ignore"] is True  # a crowd region is ignored
    assert rows["c.png"]["_source_annotations"] == []  # the file does not list it: no labels, no error


def test_a_bad_coco_entry_fails_its_frame_and_an_unreadable_file_stops_the_run(tmp_path, one_edit_scenario):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(scene("000000")).save(frames / "a.png")
    coco = _coco(tmp_path, [{"id": 9, "image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1]}], images=("a.png",))
    (row,) = read_stage_rows(one_edit_scenario, frames, [*KEEP, f"input.annotations={coco}"])
    assert row["error"] == f"read: {coco}: annotations[0] (id 9): bad entry (KeyError: 99)"
    coco.write_text("{not json")
    with pytest.raises(InputError, match="input.annotations: cannot read COCO instances file"):
        list_input(InputConfig(path=str(frames), annotations=str(coco)))


def test_nuscenes_boxes_are_projected_into_each_camera(tmp_path):
    root = tmp_path / "nusc"
    tables = write_nuscenes(root)
    (ref,) = list_input(InputConfig(path=str(root)))
    (ann,) = ref.annotations
    # the near face is 8 m ahead: half-width 1 m -> 125 px, half-height 0.75 m -> 93.75 px around the centre
    assert ann["label"] == "vehicle.car"
    assert ann["source_box"] == pytest.approx([675.0, 356.25, 925.0, 543.75])
    assert ann["attributes"]["visibility"] == "v80-100" and ann["attributes"]["attributes"] == ["vehicle.parked"]
    # a box partly beside the image is clipped to it; without tables, frames simply have no boxes
    # (6..10 m ahead, 4.5..6.5 m to the left: u from 800 - 1000 * 6.5 / 6 < 0 to 800 - 1000 * 4.5 / 10 = 350)
    corners = box_corners([108.0, 55.5, 0.0], [2.0, 4.0, 1.5], quaternion_yaw(0.0))
    clipped = project_box(corners, tables["ego_pose"][0], tables["calibrated_sensor"][0], (1600, 900))
    assert clipped[0] == 0.0 and clipped[2] == pytest.approx(350.0)
    for name in tables:
        (root / "v1.0-mini" / f"{name}.json").unlink()
    assert list(attach_nuscenes(root, [ref])) == [ref]


def test_lerobot_rows_carry_their_episode_with_action_and_state(tmp_path, one_edit_scenario):
    from helpers import FPS, TASKS, TWO_EPISODES, make_dataset

    root = make_dataset(tmp_path / "lerobot")
    rows = read_stage_rows(one_edit_scenario, root, [*KEEP, "input.episodes=[1]", "input.cameras=[observation.images.top]"])
    assert len(rows) == TWO_EPISODES[1][0]
    for i, row in enumerate(rows):
        assert row["episode"] == {"episode_index": 1, "frame_index": i, "timestamp": pytest.approx(i / FPS),
                                  "task": TASKS[TWO_EPISODES[1][1]], "action": pytest.approx([0.1 * i, -0.1 * i]),
                                  "state": [1.0, float(i), 0.5]}


def test_parquet_columns_named_by_keep_columns_ride_along(tmp_path, one_edit_scenario):
    import io

    buf = io.BytesIO()
    Image.fromarray(scene("000000")).save(buf, "PNG")
    objects = pa.array([{"bbox": [[1.0, 2.0, 3.0, 4.0]], "category": [5]}])
    pq.write_table(pa.table({"image": pa.array([{"bytes": buf.getvalue(), "path": "x.png"}],
                                               pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                             "objects": objects, "split": ["val"]}), tmp_path / "in.parquet")
    (row,) = read_stage_rows(one_edit_scenario, tmp_path / "in.parquet", [*KEEP, "input.keep_columns=[objects,split]"])
    assert json.loads(row["source_columns"]) == {"objects": {"bbox": [[1.0, 2.0, 3.0, 4.0]], "category": [5]},
                                                 "split": "val"}
    with pytest.raises(InputError, match="input.keep_columns: in.parquet has no column 'nope'"):
        list_input(InputConfig(path=str(tmp_path / "in.parquet"), keep_columns=["nope"]))
    assert np.asarray(row["_source_rgb"]).shape == (64, 96, 3)
