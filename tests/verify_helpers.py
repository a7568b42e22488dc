"""Dataset-integrity helpers: small fake datasets without Ray, damage as disks and copies do it, and
`assert_whole(out)`, which every end-to-end test that makes a dataset can call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chronoedit_sim.config import OutputConfig
from chronoedit_sim.dataset.encode import encode_image
from chronoedit_sim.dataset.manifest import write_manifest
from chronoedit_sim.dataset.schema import SCHEMA_VERSION, base_row, finish_row, image_struct
from chronoedit_sim.dataset.sink import DatasetWriter
from chronoedit_sim.dataset.stats import tally_dataset
from chronoedit_sim.dataset.verify import verify


def assert_whole(out: Path, images: bool = True):
    """`chronoedit-sim verify OUT [--images]` must find the dataset whole; its report is the failure message."""
    verdict = verify(out, images=images)
    assert verdict.whole, "\n".join(verdict.lines())
    return verdict


def fake_row(i: int, keep: bool = True) -> dict:
    task = {"job_id": f"job{i}", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": i,
            "source_id": f"f{i}.png", "source_uri": f"/in/f{i}.png", "prompt": "p", "negative_prompt": "",
            "target_caption": "", "source_caption": "", "labels": {}, "choices": {}}
    row = base_row(task, "run0")
    png = encode_image(np.full((16, 16, 3), i * 10 % 256, np.uint8))
    row.update(keep=keep, random_weights=False, scorer="{}", source_image=image_struct(png),
               edited_image=image_struct(png))
    return finish_row(row)


def write_dataset(out: Path, n: int, per_shard: int = 1, start: int = 0) -> list[Path]:
    """Rows start..start+n-1 in shards of `per_shard` rows under OUT/data/; the shard paths in write order."""
    writer = DatasetWriter(out, OutputConfig(shard_max_rows=per_shard))
    for i in range(start, start + n):
        writer.add(fake_row(i), write_rejected=True)
    writer.flush()
    return writer.data.shards


def truncate(path: Path, keep: float = 0.5) -> None:
    """As a failed copy or a disk error leaves a file: its first part only."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def finish(out: Path, status: str = "finished", **counts) -> None:
    """A minimal run.json for a fake dataset: its last run's status and the counts its shards hold
    (each overridable, to make them disagree)."""
    write_manifest(out, {"schema_version": SCHEMA_VERSION, "config_hash": "fake",
                         "runs": [{"run_id": "r0", "started_at": "t0", "status": status}],
                         "counts": {"planned": None, **tally_dataset(out).counts, **counts}})
