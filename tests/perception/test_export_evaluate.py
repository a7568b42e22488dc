"""Benchmarks out of a dataset (export coco | yolo | kitti, severity ladders) and a detector's numbers on
them (evaluate), with known answers: fake editors with known effects, an oracle detector (AP 1.0 on every
split) and a colour-blob detector whose AP falls under darkening."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml

from perception_helpers import (BLOB_DETECTOR, PASTE_BOX, SCENES, fake_darken, fake_dataset, fake_insert, write_kitti,
                                write_jittered, write_oracle)
from helpers import NO_CLIP_BOUNDS

from chronoedit_sim.errors import UserError
from chronoedit_sim.perception.evaluate import summarize
from chronoedit_sim.perception.export import export_benchmark
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.stages.detect import START_FAILED, DetectStage, load_callable

WEATHER = """name: weather
domain: driving
description: darker
annotations: keep
edits:
  - id: dark
    prompt: "Make it {level} dark."
    vars: {level: [slightly, very]}
    severity: {level: {slightly: 1, very: 3}}
    target_caption: a dark street
    source_caption: a street
"""
INSERT = """name: insert
domain: driving
description: a new object
labels: {inserted: sign}
annotations: keep_and_insert
edits:
  - id: sign
    prompt: Add a yellow sign.
    target_caption: a street with a sign
    source_caption: a street
"""
OVERRIDES = ["model=tiny", "model.path=/unused", "scoring.clip.enabled=false", *NO_CLIP_BOUNDS]


def _edit(src, row):
    return fake_darken(src) if row["scenario"] == "weather" else fake_insert(src)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """3 KITTI frames (one with a DontCare region) x (a darkening with severities, an insertion), edited by the
    fake editors with a blended trajectory; written by the run's own read, encode, localize and score stages."""
    root = tmp_path_factory.mktemp("fake")
    for name, text in (("weather", WEATHER), ("insert", INSERT)):
        (root / f"{name}.yaml").write_text(text)
    kitti = write_kitti(root / "kitti", dontcare=True)
    return fake_dataset([root / "weather.yaml", root / "insert.yaml"], kitti, root / "out", OVERRIDES, _edit,
                        reasoning=True)


def _rows(dataset):
    import pyarrow.parquet as pq

    return pq.ParquetDataset(str(dataset / "data")).read().to_pylist()


def _manifest(out):
    with open(out / "manifest.csv") as fh:
        return list(csv.DictReader(fh))


def test_coco_export_has_one_split_per_edit_and_severity_and_pycocotools_reads_it(fake, tmp_path):
    from pycocotools.coco import COCO

    rows = _rows(fake)
    counts = export_benchmark(fake, tmp_path / "coco", "coco", echo=lambda *_: None)
    severities = sorted({r["severity"] for r in rows if r["scenario"] == "weather"})
    assert counts == {"clean": 3, "insert__sign": 3,
                      **{f"weather__dark__s{s}": sum(r["severity"] == s for r in rows) for s in severities}}
    clean = COCO(str(tmp_path / "coco" / "annotations" / "instances_clean.json"))
    # the same categories, in the same ids, in every split; DontCare is an ignore region of each, not a class
    assert [c["name"] for c in clean.loadCats(clean.getCatIds())] == ["Car", "Pedestrian", "sign"]
    manifest = {m["file"]: m for m in _manifest(tmp_path / "coco")}
    for img in clean.loadImgs(clean.getImgIds()):
        entry = manifest[f"images/clean/{img['file_name']}"]
        objects = SCENES[entry["source_id"].split("/")[-1][:6]]
        anns = clean.loadAnns(clean.getAnnIds(imgIds=img["id"]))
        real = sorted((clean.cats[a["category_id"]]["name"], tuple(a["bbox"])) for a in anns if not a["iscrowd"])
        assert real == sorted((label, (x0, y0, x1 - x0, y1 - y0)) for label, (x0, y0, x1, y1) in objects)
        crowd = [a for a in anns if a["iscrowd"]]
        assert len(crowd) == (3 if entry["source_id"].endswith("000001.png") else 0)  # DontCare x 3 categories
    sign = COCO(str(tmp_path / "coco" / "annotations" / "instances_insert__sign.json"))
    inserted = [a for a in sign.dataset["annotations"] if a["synthetic"]]
    assert len(inserted) == 3 and all(a["category_id"] == 3 for a in inserted)
    x, y, w, h = inserted[0]["bbox"]
    assert (x, y, x + w, y + h) == pytest.approx(PASTE_BOX, abs=1)
    assert len(manifest) == sum(counts.values()) and {m["split"] for m in manifest.values()} == set(counts)


