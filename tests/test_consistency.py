"""Consistency groups (#13): an edit's variable choices, seed and sketch placement shared across the frames of
a sequence or the cameras of an instant, job ids still per frame; the sources' group ids. Pure planning: no
model, no Ray."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from helpers import make_dataset

from chronoedit_sim.config import ConfigError, ConfigLoader, InputConfig
from chronoedit_sim.runtime.plan import make_plan
from chronoedit_sim.scenario import expand_edit, parse_scenario
from chronoedit_sim.sources.dispatch import list_input

WEATHER = ("name: weather\ndomain: robotics\ndescription: test\nconsistent_across: {mode}\nedits:\n"
           "  - id: rain\n    prompt: 'Make it rain {{how}}.'\n    vars: {{how: [lightly, moderately, heavily]}}\n"
           "    target_caption: rain\n    source_caption: a scene\n    samples: 2\n")


def _edit(mode: str):
    scenario = parse_scenario(WEATHER.format(mode=mode))
    return scenario, scenario.edits[0]


def test_a_sequence_shares_choices_and_seeds_and_job_ids_stay_per_frame():
    scenario, edit = _edit("sequence")
    first = expand_edit(scenario, edit, "cam/episode_000000/frame_000000", 7, {"sequence": "episode_000000"})
    later = expand_edit(scenario, edit, "cam/episode_000000/frame_000005", 7, {"sequence": "episode_000000"})
    other = expand_edit(scenario, edit, "cam/episode_000001/frame_000000", 7, {"sequence": "episode_000001"})
    # pinned: the group's (run seed, group, edit, sample) decides them, whichever frame asks
    assert [(j.prompt, j.seed) for j in first] == [(j.prompt, j.seed) for j in later] == [
        ("Make it rain lightly.", 6842872697542464738), ("Make it rain heavily.", 5883676122690531072)]
    assert [(j.prompt, j.seed) for j in other] == [
        ("Make it rain lightly.", 895666908847716214), ("Make it rain moderately.", 4906698971341618815)]
    assert len({j.job_id for j in first + later + other}) == 6


def test_frame_mode_and_a_frame_without_a_group_keep_their_own_draws():
    frame_scenario, frame_edit = _edit("frame")
    seq_scenario, seq_edit = _edit("sequence")
    own = expand_edit(frame_scenario, frame_edit, "a.png", 7, {"sequence": "s"})
    lone = expand_edit(seq_scenario, seq_edit, "a.png", 7, {"sequence": None})
    # the same draws as before groups existed (job id -> seed), and a groupless frame is its own group
    assert [j.seed for j in own] == [j.seed for j in lone] == [6144346658787923345, 5000482000592442336]


def test_an_unknown_consistency_is_refused():
    with pytest.raises(ConfigError, match=r"consistent_across: 'episode' is not one of frame, sequence, instant"):
        parse_scenario(WEATHER.format(mode="episode"))


def _plan(tmp_path, input_path, mode: str):
    path = tmp_path / "weather.yaml"
    path.write_text(WEATHER.format(mode=mode))
    return make_plan(ConfigLoader(["model=tiny", f"input.path={input_path}"]), [str(path)])


def _jobs(plan):
    return [(task["ref"], job) for task in plan.frame_tasks() for job in task["jobs"]]


def test_a_lerobot_episode_is_a_sequence_and_its_cameras_at_a_frame_an_instant(tmp_path):
    root = make_dataset(tmp_path / "lerobot")
    refs = list_input(InputConfig(path=str(root)))
    assert {r.sequence_id for r in refs} == {"episode_000000", "episode_000001"}
    assert len({r.instant_id for r in refs}) == 10 and len(refs) == 20  # 2 cameras at each of 10 frames
    jobs = _jobs(_plan(tmp_path, root, "sequence"))
    by_episode = {}
    for ref, job in jobs:
        by_episode.setdefault(ref.sequence_id, set()).add((job["sample_index"], job["prompt"], job["seed"]))
        assert job["sequence_id"] == ref.sequence_id and job["instant_id"] == ref.instant_id
    assert {k: len(v) for k, v in by_episode.items()} == {"episode_000000": 2, "episode_000001": 2}
    assert by_episode["episode_000000"] != by_episode["episode_000001"]


def _nuscenes(root):
    """Two samples of one scene, two cameras each, with only the tables the groups need."""
    sample_data = []
    for sample in ("s1", "s2"):
        for cam in ("CAM_FRONT", "CAM_BACK"):
            name = f"samples/{cam}/{sample}_{cam}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 32)).save(root / name)
            sample_data.append({"token": f"{sample}{cam}", "sample_token": sample, "ego_pose_token": "e",
                                "calibrated_sensor_token": "c", "filename": name, "width": 64, "height": 32})
    (root / "v1.0-mini").mkdir()
    (root / "v1.0-mini" / "sample_data.json").write_text(json.dumps(sample_data))
    (root / "v1.0-mini" / "sample.json").write_text(json.dumps([{"token": s, "scene_token": "scene-1"}
                                                                for s in ("s1", "s2")]))
    return root


def test_the_cameras_of_a_nuscenes_sample_share_one_prompt(tmp_path):
    root = _nuscenes(tmp_path / "nusc")
    jobs = _jobs(_plan(tmp_path, root, "instant"))
    assert {ref.instant_id for ref, _ in jobs} == {"s1", "s2"} and {ref.sequence_id for ref, _ in jobs} == {"scene-1"}
    draws = {}
    for ref, job in jobs:
        draws.setdefault(ref.instant_id, set()).add((job["sample_index"], job["prompt"], job["seed"]))
    assert len(draws["s1"]) == len(draws["s2"]) == 2 and draws["s1"] != draws["s2"]
    scene = {(job["sample_index"], job["prompt"], job["seed"]) for _, job in _jobs(_plan(tmp_path, root, "sequence"))}
    assert len(scene) == 2  # the whole scene, both samples and both cameras, draws once per sample index


def test_kitti_raw_drives_are_sequences_and_stereo_pairs_instants(tmp_path):
    drive = tmp_path / "kitti" / "2011_09_26" / "2011_09_26_drive_0001_sync"
    for cam in ("image_02", "image_03"):
        for i in range(2):
            (drive / cam / "data").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 32)).save(drive / cam / "data" / f"{i:010d}.png")
    refs = list_input(InputConfig(path=str(tmp_path / "kitti")))
    assert {r.sequence_id for r in refs} == {"2011_09_26/2011_09_26_drive_0001_sync"}
    assert sorted({r.instant_id for r in refs}) == ["2011_09_26/2011_09_26_drive_0001_sync/0000000000",
                                                   "2011_09_26/2011_09_26_drive_0001_sync/0000000001"]


def test_kitti_tracking_folders_are_separate_sequences(tmp_path):
    for seq in ("0000", "0001"):
        for cam in ("image_02", "image_03"):
            (tmp_path / "kitti" / "training" / cam / seq).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 32)).save(tmp_path / "kitti" / "training" / cam / seq / "000000.png")
    refs = list_input(InputConfig(path=str(tmp_path / "kitti")))
    assert sorted({r.sequence_id for r in refs}) == ["training/0000", "training/0001"]
    assert sorted({r.instant_id for r in refs}) == ["training/0000/000000", "training/0001/000000"]
