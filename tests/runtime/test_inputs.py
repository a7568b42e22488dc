"""A run over every kind of bad input completes with one row per frame and the documented outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from chronoedit_sim.runtime.run import run
from helpers import BAD_CORPUS_OUTCOMES, read_stage_rows, write_bad_corpus

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


def test_bad_input_corpus_gives_one_row_each(ray_session, run_overrides, one_edit_scenario, tmp_path):
    frames = write_bad_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    code = run([str(one_edit_scenario)], str(frames), str(out), run_overrides, quiet=True, echo=lambda *_: None)
    assert code == 3  # 6 of 10 rows failed, more than the default runtime.max_failed_fraction (0.1): exit 3
    rows = {r["source_id"]: r for r in pq.ParquetDataset(str(out / "data")).read().to_pylist()}
    assert set(rows) == set(BAD_CORPUS_OUTCOMES)
    for name, expected in BAD_CORPUS_OUTCOMES.items():
        row = rows[name]
        if expected is None:
            assert row["error"] is None and row["edited_image"] is not None, name
        else:
            assert row["error"].startswith("read: ") and expected in row["error"], name
            assert row["keep"] is False and row["edited_image"] is None
    meta = json.loads(rows["exif_rotated.jpg"]["source_meta"])
    assert meta["exif_transposed"] is True and (meta["orig_width"], meta["orig_height"]) == (64, 48)
    assert json.loads(rows["cmyk.jpg"]["source_meta"])["orig_mode"] == "CMYK"
    assert json.loads(rows["rgba.png"]["source_meta"])["alpha_composited"] is True
    assert json.loads(rows["sixteen_bit.png"]["source_meta"])["orig_mode"].startswith("I")
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["written"] == 10 and counts["failed"] == 6


def test_lerobot_dataset_keeps_identity_and_uses_the_task_as_caption(tmp_path):
    # what a run makes of a LeRobot input is settled by its read stage (read_stage_rows: no Ray needed)
    from helpers import TASKS, TOP, make_dataset

    root = make_dataset(tmp_path / "lerobot")
    scenario = REPO / "scenarios/robotics/change_lighting.yaml"
    rows = read_stage_rows(scenario, root, ["model=tiny", "model.path=/unused", f"input.cameras=[{TOP}]",
                                            "input.stride=3", "input.episodes=[1]"])
    # episode 1 has 4 frames: stride 3 keeps frames 0 and 3; change_lighting has 4 jobs per frame
    assert sorted({r["source_id"] for r in rows}) == [f"{TOP}/episode_000001/frame_000000",
                                                     f"{TOP}/episode_000001/frame_000003"]
    assert len(rows) == 2 * 4 and all(r["error"] is None for r in rows)
    assert {r["source_caption"] for r in rows} == {TASKS[1]}
    meta = json.loads(rows[0]["source_meta"])
    assert meta["dataset"] == "lerobot" and meta["episode_index"] == 1 and meta["camera"] == TOP
    assert meta["task"] == TASKS[1]
    assert [r["episode"]["frame_index"] for r in rows[::4]] == [0, 3]


def test_parquet_input_and_kitti_and_nuscenes_trees_are_read(run_overrides, one_edit_scenario, tmp_path):
    # the read stage settles what a run makes of each input kind (read_stage_rows: no Ray needed)
    import io

    import pyarrow as pa
    from PIL import Image

    def png(value):
        buf = io.BytesIO()
        Image.new("RGB", (48, 32), (value, 80, 160)).save(buf, "PNG")
        return buf.getvalue()

    table = pa.table({"image": pa.array([{"bytes": png(10), "path": None}, None],
                                        pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "key": ["a", "b"], "text": ["a dashcam frame", "another"]})
    pq.write_table(table, tmp_path / "frames.parquet")
    kitti = tmp_path / "kitti" / "training" / "image_2"
    nusc = tmp_path / "nuscenes" / "samples" / "CAM_FRONT"
    for folder in (kitti, nusc):
        folder.mkdir(parents=True)
        Image.new("RGB", (48, 32), (90, 90, 90)).save(folder / "000001.png")
    rows = {r["source_id"]: r for r in read_stage_rows(one_edit_scenario, tmp_path / "frames.parquet",
                                                        [*run_overrides, "input.id_column=key", "input.caption_column=text"])}
    assert set(rows) == {"frames.parquet#a", "frames.parquet#b"}
    assert rows["frames.parquet#a"]["error"] is None and rows["frames.parquet#a"]["source_caption"] == "a dashcam frame"
    assert "image column 'image' is null" in rows["frames.parquet#b"]["error"]
    for name, ids in (("kitti", ["training/image_2/000001.png"]), ("nuscenes", ["samples/CAM_FRONT/000001.png"])):
        rows = read_stage_rows(one_edit_scenario, tmp_path / name, run_overrides)
        assert [r["source_id"] for r in rows] == ids and rows[0]["error"] is None, name
        assert rows[0]["_source_rgb"].shape == (32, 48, 3)
