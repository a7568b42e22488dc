"""`chronoedit-sim run` end to end on Ray with the tiny checkpoint: dataset, resume, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from chronoedit_sim.dataset.schema import SCHEMA
from chronoedit_sim.runtime.run import OutputConflict, run
from chronoedit_sim.stages.base import Resources, Stage
from helpers import older_toolkit_hash, read_stage_rows
from verify_helpers import assert_whole

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


def make_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y, x = np.mgrid[0:48, 0:80]
        img = np.stack([(x * 3 + i * 20) % 256, y * 5, np.full_like(x, 60 + i)], axis=-1).astype(np.uint8)
        Image.fromarray(img).save(folder / f"frame_{i:03d}.png")
    return folder


def read_rows(out: Path) -> pa.Table:
    return pq.ParquetDataset(str(out / "data")).read()


def never_twice_calls(rows: list[dict]) -> dict:
    """The component calls of one editor that encodes each prompt once and each frame once per
    resolution and frame count (these edits have no reasoning and no previews)."""
    g = [r["generation"] for r in rows]
    assert not any(x["reasoning"] for x in g) and not any(r["previews"] for r in rows)
    texts = {t for r, x in zip(rows, g) for t in ((r["prompt"], r["negative_prompt"]) if x["guidance"] > 1
                                                  else (r["prompt"],))}
    return {"text_encoder_calls": len(texts),
            "image_encoder_calls": len({(r["source_id"], x["height"], x["width"]) for r, x in zip(rows, g)}),
            "vae_encode_calls": len({(r["source_id"], x["height"], x["width"], x["num_frames"]) for r, x in zip(rows, g)}),
            "transformer_forwards": sum(x["steps"] * (2 if x["guidance"] > 1 else 1) for x in g),
            "vae_decode_calls": len(rows)}


def test_image_folder_and_two_shipped_scenarios(ray_session, tiny_overrides, tmp_path):
    frames = make_images(tmp_path / "frames", 1)
    out = tmp_path / "out"
    scenarios = [str(REPO / "scenarios/driving/rain.yaml"), str(REPO / "scenarios/robotics/change_lighting.yaml")]
    assert run(scenarios, str(frames), str(out), tiny_overrides, quiet=True, echo=lambda *_: None) == 0
    table = read_rows(out)
    # rows = frames x edits x samples: rain 2+1, change_lighting 1+2+1
    assert table.num_rows == 1 * (3 + 4)
    assert set(SCHEMA.names) <= set(table.schema.names)
    for field in SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    assert len(set(table["job_id"].to_pylist())) == table.num_rows
    rows = table.to_pylist()
    assert all(r["error"] is None for r in rows)
    # the score stage ran: CLIP and weight-free scores on every row, keep exactly when no bound failed
    assert all(r["scores"][k] is not None for r in rows for k in ("clip_text", "clip_image", "clip_direction", "ssim"))
    assert all(r["keep"] == (r["reject_reasons"] == []) for r in rows)
    # each rejection is structured and its text agrees with its numbers
    reasons = [x for r in rows for x in r["reject_reasons"]]
    assert reasons and all(x["text"].startswith(x["score"]) and x["bound"] in ("min", "max") for x in reasons)
    assert all(json.loads(r["nodes"]).keys() == {"read", "edit", "encode", "localize", "score"} for r in rows)
    assert all(json.loads(r["scorer"])["random_weights"] is True for r in rows)
    kept = sum(r["keep"] for r in rows)
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    row = ds[0]
    assert isinstance(row["edited_image"], Image.Image) and row["edited_image"].size == (160, 96)
    assert row["random_weights"] is True and json.loads(row["labels"])
    import duckdb

    counts = dict(duckdb.sql(f"select scenario, count(*) from '{out}/data/*.parquet' group by 1").fetchall())
    assert counts == {"rain": 3, "change_lighting": 4}
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"] == {"planned": 7, "written": 7, "kept": kept, "rejected": 7 - kept, "failed": 0,
                                  "failed_by_stage": {}, "component_calls": never_twice_calls(rows)}
    stats = manifest["filter_stats"]["rain/steady_rain"]
    assert stats["written"] == 2 and stats["kept"] + stats["rejected"] == 2
    assert stats["scores"]["clip_image"]["n"] == 2 and set(stats["scores"]["ssim"]) >= {"p05", "p50", "p95"}
    assert {s["name"] for s in manifest["scenarios"]} == {"rain", "change_lighting"}
    assert manifest["packages"]["diffusers"] and "generation:" in manifest["config_yaml"]
    from chronoedit_sim.dataset.inspect import summarize

    summary = summarize(out)
    assert summary[1] == f"kept {kept}, rejected {7 - kept}, failed 0" and "RANDOM-WEIGHT" in summary[2]
    assert "NOTE: scores from a RANDOM-WEIGHT CLIP: they mean nothing" in summary
    assert any(line.split()[:3] == ["rain/steady_rain", "2", str(stats["kept"])] for line in summary)
    assert any(line.startswith("clip_image ") for line in summary)  # quantile table
    calls = manifest["counts"]["component_calls"]
    assert f"model component calls: text encoder calls {calls['text_encoder_calls']}, image encoder calls 1," \
           f" vae encode calls 1, transformer forwards {calls['transformer_forwards']}, vae decode calls 7" in summary
    assert_whole(out)


def test_video_input_with_reasoning_and_bad_frames(ray_session, run_overrides, one_edit_scenario, tmp_path):
    frames = make_images(tmp_path / "frames", 2)
    (frames / "empty.png").write_bytes(b"")
    (frames / "text.png").write_text("not an image at all")
    buf = cv2.imencode(".jpg", np.full((48, 80, 3), 128, np.uint8))[1].tobytes()
    (frames / "truncated.jpg").write_bytes(buf[: len(buf) // 2])
    out = tmp_path / "out"
    code = run([str(one_edit_scenario)], str(frames), str(out),
               [*run_overrides, "generation.temporal_reasoning=true", "runtime.max_failed_fraction=0.9"],
               quiet=True, echo=lambda *_: None)
    assert code == 0
    rows = {r["source_id"]: r for r in read_rows(out).to_pylist()}
    assert set(rows) == {"frame_000.png", "frame_001.png", "empty.png", "text.png", "truncated.jpg"}
    assert "empty file (0 bytes)" in rows["empty.png"]["error"]
    assert {rows[k]["error_stage"] for k in ("empty.png", "text.png", "truncated.jpg")} == {"read"}
    assert "not a recognised image" in rows["text.png"]["error"]
    assert "corrupt or truncated" in rows["truncated.jpg"]["error"]
    assert all(rows[k]["keep"] is False for k in ("empty.png", "text.png", "truncated.jpg"))
    assert rows["frame_000.png"]["error"] is None and len(rows["frame_000.png"]["reasoning_frames"]) == 9
    assert rows["frame_000.png"]["reasoning_kind"] == "x0_at_step_k"
    # (too many failures give exit 3: tests/runtime/test_inputs.py's bad corpus run)

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (80, 48))
    for i in range(6):
        writer.write(np.full((48, 80, 3), 40 * i, np.uint8))
    writer.release()
    # a video input is read as a run would (read_stage_rows: after the read stage, runs do not differ by input)
    rows = read_stage_rows(one_edit_scenario, video, [*run_overrides, "input.stride=2"])
    assert [r["source_id"] for r in rows] == ["clip.mp4@000000@0.000s", "clip.mp4@000002@0.200s",
                                              "clip.mp4@000004@0.400s"]
    # frames 0, 2 and 4 of the 40-per-frame ramp (mp4v is lossy: a few levels off)
    assert np.allclose([r["_source_rgb"].mean() for r in rows], [0, 80, 160], atol=3)


@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_actor_killed_mid_run_still_gives_every_job_once(ray_session, run_overrides, one_edit_scenario, tmp_path):
    frames = make_images(tmp_path / "frames", 4)
    out = tmp_path / "out"
    assert run([str(one_edit_scenario)], str(frames), str(out), [*run_overrides, "runtime.faults.kill_actor_at_job=2"],
               quiet=True, echo=lambda *_: None) == 0
    assert (out / "_state" / "fault-injected").exists()  # the actor really died
    assert not list((out / "_state" / "inflight").glob("*"))  # and its in-flight record went with the run
    table = read_rows(out)
    assert sorted(table["source_id"].to_pylist()) == [f"frame_{i:03d}.png" for i in range(4)]
    assert table["error"].null_count == 4
    assert_whole(out)


def test_rerun_resumes_and_refuses_a_different_config(ray_session, run_overrides, one_edit_scenario, tmp_path):
    frames = make_images(tmp_path / "frames", 2)
    out = tmp_path / "out"
    args = ([str(one_edit_scenario)], str(frames), str(out))
    assert run(*args, run_overrides, quiet=True, echo=lambda *_: None) == 0
    first = read_rows(out)
    lines = []
    assert run(*args, run_overrides, quiet=True, echo=lines.append) == 0
    assert "written 0 this run (2 resumed-skipped)" in lines[-1]
    assert read_rows(out).num_rows == first.num_rows == 2
    # made by a toolkit before input.stride existed: resumes while the key holds its default, and the next
    # run.json records this toolkit's hash
    manifest = json.loads((out / "run.json").read_text())
    hash_now = manifest["config_hash"]
    del manifest["config"]["input"]["stride"]
    manifest["config_hash"] = older_toolkit_hash(manifest["config"], manifest["input_path"],
                                                 [s["sha256"] for s in manifest["scenarios"]])
    (out / "run.json").write_text(json.dumps(manifest))
    assert run(*args, run_overrides, quiet=True, echo=lines.append) == 0
    assert "written 0 this run (2 resumed-skipped)" in lines[-1]
    assert json.loads((out / "run.json").read_text())["config_hash"] == hash_now
    with pytest.raises(OutputConflict, match="different config or scenarios"):
        run(*args, [*run_overrides, "seed=9"], quiet=True, echo=lambda *_: None)
    assert run(*args, [*run_overrides, "seed=9"], overwrite=True, quiet=True, echo=lambda *_: None) == 0
    assert read_rows(out)["seed"].to_pylist() != first["seed"].to_pylist()
    # another input folder into the same output is a different dataset, not frames "already done"
    other = make_images(tmp_path / "other", 2)
    with pytest.raises(OutputConflict, match="different config or scenarios"):
        run([str(one_edit_scenario)], str(other), str(out), [*run_overrides, "seed=9"], quiet=True,
            echo=lambda *_: None)


def test_overwrite_never_deletes_a_folder_that_is_not_a_dataset(tiny_overrides, one_edit_scenario, tmp_path):
    frames = make_images(tmp_path / "frames", 1)
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputConflict, match="not a chronoedit-sim dataset"):
        run([str(one_edit_scenario)], str(frames), str(precious), tiny_overrides, overwrite=True,
            echo=lambda *_: None)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_dry_run_loads_no_model_and_writes_nothing(tiny_overrides, one_edit_scenario, tmp_path):
    frames = make_images(tmp_path / "frames", 3)
    lines = []
    out = tmp_path / "out"
    assert run([str(one_edit_scenario)], str(frames), str(out), ["model=chronoedit-14b"], dry_run=True,
               echo=lines.append) == 0
    assert lines[1] == "jobs: 3 planned, 0 already done, 3 to run"
    assert any(line.startswith("ray: ") for line in lines) and not out.exists()


@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_driver_killed_mid_write_and_between_shards_then_rerun_gives_every_job_once(ray_session, run_overrides,
                                                                                   one_edit_scenario, tmp_path):
    """Deterministic kills of a separate driver process through the fault hooks: first between a shard's
    complete temporary file and its rename, then after rows of a resumed run. The killed drivers join
    the session's Ray (runtime.address), as a driver on a cluster does; the last run resumes in-process."""
    frames = make_images(tmp_path / "frames", 6)
    out = tmp_path / "out"
    overrides = [*run_overrides, "output.shard_max_rows=1"]
    cmd = [sys.executable, "-m", "chronoedit_sim.cli", "run", str(one_edit_scenario), "--input", str(frames),
           "--output", str(out), "-q", *overrides, f"runtime.address={ray_session}"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}

    def run_cli(*extra):
        return subprocess.run([*cmd, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=300)

    def shards():
        return sorted(p.name for p in (out / "data").iterdir())

    killed = run_cli("runtime.faults.kill_driver_before_rename=3")
    assert killed.returncode == -signal.SIGKILL
    names = shards()
    # two complete shards, and the third written in full but never renamed: invisible to readers
    assert len(names) == 3 and names[0].startswith(".part-") and names[0].endswith(".tmp")
    assert [pq.read_metadata(out / "data" / n).num_rows for n in names[1:]] == [1, 1]
    assert pq.ParquetDataset(str(out / "data")).read().num_rows == 2
    killed = run_cli("runtime.faults.kill_driver_after_rows=2")  # the resumed run dies after 2 more rows
    assert killed.returncode == -signal.SIGKILL
    assert not any(n.startswith(".") for n in shards()) and len(shards()) == 4  # the .tmp is gone
    runs = json.loads((out / "run.json").read_text())["runs"]
    assert [r["partial_shards_removed"] for r in runs] == [0, 1]
    # the killed drivers' rows ran on the session's Ray node: runtime.address was joined, not a private instance
    import ray

    assert {n for r in read_rows(out).to_pylist() for n in json.loads(r["nodes"]).values()} == {
        ray.get_runtime_context().get_node_id()}
    assert run([str(one_edit_scenario)], str(frames), str(out), overrides, quiet=True, echo=lambda *_: None) == 0
    table = read_rows(out)
    assert sorted(table["source_id"].to_pylist()) == [f"frame_{i:03d}.png" for i in range(6)]
    assert len(set(table["job_id"].to_pylist())) == 6 and len(shards()) == 6
    assert_whole(out)


@pytest.mark.slow  # fault injection: a minute or more of Ray runs on 2 cores (make test-slow)
def test_a_job_that_always_kills_its_actor_becomes_an_error_row(ray_session, run_overrides, one_edit_scenario,
                                                                 tmp_path):
    frames = make_images(tmp_path / "frames", 3)
    out = tmp_path / "out"
    code = run([str(one_edit_scenario)], str(frames), str(out),
               [*run_overrides, "runtime.faults.kill_actor_on_source=frame_001.png", "runtime.max_restarts=1",
                "runtime.max_failed_fraction=0.5"], quiet=True, echo=lambda *_: None)
    assert code == 0
    rows = {r["source_id"]: r for r in read_rows(out).to_pylist()}
    assert sorted(rows) == ["frame_000.png", "frame_001.png", "frame_002.png"]
    assert rows["frame_001.png"]["error"].startswith("edit: the worker process died on this job 2 time(s)")
    assert rows["frame_001.png"]["error_stage"] == "edit"
    assert rows["frame_001.png"]["keep"] is False
    assert rows["frame_000.png"]["error"] is None and rows["frame_002.png"]["error"] is None
    assert_whole(out)


class Tagger(Stage):
    """A small extra stage between edit and encode: it sees the edit's raw frames and no stored bytes yet."""

    name = "tag"

    def __init__(self):
        self.resources = Resources(cpus=0.25)  # no actors: Ray tasks

    def process_row(self, row):
        row["prompt"] += f" [tag: {row['_edited_rgb'].shape}, encoded={row['edited_image'] is not None}]"
        return row


def test_an_inserted_stage_runs_in_order_and_video_storage(ray_session, run_overrides, one_edit_scenario, tmp_path,
                                                           monkeypatch):
    import ray.cloudpickle

    from chronoedit_sim.dataset.video import decode_video
    from chronoedit_sim.runtime import pipeline

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    stages = list(pipeline.PIPELINE)
    after_edit = stages.index(pipeline.edit_stage) + 1
    monkeypatch.setattr(pipeline, "PIPELINE", [*stages[:after_edit], lambda ctx: Tagger(), *stages[after_edit:]])
    frames = make_images(tmp_path / "frames", 2)
    out = tmp_path / "out"
    assert run([str(one_edit_scenario)], str(frames), str(out),
               [*run_overrides, "generation.temporal_reasoning=true", "trajectory.storage=video"],
               quiet=True, echo=lambda *_: None) == 0
    rows = read_rows(out).to_pylist()
    assert len(rows) == 2
    for r in rows:
        assert r["prompt"].endswith(" [tag: (96, 160, 3), encoded=False]")  # after edit, before encode
        assert list(json.loads(r["nodes"])) == ["edit", "encode", "localize", "read", "score", "tag"]
        assert r["reasoning_frames"] == [] and r["reasoning_video"]["path"] == "reasoning.mp4"
        video = decode_video(r["reasoning_video"]["bytes"])
        assert video.shape == (9, 96, 160, 3)
        assert r["scores"]["flow_warp_error"] is not None  # scored from the raw frames, not the video
    assert_whole(out)  # with --images: every video decodes
