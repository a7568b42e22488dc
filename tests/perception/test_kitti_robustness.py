"""The issue's "done": a labelled KITTI run with rain (two edits, unequal severity sets) and an inserted
pedestrian, a seeded jittered detector, and evaluate's numbers against the paper's formula recomputed here
from pycocotools' own AP. The stages run in process (fake editors, tests only); the Ray run of the same
code is tests/perception/test_evaluate_cli.py."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from helpers import NO_CLIP_BOUNDS
from perception_helpers import (fake_darken, fake_dataset, fake_insert, pycocotools_ap, write_jittered, write_kitti,
                                write_oracle)

from chronoedit_sim.perception.evaluate import build_index, screen, summarize
from chronoedit_sim.perception.export import export_benchmark
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.stages.detect import DetectStage, ShardImagesStage

RAIN = """name: rain
domain: driving
description: rain, as darkness
annotations: keep
edits:
  - id: steady
    prompt: "Make it rain {intensity}."
    vars: {intensity: [lightly, steadily, heavily]}
    severity: {intensity: {lightly: 1, steadily: 3, heavily: 5}}
    target_caption: rain
    source_caption: a street
    samples: 3
  - id: windshield
    prompt: "Rain {intensity} on the windshield."
    vars: {intensity: [lightly, steadily]}
    severity: {intensity: {lightly: 1, steadily: 3}}
    target_caption: rain
    source_caption: a street
    samples: 2
"""
INSERT = """name: insert_pedestrian
domain: driving
description: a pedestrian
labels: {inserted: pedestrian}
annotations: keep_and_insert
edits:
  - id: crossing
    prompt: Add a pedestrian.
    target_caption: a street with a pedestrian
    source_caption: a street
"""
# the stages in process on 33 jobs: ~8 s on 2 cores, over make test's budget; the formula, the AP and the
# taxonomy have fast tests of their own (test_robustness.py, tests/test_scenario.py)
pytestmark = pytest.mark.slow
OVERRIDES = ["model=tiny", "model.path=/unused", "scoring.clip.enabled=false", *NO_CLIP_BOUNDS]


def _edit(src, row):
    if row["scenario"] == "rain":
        return (src.astype(float) * (1 - 0.12 * row["severity"])).astype("uint8") if row["severity"] else fake_darken(src)
    return fake_insert(src)


@pytest.fixture(scope="module")
def kitti_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("kr")
    for name, text in (("rain", RAIN), ("insert_pedestrian", INSERT)):
        (root / f"{name}.yaml").write_text(text)
    return fake_dataset([root / "rain.yaml", root / "insert_pedestrian.yaml"], write_kitti(root / "kitti"),
                        root / "out", OVERRIDES, _edit)


def _detect_in_process(dataset, spec):
    """runtime/evaluate.py's detect_all without Ray: the same two stages, called here."""
    tasks, splits, info, frame_of = build_index(dataset, [], lambda *_: None)
    stage = DetectStage(spec, "cpu", Resources())
    stage.setup()
    raw = {}
    for group in ShardImagesStage(8).iter_batch(tasks):
        for row in stage.process_batch(group):
            assert row["error"] is None
            raw[row["job_id"]] = (row["detections"], row["size"])
    return splits, info, frame_of, raw


def _ap(images, dets):
    return pycocotools_ap(images, dets)[0]


def test_the_inserted_pedestrian_is_kittis_pedestrian_class(kitti_run, tmp_path):
    labels = {json.loads(a["attributes"] or "{}").get("edit") and a["label"]
              for shard in (kitti_run / "data").glob("*.parquet") for a in _annotations(shard)}
    assert labels - {None} == {"Pedestrian"}
    export_benchmark(kitti_run, tmp_path / "coco", "coco", where=["scenario=insert_pedestrian"], echo=lambda *_: None)
    cats = json.loads((tmp_path / "coco" / "annotations" / "instances_insert_pedestrian__crossing.json").read_text())
    assert [c["name"] for c in cats["categories"]] == ["Car", "Pedestrian"]  # one pedestrian class


def test_a_detector_answering_pedestrian_at_the_insertions_is_charged_nothing(kitti_run, tmp_path):
    """The oracle says `Pedestrian` (KITTI's class) at each inserted box: found, and no false positive."""
    splits, info, frame_of, raw = _detect_in_process(kitti_run, write_oracle(tmp_path / "oracle.py", kitti_run))
    assert {d["label"] for key, _ in splits["insert_pedestrian__crossing"] for d in raw[key][0]} == {"Car", "Pedestrian"}
    out = summarize(splits, info, frame_of, screen(splits, raw)[0], "oracle", bootstrap=0)
    section = out["truth_changing"]["insert_pedestrian__crossing"]
    assert (section["ap"], section["inserted_found"], section["inserted"]) == (pytest.approx(1.0), 3, 3)


def _annotations(shard):
    import pyarrow.parquet as pq

    return [a for anns in pq.read_table(shard, columns=["annotations"]).column("annotations").to_pylist() for a in anns]


def test_mpc_rpc_are_the_papers_and_insertions_have_their_own_section(kitti_run, tmp_path):
    splits, info, frame_of, raw = _detect_in_process(kitti_run, write_jittered(tmp_path / "jit.py", kitti_run, seed=7))
    dets, refused = screen(splits, raw)
    assert refused == []
    out = summarize(splits, info, frame_of, dets, "jit", bootstrap=100, seed=3)
    rain = {s for s in splits if s.startswith("rain__")}
    severities = defaultdict(set)
    for s in rain:
        severities[info[s]["edit_id"]].add(info[s]["severity"])
    assert severities == {"steady": {1, 3, 5}, "windshield": {1, 3}}  # unequal severity sets
    # the paper's formula, from pycocotools' AP of each split
    ap = {s: _ap(splits[s], dets) for s in [*rain, "clean"]}
    per_corruption = [sum(ap[s] for s in rain if info[s]["edit_id"] == e) / len(severities[e]) for e in severities]
    paper_mpc = sum(per_corruption) / len(per_corruption)
    assert out["mPC"] == pytest.approx(paper_mpc, abs=1e-12) and out["clean_ap"] == pytest.approx(ap["clean"], abs=1e-12)
    assert out["rPC"] == pytest.approx(paper_mpc / ap["clean"], abs=1e-12)
    assert out["mPC"] != pytest.approx(sum(ap[s] for s in rain) / len(rain), abs=1e-3)  # not the flat mean
    assert out["mPC"] < out["clean_ap"]  # the darker, the more jitter
    # the insertion: its own section, out of mPC; the detector says Pedestrian there and finds every one
    assert list(out["truth_changing"]) == ["insert_pedestrian__crossing"]
    section = out["truth_changing"]["insert_pedestrian__crossing"]
    assert (section["inserted_found"], section["inserted"], out["inserted_recall"]) == (3, 3, 1.0)
    for value, ci in ((out["clean_ap"], out["clean_ci"]), (out["mPC"], out["mPC_ci"]), (out["rPC"], out["rPC_ci"])):
        assert ci[0] <= value <= ci[1] and ci[0] < ci[1]
