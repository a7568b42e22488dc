"""The issue's "done": one `chronoedit-sim run` with rain.yaml on ChronoEdit (the tiny RANDOM-weight model) and
coco_c.yaml on the corruption backend over a labelled KITTI tree, then `evaluate` with a seeded detector: one
eval.json with an mPC per backend, the COCO-C one equal to Michaelis et al.'s formula recomputed here from
pycocotools' AP of images read straight from the Parquet rows.

Slow: 2 frames x (75 corruptions + 3 rain edits) through Ray, plus glass_blur's numba kernel compiling in a
fresh worker (tens of seconds on 2 cores). The fast tests of the same parts: tests/engine/test_backends.py and
tests/perception/test_robustness.py."""

from __future__ import annotations

import importlib.util
import io
import json
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers import NO_CLIP_BOUNDS, write_scored_kitti
from perception_helpers import pycocotools_ap, write_jittered

from chronoedit_sim.cli import main
from chronoedit_sim.engine.backends.corruption import COCO_C, apply

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _rgb(image: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"))


def test_rain_on_chronoedit_and_coco_c_on_corruptions_give_an_mpc_per_backend(ray_session, run_overrides, tmp_path,
                                                                             capsys):
    out = tmp_path / "out"
    kitti = write_scored_kitti(tmp_path / "kitti")
    args = ["run", "scenarios/driving/rain.yaml", "scenarios/driving/coco_c.yaml", "--input", str(kitti),
            "--output", str(out), "--quiet", *run_overrides, *NO_CLIP_BOUNDS, "input.max_frames=2",
            ]
    assert main(args) == 0
    rows = [r for shard in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(shard).to_pylist()]
    assert [r for r in rows if r["error"]] == []
    by_backend = defaultdict(list)
    for r in rows:
        by_backend[r["backend"]].append(r)
    assert {b: len(v) for b, v in by_backend.items()} == {"chronoedit": 2 * 3, "corruption": 2 * 15 * 5}
    assert all(r["random_weights"] for r in by_backend["chronoedit"])
    assert all(r["model_id"].startswith("corruption (imagecorruptions-imaug") and r["random_weights"] is False
               and r["generation"] is None for r in by_backend["corruption"])
    # the stored pixels are the library's own for the row's seed and severity, at the source's size
    row = next(r for r in by_backend["corruption"] if r["edit_id"] == "glass_blur" and r["severity"] == 3)
    assert np.array_equal(_rgb(row["edited_image"]), apply(_rgb(row["source_image"]), "glass_blur", 3, row["seed"]))
    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "by backend: chronoedit 6 rows (kept 6, rejected 0, failed 0); corruption 150 rows (kept 150, " in printed
    assert ("NOTE: rows from a RANDOM-WEIGHT model (tiny checkpoint): the edits are noise (rows of chronoedit: 6; "
            "not those of corruption: 150)") in printed

    spec = write_jittered(tmp_path / "jit.py", out, seed=11)
    assert main(["evaluate", str(out), "--detector", spec, "--bootstrap", "0"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["by_backend"]) == {"chronoedit", "corruption"}

    # the recomputation: the detector on each corrupted image as stored, pycocotools' AP per (corruption,
    # severity), severities averaged within a corruption, then the 15 corruptions averaged
    path, name = spec.rsplit(":", 1)
    module = importlib.util.spec_from_file_location("jit", path)
    detector = importlib.util.module_from_spec(module)
    module.loader.exec_module(detector)
    splits = defaultdict(list)
    dets = {}
    for r in by_backend["corruption"]:
        dets[r["job_id"]] = getattr(detector, name)([Image.fromarray(_rgb(r["edited_image"]))])[0]
        splits[(r["edit_id"], r["severity"])].append((r["job_id"], r["annotations"]))
    per_corruption = [np.mean([pycocotools_ap(splits[(c, s)], dets)[0] for s in range(1, 6)]) for c in COCO_C]
    assert result["by_backend"]["corruption"]["mPC"] == pytest.approx(float(np.mean(per_corruption)), abs=1e-12)
    assert result["by_backend"]["chronoedit"]["mPC"] is not None
    assert result["by_backend"]["corruption"]["mPC"] != pytest.approx(result["by_backend"]["chronoedit"]["mPC"])
