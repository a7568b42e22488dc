"""Hostile detectors through `chronoedit-sim evaluate` on Ray: a failure is never a measurement. Each gives
its message and the documented exit code (3: images failed or were refused; 2: the detector cannot start)."""

from __future__ import annotations

import json
import shutil

import pytest

from chronoedit_sim.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]

HOSTILE = '''
import os

def boom(images):
    raise RuntimeError("cuda oom")

def wrong_count(images):
    return [[]]

def text(images):
    return "car"

def nan(images):
    return [[{"box": [1, 1, 5, 5], "label": "Car", "score": float("nan")}] for _ in images]

class NoWeights:
    def __init__(self):
        raise OSError("no weights at /models/x.pt")

class Gone:
    def __init__(self):
        os._exit(1)

def nothing(images):
    return [[] for _ in images]
'''


@pytest.fixture()
def dataset(scored_dataset, tmp_path):
    copy = tmp_path / "dataset"  # evaluate writes eval.json into the dataset
    shutil.copytree(scored_dataset, copy)
    (tmp_path / "hostile.py").write_text(HOSTILE)
    return copy


@pytest.mark.parametrize("name, code, message", [
    ("boom", 3, "error: the detector failed on 8 of 8 image(s), left out of every number: 8 x detect: RuntimeError: cuda oom"),
    ("wrong_count", 3, "8 x detect: ValueError: the detector returned list of length 1 for 8 image(s)"),
    ("text", 3, "8 x detect: ValueError: the detector returned str of length 3 for 8 image(s)"),
    ("nan", 3, "error: detections refused on 8 of 8 image(s), left out of every number: 8 x a detection is not finite"),
    ("NoWeights", 2, "OSError: no weights at /models/x.pt"),
    ("Gone", 2, "ExitCalled: it called os._exit(1) while starting"),
])
def test_a_hostile_detector_gets_its_message_and_exit_code(dataset, name, code, message, capsys):
    spec = f"{dataset.parent / 'hostile.py'}:{name}"
    assert main(["evaluate", str(dataset), "--detector", spec, "--batch-size", "8", "--bootstrap", "10"]) == code
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    if code == 3:  # the numbers are no measurement: nothing was scored, and eval.json says why
        result = json.loads((dataset / "eval.json").read_text())
        assert result["scored_images"] == 0 and result["mPC"] is None and result["clean_ap"] is None
        assert result["failed_images"] + result["refused_images"] == 8
        assert "clean n/a" in captured.out
    else:
        assert errors[0] == f"error: --detector {spec}: {message}" and not (dataset / "eval.json").exists()


def test_a_shard_that_cannot_be_read_after_the_index_is_said_apart_from_the_detector(dataset, monkeypatch, capsys):
    """A shard deleted between the index and the read: its images are failed rows naming the shard, the
    detector is not said to have died, and the other images are scored."""
    import chronoedit_sim.runtime.evaluate as runtime_evaluate

    import pyarrow.parquet as pq

    (shard,) = (dataset / "data").glob("*.parquet")  # in two, so that one can be lost
    table, gone = pq.read_table(shard), shard.with_name(shard.stem + "-a.parquet")
    pq.write_table(table.slice(0, 2), gone)
    pq.write_table(table.slice(2), shard)
    index = runtime_evaluate.build_index

    def index_then_lose_a_shard(*args):
        out = index(*args)
        gone.unlink()
        return out

    monkeypatch.setattr(runtime_evaluate, "build_index", index_then_lose_a_shard)
    spec = f"{dataset.parent / 'hostile.py'}:nothing"
    assert main(["evaluate", str(dataset), "--detector", spec, "--bootstrap", "0"]) == 3
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    result = json.loads((dataset / "eval.json").read_text())
    lost = result["failed_images"]
    assert 0 < lost < 8 and result["scored_images"] == 8 - lost, captured.err
    assert errors == [f"error: the shard could not be read for {lost} of 8 image(s), left out of every number: "
                      f"{lost} x cannot read shard {gone.name}: FileNotFoundError: " + errors[0].split("FileNotFoundError: ")[1]]
    assert "died" not in captured.err and "Traceback" not in captured.err + captured.out
