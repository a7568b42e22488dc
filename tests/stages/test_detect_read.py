"""evaluate's read step (ShardImagesStage): a shard that cannot be read gives an error row per wanted image,
naming the shard and the reason, instead of failing the task (which Ray would report as the detector dying)."""

from __future__ import annotations

from chronoedit_sim.stages.detect import READ_FAILED, ShardImagesStage
from verify_helpers import truncate, write_dataset


def _task(shard, jobs, clean=()):
    return {"shard": str(shard), "edited": set(jobs), "clean": set(clean)}


def test_every_wanted_image_comes_out_once_with_its_bytes_or_the_reason_its_shard_failed(tmp_path):
    good, broken, gone, replaced = write_dataset(tmp_path, 8, per_shard=2)
    truncate(broken)
    gone.unlink()
    tasks = [_task(good, ["job0", "job1"], clean=["job0"]), _task(broken, ["job2", "job3"]),
             _task(gone, ["job4"], clean=["job5"]), _task(replaced, ["job6", "job7", "job9"])]
    rows = [row for group in ShardImagesStage(2).iter_batch(tasks) for row in group]
    assert sorted(r["job_id"] for r in rows) == sorted(["job0", "job1", "clean:job0", "job2", "job3", "job4",
                                                        "clean:job5", "job6", "job7", "job9"])
    ok = {r["job_id"] for r in rows if r["error"] is None}
    assert ok == {"job0", "job1", "clean:job0", "job6", "job7"} and all(
        r["image"][:4] == b"\x89PNG" for r in rows if r["error"] is None)
    errors = {r["job_id"]: r["error"] for r in rows if r["error"]}
    assert errors["job2"].startswith(f"{READ_FAILED}{broken.name}: ") and "Parquet" in errors["job2"]
    assert errors["clean:job5"].startswith(f"{READ_FAILED}{gone.name}: FileNotFoundError: ")
    assert errors["job9"] == f"{READ_FAILED}{replaced.name}: not in it any more (replaced since the index was read)"
    # a detector call's images travel together: no group is larger than asked, but for the error rows
    assert max(len([r for r in g if r["error"] is None]) for g in ShardImagesStage(2).iter_batch(tasks)) == 2