def test_yolo_and_kitti_layouts_read_as_those_tools_expect(fake, tmp_path):
    export_benchmark(fake, tmp_path / "yolo", "yolo", where=["scenario=insert"], echo=lambda *_: None)
    export_benchmark(fake, tmp_path / "kitti", "kitti", where=["scenario=insert"], echo=lambda *_: None)
    manifest = _manifest(tmp_path / "yolo")
    first = next(m for m in manifest if m["source_id"].endswith("000001.png") and m["split"] == "insert__sign")
    spec = yaml.safe_load((tmp_path / "yolo" / "insert__sign.yaml").read_text())
    assert spec["val"] == "insert__sign/images" and spec["names"] == {0: "Car", 1: "Pedestrian", 2: "sign"}
    lines = (tmp_path / "yolo" / "insert__sign" / "labels" / f"{first['job_id']}.txt").read_text().splitlines()
    # the car (50, 30, 90, 56) of a 96 x 64 frame, normalised centre and size; no DontCare line in YOLO
    assert lines[0] == "0 0.729167 0.671875 0.416667 0.406250" and lines[1].startswith("2 ")
    kitti = (tmp_path / "kitti" / "insert__sign" / "label_2" / f"{first['job_id']}.txt").read_text().splitlines()
    assert kitti[0] == "Car 0.00 0 -1.57 50.00 30.00 90.00 56.00 1.50 1.60 3.90 1.00 1.60 12.00 0.10"
    assert kitti[1] == "DontCare -1.00 -1 -10.00 0.00 0.00 10.00 10.00 -1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00"
    # what the edit made: fully visible, inside the image, no 3D box
    assert kitti[2].startswith("sign 0.00 0 -10.00 ") and kitti[2].endswith(" -1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00")
    assert (tmp_path / "kitti" / "insert__sign" / "image_2" / f"{first['job_id']}.png").is_file()
    for split in ("clean", "insert__sign"):
        for label_file in (tmp_path / "kitti" / split / "label_2").iterdir():
            for line in label_file.read_text().splitlines():
                fields = _devkit_scan(line)
                assert fields[0] == line.split()[0] and fields[1:] == pytest.approx([float(v) for v in line.split()[1:]])
                assert fields[2] in (-1, 0, 1, 2, 3) and isinstance(fields[2], int)
    reader = os.environ.get("KITTI_READER_PYTHON")  # a venv with datumaro (numpy < 2.2: not in ours)
    if reader:
        items = _datumaro_read(reader, tmp_path / "kitti" / "insert__sign")
        ours = {p.stem: p.read_text().splitlines() for p in (tmp_path / "kitti" / "insert__sign" / "label_2").iterdir()}
        assert set(items) == set(ours)
        for stem, boxes in items.items():
            assert [(b["label"], b["occluded"], b["truncated"]) for b in boxes] == \
                [(x.split()[0], int(x.split()[2]), float(x.split()[1])) for x in ours[stem]]
            assert [v for b in boxes for v in b["box"]] == pytest.approx([float(v) for x in ours[stem] for v in x.split()[4:8]])


# the devkit's own scan of a label line (cpp/evaluate_object.cpp, loadGroundtruth)
DEVKIT_FORMAT = b"%s %lf %d %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf"


def _devkit_scan(line: str) -> list:
    """The line through the C library's sscanf with the devkit's format string: all 15 fields must convert."""
    import ctypes

    libc = ctypes.CDLL(None)
    name = ctypes.create_string_buffer(256)
    occluded = ctypes.c_int()
    doubles = [ctypes.c_double() for _ in range(13)]
    args = [name, ctypes.byref(doubles[0]), ctypes.byref(occluded), *(ctypes.byref(d) for d in doubles[1:])]
    assert libc.sscanf(line.encode(), DEVKIT_FORMAT, *args) == 15, line
    return [name.value.decode(), doubles[0].value, occluded.value, *(d.value for d in doubles[1:])]


DATUMARO_READ = """
import json, sys
from datumaro.plugins.data_formats.kitti_3d.base import Kitti3dBase
base = Kitti3dBase(sys.argv[1])
names = base.categories()[__import__("datumaro").AnnotationType.label]
print(json.dumps({item.id: [{"label": names[a.label].name, "occluded": a.attributes["occluded"],
                             "truncated": a.attributes["truncated"], "box": [a.x, a.y, a.x + a.w, a.y + a.h]}
                            for a in item.annotations] for item in base}))
"""


