"""The streamed plan: lazy listing, jobs expanded frame by frame, the compact resume index (no Ray)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from PIL import Image

from chronoedit_sim.config import ConfigError, ConfigLoader
from chronoedit_sim.dataset.jobindex import JobIndex, column_hashes, job_hash
from chronoedit_sim.runtime.plan import describe, make_plan
from chronoedit_sim.scenario import make_job_id
from chronoedit_sim.sources.base import FrameRef, InputError
from helpers import older_toolkit_hash

SCENARIO = """name: relight
domain: driving
description: test
edits:
  - id: dusk
    prompt: Make it dusk.
    target_caption: a street at dusk
    source_caption: a street
    samples: {samples}
"""


def _plan(tmp_path, input_path, samples=2, done=None):
    path = tmp_path / "relight.yaml"
    path.write_text(SCENARIO.format(samples=samples))
    return make_plan(ConfigLoader(["model=tiny", f"input.path={input_path}"]), [str(path)], done)


def _frames(folder, n):
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (32, 16), (i, 0, 0)).save(folder / f"{i:03d}.png")
    return folder


def write_video(path, n):
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 16))
    for i in range(n):
        writer.write(np.full((16, 32, 3), i * 40, np.uint8))
    writer.release()
    return path


def test_a_billion_jobs_a_frame_is_refused_at_once_with_its_count(tmp_path):
    with pytest.raises(ConfigError, match=r"each frame expands to 1,000,000,000 jobs"):
        _plan(tmp_path, _frames(tmp_path / "in", 1), samples=10**9)


def test_the_plan_pulls_one_frame_ahead_of_the_task_it_hands_out(tmp_path):
    plan = _plan(tmp_path, _frames(tmp_path / "in", 50))
    pulled = []

    def counted():
        for ref in type(plan).refs(plan):
            pulled.append(ref.source_id)
            yield ref

    plan.refs = counted
    first = next(plan.frame_tasks())
    assert first["ref"].source_id == "000.png" and len(first["jobs"]) == 2
    assert pulled == ["000.png", "001.png"]  # the next frame decides whether a stream goes on


def test_done_jobs_are_skipped_and_counted_and_ids_stay_those_of_the_listing(tmp_path):
    frames = _frames(tmp_path / "in", 3)
    fresh = _plan(tmp_path, frames)
    ids = [job["job_id"] for task in fresh.frame_tasks() for job in task["jobs"]]
    assert ids == [make_job_id("relight", "dusk", k, f"{i:03d}.png") for i in range(3) for k in range(2)]
    resumed = _plan(tmp_path, frames, done=JobIndex.of(ids[:3]))
    assert [job["job_id"] for task in resumed.frame_tasks() for job in task["jobs"]] == ids[3:]
    counts = resumed.counts()
    assert (counts.frames, counts.planned, counts.skipped, counts.remaining) == (3, 6, 3, 3)
    assert counts.planned_by_edit == {"relight/dusk": 6}
    assert describe(resumed)[1] == "jobs: 6 planned, 3 already done, 3 to run"


def test_a_video_frame_knows_its_previous_and_next_jobs(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 3)
    plan = _plan(tmp_path, clip, samples=1)
    ids = [job["job_id"] for task in plan.frame_tasks() for job in task["jobs"]]
    links = [job["sequence_link"] for task in plan.frame_tasks() for job in task["jobs"]]
    assert links == [{"previous": None, "previous_done": False, "has_next": True},
                     {"previous": ids[0], "previous_done": False, "has_next": True},
                     {"previous": ids[1], "previous_done": False, "has_next": False}]
    # resumed after the first two frames: the third reads its previous back; the second is not pending
    resumed = _plan(tmp_path, clip, samples=1, done=JobIndex.of(ids[:2]))
    (task,) = resumed.frame_tasks()
    assert task["jobs"][0]["sequence_link"] == {"previous": ids[1], "previous_done": True, "has_next": False}
    # the middle one done: the first keeps no frames for it (its next is not pending), the last reads it back
    resumed = _plan(tmp_path, clip, samples=1, done=JobIndex.of(ids[1:2]))
    assert [job["sequence_link"] for task in resumed.frame_tasks() for job in task["jobs"]] == [
        {"previous": None, "previous_done": False, "has_next": False},
        {"previous": ids[1], "previous_done": True, "has_next": False}]


def test_a_sequence_listed_in_two_pieces_is_an_input_error(tmp_path):
    plan = _plan(tmp_path, _frames(tmp_path / "in", 1))
    refs = [FrameRef(f"{s}/{i}.png", "", "", -1, None, sequence_id=s) for s, i in (("a", 0), ("b", 0), ("a", 1))]
    plan.refs = lambda: iter(refs)
    with pytest.raises(InputError, match=r"the frames of sequence a \(camera None\) are not listed together"):
        list(plan.frame_tasks())
    plan.refs = lambda: iter([refs[2], refs[0]])
    with pytest.raises(InputError, match=r"a/0.png is listed after a/1.png in sequence a but comes before it"):
        list(plan.frame_tasks())


def test_the_resume_index_reads_hashes_from_the_column_buffers():
    ids = [make_job_id("s", "e", k, "f.png") for k in range(5)]
    column = pa.chunked_array([pa.array(ids[:2]), pa.array(ids[2:] + ["j0"]).slice(1)])
    assert column_hashes(column).tolist() == [job_hash(i) for i in ids[:2] + ids[3:] + ["j0"]]
    assert job_hash(ids[0]) == int(ids[0][:16], 16)  # a job id's hash is its own first 16 digits
    index = JobIndex(column_hashes(column))
    assert len(index) == 5 and ids[0] in index and ids[2] not in index and "j0" in index
    assert index.add(ids[2]) and not index.add(ids[2]) and ids[2] in index and len(index) == 6
    # a foreign id of 16 hex digits then non-ASCII (20 bytes in 18 characters): the buffers and the string agree
    foreign = ["0123456789abcdefüü", ids[0]]
    assert column_hashes(pa.array(foreign)).tolist() == [job_hash(i) for i in foreign]
    assert foreign[0] in JobIndex(column_hashes(pa.array(foreign)))


def test_an_input_error_raised_in_the_listing_task_reaches_the_user_as_its_one_line():
    from ray.exceptions import RayTaskError

    from chronoedit_sim.runtime.ray_runner import _input_error

    task_error = RayTaskError("read", "Traceback (most recent call last): ...",
                              InputError("input.path: in: video b.mp4 has no frames")).as_instanceof_cause()
    try:
        raise RuntimeError("Ray Data: the read operator failed") from task_error
    except RuntimeError as wrapped:
        assert repr(_input_error(wrapped)) == "InputError('input.path: in: video b.mp4 has no frames')"
    assert _input_error(RuntimeError("a node was lost")) is None


def test_where_a_node_keeps_its_caches_is_not_part_of_the_config_hash(tmp_path):
    from chronoedit_sim.config import to_dict
    from chronoedit_sim.runtime.output import config_changes
    from chronoedit_sim.runtime.plan import content_hash

    def config(*overrides):
        return ConfigLoader(["model=tiny", f"input.path={tmp_path}", *overrides]).build()

    base = content_hash(config(), [])
    caches = config("model.cache_dir=/a", "input.video_cache_dir=/c", "input.video_cache_gb=1")
    assert content_hash(caches, []) == base
    assert config_changes({"config": to_dict(config()), "input_path": str(tmp_path)}, caches, []) == []
    assert content_hash(config("seed=9"), []) != base and content_hash(config("input.stride=2"), []) != base


def test_a_dataset_made_before_a_config_key_existed_resumes_while_the_key_holds_its_default(tmp_path):
    from chronoedit_sim.config import to_dict
    from chronoedit_sim.runtime.output import OutputConflict, check_plan, config_changes
    from chronoedit_sim.runtime.plan import RunPlan, content_hash

    def plan(*overrides):
        cfg = ConfigLoader(["model=tiny", f"input.path={tmp_path}", *overrides]).build()
        return RunPlan(cfg=cfg, scenarios=[], settings={}, config_hash=content_hash(cfg, []))

    recorded = to_dict(plan().cfg)
    del recorded["input"]["stride"], recorded["model"]["step_cache"]  # keys the older toolkit lacked
    previous = {"config": recorded, "input_path": str(tmp_path),
                "config_hash": older_toolkit_hash(recorded, str(tmp_path), [])}
    assert previous["config_hash"] != plan().config_hash  # what refused such a resume before
    check_plan(tmp_path, previous, plan())  # resumes
    assert config_changes(previous, plan().cfg, []) == []
    with pytest.raises(OutputConflict, match=r"different config or scenarios \(input.stride None -> 2; config hash"):
        check_plan(tmp_path, previous, plan("input.stride=2"))  # a new key set otherwise changes the rows
    with pytest.raises(OutputConflict, match=r"\(seed 0 -> 9; config hash"):
        check_plan(tmp_path, previous, plan("seed=9"))
    # outside the hash but deciding what source_image holds (the edited frame, or a lossy copy of it)
    with pytest.raises(OutputConflict, match=r"stores its rows otherwise \(output.source_format 'png' -> 'jpeg'\)"):
        check_plan(tmp_path, previous, plan("output.source_format=jpeg"))
    check_plan(tmp_path, previous, plan("output.shard_max_rows=7"))  # layout only


def test_the_end_of_a_run_writes_error_rows_for_given_up_jobs_only_never_for_frames_added_meanwhile(
        tmp_path, one_edit_scenario):
    from chronoedit_sim.runtime.ray_runner import given_up_rows

    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 16), (i, 0, 0)).save(frames / f"f{i}.png")
    plan = make_plan(ConfigLoader(["model.path=/nowhere", f"input.path={frames}"]), [str(one_edit_scenario)])
    jobs = {task["ref"].source_id: task["jobs"][0]["job_id"] for task in plan.frame_tasks()}
    written = JobIndex.of([jobs["f0.png"]])
    given_up = {jobs["f1.png"]: ("edit", "the worker process died on this job 4 time(s)")}
    Image.new("RGB", (32, 16)).save(frames / "f3.png")  # a frame the run's stream never listed
    rows = list(given_up_rows(plan, written, given_up, "run"))
    assert [(r["source_id"], r["job_id"], r["error_stage"]) for r in rows] == [("f1.png", jobs["f1.png"], "edit")]
    assert rows[0]["error"].startswith("edit: the worker process died on this job 4 time(s)")
    assert list(given_up_rows(plan, written, {}, "run")) == []  # f2 and f3 are left to the next run
