"""`chronoedit-sim export-trajectories` over the session's tiny-model dataset (`report_dataset`)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from chronoedit_sim.cli import TRAJECTORY_FORMATS, main
from chronoedit_sim.dataset.encode import decode_rgb
from chronoedit_sim.dataset.trajectories import FORMATS, encode_trajectory, file_stem
from chronoedit_sim.dataset.video import decode_video

pytestmark = pytest.mark.ray


def rows(dataset, **where):
    table = pq.ParquetDataset(str(dataset / "data")).read(columns=["job_id", "keep", "error", "edit_id",
                                                                    "reasoning_frames"]).to_pylist()
    return [r for r in table if all(r[k] == v for k, v in where.items())]


def test_one_file_per_matching_row_named_by_job_id(report_dataset, tmp_path, capsys):
    kept = rows(report_dataset, keep=True)
    assert main(["export-trajectories", str(report_dataset), "--output", str(tmp_path / "mp4"),
                 "--where", "keep=true"]) == 0
    assert sorted(p.name for p in (tmp_path / "mp4").iterdir()) == sorted(f"{r['job_id']}.mp4" for r in kept)
    video = decode_video((tmp_path / "mp4" / f"{kept[0]['job_id']}.mp4").read_bytes())
    assert video.shape == (9, 96, 160, 3)  # every reasoning frame, at the stored size
    assert "2 trajectory file(s) (mp4)" in capsys.readouterr().out
    # the other formats, for the rejected rows of one edit (two conditions ANDed)
    rejected = rows(report_dataset, keep=False, error=None)
    for fmt in ("gif", "webp", "png-strip"):
        assert main(["export-trajectories", str(report_dataset), "--output", str(tmp_path / fmt), "--format", fmt,
                     "--where", "outcome=rejected,edit_id=strict"]) == 0
        files = sorted((tmp_path / fmt).iterdir())
        assert [p.name for p in files] == sorted(f"{r['job_id']}{FORMATS[fmt]}" for r in rejected)
        with Image.open(files[0]) as img:
            frames = getattr(img, "n_frames", 1)
            assert (frames, img.size) == ((1, (9 * 160, 96)) if fmt == "png-strip" else (9, (160, 96)))
    # failed rows have no trajectory: counted, nothing written
    assert main(["export-trajectories", str(report_dataset), "--output", str(tmp_path / "failed"),
                 "--where", "outcome=failed"]) == 0
    assert "0 trajectory file(s) (mp4)" in capsys.readouterr().out and not list((tmp_path / "failed").iterdir())


def test_a_bad_where_stops_before_anything_is_written(report_dataset, tmp_path, capsys):
    assert main(["export-trajectories", str(report_dataset), "--output", str(tmp_path / "x"),
                 "--where", "kept=true"]) == 2
    assert "--where 'kept=true': unknown column 'kept'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_formats_and_file_names():
    assert TRAJECTORY_FORMATS == tuple(FORMATS)  # the CLI's choices, kept apart so it stays light
    assert file_stem("0123abcdef") == "0123abcdef" and file_stem("../../etc/passwd").startswith("job-")
    odd = np.stack([np.full((15, 21, 3), 30 * i, np.uint8) for i in range(3)])
    assert decode_video(encode_trajectory(odd, "mp4")).shape == (3, 16, 22, 3)  # H.264 4:2:0 wants even sides
    assert decode_rgb(encode_trajectory(odd, "png-strip")).shape == (15, 63, 3)