def _datumaro_read(python: str, split_dir) -> dict:
    """The split through datumaro's KITTI 3D reader (int() on occluded, float() on the rest), in its venv."""
    import subprocess

    done = subprocess.run([python, "-c", DATUMARO_READ, str(split_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Error parsing" not in done.stderr, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_a_dataset_of_an_older_schema_is_refused_by_name(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "old" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"job_id": ["a"], "keep": [True], "error_stage": [None]}),
                   tmp_path / "old" / "data" / "part-1-00000.parquet")
    with pytest.raises(UserError, match=r"the shards have no column\(s\) source_id, scenario, edit_id, severity, "
                                        r"sample_index, source_image, edited_image, annotations: written by an older"):
        export_benchmark(tmp_path / "old", tmp_path / "x", "coco")
    assert not (tmp_path / "x").exists()


def test_a_severity_ladder_comes_from_trajectories_where_ssim_falls(fake, tmp_path):
    from chronoedit_sim.dataset.encode import decode_rgb
    from chronoedit_sim.scoring.metrics import ssim

    counts = export_benchmark(fake, tmp_path / "lad", "coco", severity_ladder=3, echo=lambda *_: None)
    # the darkening's blended trajectory is a ladder; an insertion's labels do not hold along it: none
    assert [counts[f"weather__dark__ladder{k}"] for k in (1, 2, 3)] == [3, 3, 3]
    assert not any("insert__sign__ladder" in s for s in counts)
    manifest = [m for m in _manifest(tmp_path / "lad") if "ladder" in m["split"]]
    job = manifest[0]["job_id"]
    levels = sorted((m for m in manifest if m["job_id"] == job), key=lambda m: m["severity"])
    src = decode_rgb((tmp_path / "lad" / next(m["file"] for m in _manifest(tmp_path / "lad")
                                                if m["split"] == "clean" and m["source_id"] == levels[0]["source_id"])).read_bytes())
    values = [ssim(src, decode_rgb((tmp_path / "lad" / m["file"]).read_bytes())) for m in levels]
    assert [m["severity"] for m in levels] == ["1", "2", "3"] and values == sorted(values, reverse=True)
    with pytest.raises(UserError, match="--severity-ladder 1: at least 2 levels"):
        export_benchmark(fake, tmp_path / "x", "coco", severity_ladder=1)


@pytest.mark.ray
def test_evaluate_oracle_scores_one_everywhere_and_the_blob_detector_falls_in_the_dark(fake, tmp_path, ray_session):
    from chronoedit_sim.runtime.evaluate import evaluate

    oracle, code = evaluate(fake, write_oracle(tmp_path / "oracle.py", fake), echo=lambda *_: None, bootstrap=50)
    assert code == 0
    assert oracle["clean_ap"] == 1.0 and oracle["mPC"] == 1.0 and oracle["rPC"] == 1.0
    assert all(v["ap"] == 1.0 for v in oracle["splits"].values()) and oracle["mPC_ci"] == pytest.approx([1.0, 1.0])
    assert (oracle["inserted_recall"], oracle["inserted_objects"]) == (1.0, 3)
    assert json.loads((fake / "eval.json").read_text())["rPC"] == 1.0
    (tmp_path / "blobs.py").write_text(BLOB_DETECTOR)
    blobs, _ = evaluate(fake, f"{tmp_path / 'blobs.py'}:Blobs", echo=lambda *_: None, bootstrap=0)
    dark = [v for s, v in blobs["splits"].items() if s.startswith("weather")]
    assert blobs["clean_ap"] == 1.0 and all(v["ap"] == 0.0 and v["drop"] == 1.0 for v in dark)
    assert blobs["inserted_recall"] == 0.0  # it knows no yellow signs
    # the insertion changes the ground truth: its own section, not in mPC (the darkening's AP 0 is all of it)
    assert blobs["mPC"] == 0.0 and set(blobs["truth_changing"]) == {"insert__sign"}
    assert set(blobs["by_scenario"]) == {"weather"} and blobs["by_scenario"]["weather"]["mean_drop"] == 1.0
    assert blobs["images"] == 3 + 3 + 3 and blobs["failed_images"] == 0


def test_a_classifier_is_scored_by_the_share_of_edits_that_keep_its_clean_label():
    splits = {"clean": [("clean:a", []), ("clean:b", [])], "w__d__s1": [("a", []), ("b", [])]}
    info = {"w__d__s1": {"scenario": "w", "edit_id": "d", "severity": 1, "backend": "chronoedit"}}
    frame_of = {"a": "clean:a", "b": "clean:b", "clean:a": "clean:a", "clean:b": "clean:b"}
    info["w__d__s1"]["changes_truth"] = False
    out = summarize(splits, info, frame_of, {"clean:a": "car", "clean:b": "bus", "a": "car", "b": "car"}, "c:f",
                    bootstrap=0)
    assert out["task"] == "classification" and out["splits"]["w__d__s1"]["accuracy"] == 0.5
    assert out["mPC"] == 0.5 and out["rPC"] == 0.5 and out["by_severity"] == {"1": {"mean_drop": 0.5}}
    assert out["by_backend"] == {"chronoedit": {"mPC": 0.5, "mPC_ci": None, "rPC": 0.5, "rPC_ci": None}}


def test_a_detector_that_fails_fails_its_images_and_a_wrong_name_is_a_clear_error(tmp_path):
    import io

    from PIL import Image

    (tmp_path / "bad.py").write_text("import os\n\ndef detect(images):\n    return [[]]\n\ndef boom(images):\n"
                                     "    raise RuntimeError('cuda oom')\n\nclass Gone:\n    def __init__(self):\n"
                                     "        os._exit(1)\n\nclass NoWeights:\n    def __init__(self):\n"
                                     "        raise OSError('no weights at /m.pt')\n")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    for name, message in (("detect", "detect: ValueError: the detector returned list of length 1 for 2 image(s); expected a list per image"),
                          ("boom", "detect: RuntimeError: cuda oom")):
        stage = DetectStage(f"{tmp_path / 'bad.py'}:{name}", "cpu", Resources())
        stage.setup()
        rows = stage.process_batch([{"job_id": k, "image": buf.getvalue(), "error": None} for k in "ab"])
        assert [r["error"] for r in rows] == [message] * 2 and "image" not in rows[0]
    for name, message in (("Gone", "ExitCalled: it called os._exit(1) while starting"),
                          ("NoWeights", "OSError: no weights at /m.pt")):
        stage = DetectStage(f"{tmp_path / 'bad.py'}:{name}", "cpu", Resources())
        stage.setup()  # does not raise, nor end this process: each row says why
        rows = stage.process_batch([{"job_id": "a", "image": buf.getvalue(), "error": None}])
        assert rows[0]["error"] == START_FAILED + message
    for spec, message in (("nope", "expected module:callable"), (f"{tmp_path}/x.py:f", "does not exist"),
                          (f"{tmp_path / 'bad.py'}:missing", "has no callable 'missing'"),
                          ("no_such_module:f", "cannot import no_such_module")):
        with pytest.raises(UserError, match=message):
            load_callable(spec)


@pytest.mark.ray
@pytest.mark.slow  # the local S3 server and two evaluate runs on Ray (make test-slow)
def test_export_and_evaluate_read_a_dataset_on_s3_exactly_as_on_disk(fake, tmp_path, ray_session, s3):
    """#23: the dataset in object storage (no local path), exported back to object storage and evaluated there."""
    from chronoedit_sim import storage
    from chronoedit_sim.runtime.evaluate import evaluate

    remote = storage.path(f"{s3}/dataset")
    remote.fs.put(str(fake) + "/", remote.path, recursive=True)
    counts = export_benchmark(fake, tmp_path / "coco", "coco", echo=lambda *_: None)
    assert export_benchmark(str(remote), f"{s3}/coco", "coco", echo=lambda *_: None) == counts
    exported = storage.path(f"{s3}/coco")
    for name in ("manifest.csv", *(f"annotations/instances_{split}.json" for split in counts)):
        assert (exported / name).read_bytes() == (tmp_path / "coco" / name).read_bytes(), name
    spec = write_jittered(tmp_path / "jitter.py", fake, seed=3)
    here, code = evaluate(fake, spec, echo=lambda *_: None, bootstrap=20)
    there, remote_code = evaluate(str(remote), spec, echo=lambda *_: None, bootstrap=20)
    assert code == remote_code == 0
    timing = ("seconds", "images_per_s")
    assert {k: v for k, v in there.items() if k not in timing} == {k: v for k, v in here.items() if k not in timing}
    assert json.loads((remote / "eval.json").read_text())["mPC"] == here["mPC"]
