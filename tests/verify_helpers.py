"""Dataset-integrity helpers: small fake datasets without Ray, damage as disks and copies do it, and
`assert_whole(out)`, which every end-to-end test that makes a dataset can call."""

from __future__ import annotations

from pathlib import Path

from chronoedit_sim.config import OutputConfig
from chronoedit_sim.dataset.schema import base_row, finish_row
from chronoedit_sim.dataset.sink import DatasetWriter


def fake_row(i: int, keep: bool = True) -> dict:
    task = {"job_id": f"job{i}", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": i,
            "source_id": f"f{i}.png", "source_uri": f"/in/f{i}.png", "prompt": "p", "negative_prompt": "",
            "target_caption": "", "source_caption": "", "labels": {}, "choices": {}}
    row = base_row(task, "run0")
    row.update(keep=keep, random_weights=False, scorer="{}")
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
