"""`export --format diffsynth`: a DiffSynth-Studio training set that reads back as (input, edit, prompt)."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq

from helpers import NO_CLIP_BOUNDS
from perception_helpers import fake_darken, fake_dataset, write_kitti

from chronoedit_sim.cli import EXPORT_FORMATS, main
from chronoedit_sim.dataset.encode import decode_rgb
from chronoedit_sim.dataset.video import decode_video
from chronoedit_sim.perception.export import FORMATS

SCENARIO = """name: dark
domain: driving
description: darker
edits:
  - id: night
    prompt: "Make it night. Keep the cars."
    target_caption: a street at night
    source_caption: a street
"""


def test_kept_edits_become_two_frame_videos_with_their_prompt(tmp_path, capsys):
    (tmp_path / "dark.yaml").write_text(SCENARIO)
    data = fake_dataset([tmp_path / "dark.yaml"], write_kitti(tmp_path / "kitti"), tmp_path / "ds",
                        ["model=tiny", "model.path=/unused", "scoring.clip.enabled=false", *NO_CLIP_BOUNDS,
                         "filter.ssim_max=0.99"], lambda src, row: fake_darken(src) if "000001" not in row["source_id"]
                        else src.copy())  # an unchanged frame: ssim 1 > 0.99, rejected, so not exported
    assert main(["export", str(data), "--format", "diffsynth", "--output", str(tmp_path / "train")]) == 0
    assert "2 training example(s)" in capsys.readouterr().out
    rows = {r["job_id"]: r for r in pq.ParquetDataset(str(data / "data")).read().to_pylist()}
    with open(tmp_path / "train" / "metadata.csv") as fh:
        entries = list(csv.DictReader(fh))
    assert len(entries) == 2 and all(rows[e["key"]]["keep"] for e in entries)
    for e in entries:
        row = rows[e["key"]]
        assert e["video"] == f"videos/{e['key']}.mp4" and e["prompt"] == "Make it night. Keep the cars."
        frames = decode_video((tmp_path / "train" / e["video"]).read_bytes())
        assert frames.shape == (2, 64, 96, 3)  # input, then the edit, at the edit's size
        for got, want in zip(frames, (row["source_image"], row["edited_image"])):
            err = np.abs(got.astype(int) - decode_rgb(want["bytes"]).astype(int)).mean()
            assert err < 3.0  # CRF 10: within codec tolerance


def test_the_cli_offers_every_export_format():
    assert EXPORT_FORMATS == (*FORMATS, "diffsynth", "lerobot", "video")  # the CLI's choices, kept apart so it stays light
