"""The command line end to end (in-process): make-tiny-model, edit, validate, and its error exits."""

from __future__ import annotations

from pathlib import Path

import cv2
from PIL import Image

from chronoedit_sim.cli import main

# absolute, so the tests pass whichever folder pytest runs from
REPO = Path(__file__).resolve().parents[1]
RAIN = REPO / "scenarios" / "driving" / "rain.yaml"


def test_make_tiny_model_then_edit_with_reasoning(tmp_path, capsys, frame):
    assert main(["make-tiny-model", str(tmp_path / "tiny")]) == 0
    assert "RANDOM-WEIGHT" in capsys.readouterr().out
    src = tmp_path / "frame.png"
    Image.fromarray(frame).save(src)
    out = tmp_path / "out" / "e.png"
    code = main(["edit", str(src), "--prompt", "add a red car", f"model.path={tmp_path / 'tiny'}", "model=tiny",
                 "--output", str(out), "generation.temporal_reasoning=true", "--seed", "4"])
    printed = capsys.readouterr().out
    assert code == 0
    assert Image.open(out).size == (160, 96)
    strip = Image.open(tmp_path / "out" / "e_reasoning.png")
    assert strip.size == (9 * 160, 96)
    video = cv2.VideoCapture(str(tmp_path / "out" / "e_reasoning.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    assert "9 reasoning frames (x0_at_step_k)" in printed
    assert "RANDOM weights" in printed


def test_edit_reports_missing_weights_and_bad_images_without_a_traceback(tmp_path, capsys, frame):
    src = tmp_path / "frame.png"
    Image.fromarray(frame).save(src)
    assert main(["edit", str(src), "--prompt", "x", "--output", str(tmp_path / "o.png"),
                 f"model.path={tmp_path / 'absent'}"]) == 2
    assert "ChronoEdit weights not found" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["edit", str(bad), "--prompt", "x", "--output", str(tmp_path / "o.png")]) == 2
    assert "not a recognised image" in capsys.readouterr().err


def test_edit_checks_its_lora_before_the_model_loads(tmp_path, capsys, frame, tiny_model_dir):
    src = tmp_path / "frame.png"
    Image.fromarray(frame).save(src)
    assert main(["edit", str(src), "--prompt", "x", "--output", str(tmp_path / "o.png"), "model=tiny",
                 f"model.path={tiny_model_dir}", "model.loras=[{path: /etc/passwd}]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.loras.0.path: /etc/passwd: not a readable safetensors file (")
    assert err.count("\n") == 1


def test_edit_config_error_names_the_key(tmp_path, capsys):
    assert main(["edit", str(tmp_path / "x.png"), "--prompt", "x", "--output", str(tmp_path / "o.png"),
                 "generation.bogus=1"]) == 2
    assert "command line: generation.bogus" in capsys.readouterr().err


def test_validate_prints_jobs_and_fails_on_bad_files(tmp_path, capsys):
    assert main(["validate", str(RAIN), "seed=5", "--source-id", "cam/0001.png"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {RAIN}: scenario rain (driving)")
    assert out.count(" sample ") >= 2 and "prompt: Make it rain" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndomain: driving\ndescription: d\nedits:\n  - {id: a, prompt: '{x}', target_caption: t, source_caption: s}\n")
    assert main(["validate", str(RAIN), str(bad)]) == 1
    assert f"ERROR {bad}: edits[0].prompt: template variable {{x}} has no choices in vars" in capsys.readouterr().out
