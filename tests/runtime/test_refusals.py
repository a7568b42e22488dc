"""What a hostile but realistic user tried (#24): each is one line with its exit code, before any model loads
and before Ray starts, and leaves nothing behind."""

from __future__ import annotations

import pytest
from PIL import Image

from chronoedit_sim.cli import main
from chronoedit_sim.runtime import run as run_module
from helpers import write_diffsynth_lora


def make_images(folder, n: int):
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(folder / f"f{i}.png")
    return folder


@pytest.fixture
def no_ray(monkeypatch):
    """Any of these reaching the pipeline is the failure itself."""
    monkeypatch.setattr(run_module, "execute", lambda *a, **k: pytest.fail("the run reached Ray"))


def refused(capsys, *argv) -> str:
    assert main(["run", *map(str, argv), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err  # one line, no traceback
    return err.strip()


def test_an_output_that_is_a_file_is_one_line(no_ray, capsys, tiny_overrides, one_edit_scenario, tmp_path):
    frames, out = make_images(tmp_path / "frames", 1), tmp_path / "out.txt"
    out.write_text("a file")
    assert refused(capsys, one_edit_scenario, "--input", frames, "--output", out, *tiny_overrides) == (
        f"error: {out}: {out} is a file, not a folder; choose another --output")
    assert refused(capsys, one_edit_scenario, "--input", frames, "--output", out / "sub", *tiny_overrides) == (
        f"error: {out / 'sub'}: {out} is a file, not a folder; choose another --output")


@pytest.mark.parametrize("bad", ["config", "scenario"])
def test_a_refused_config_or_scenario_leaves_no_folder_and_no_lock(no_ray, capsys, tiny_overrides,
                                                                   one_edit_scenario, tmp_path, bad):
    frames, out = make_images(tmp_path / "frames", 1), tmp_path / "new" / "out"
    scenario = one_edit_scenario
    if bad == "scenario":
        scenario = tmp_path / "tiny_edit.yaml"
        scenario.write_bytes(one_edit_scenario.read_bytes().replace(b"domain: driving", b"domain: \xe9"))
    extra = ["runtime.max_failed_fraction=2"] if bad == "config" else []
    refused(capsys, scenario, "--input", frames, "--output", out, *tiny_overrides, *extra)
    assert not (tmp_path / "new").exists()


def test_loras_are_checked_before_ray_starts(no_ray, capsys, tiny_overrides, one_edit_scenario, tmp_path):
    frames, out = make_images(tmp_path / "frames", 1), tmp_path / "out"
    args = [one_edit_scenario, "--input", frames, "--output", out, *tiny_overrides]
    missing = tmp_path / "nope.safetensors"
    assert refused(capsys, *args, f"model.loras=[{{path: {missing}}}]").startswith(
        f"error: LoRA weights not found: '{missing}'")
    assert refused(capsys, *args, "model.loras=[{path: /etc/passwd}]").startswith(
        "error: model.loras.0.path: /etc/passwd: not a readable safetensors file (")
    fits = write_diffsynth_lora(tmp_path / "fits.safetensors", 1)
    import torch
    from safetensors.torch import save_file

    other = {"blocks.0.self_attn.q.lora_A.default.weight": torch.zeros(4, 40),  # a wider model's LoRA
             "blocks.0.self_attn.q.lora_B.default.weight": torch.zeros(40, 4)}
    save_file(other, str(tmp_path / "wide.safetensors"))
    msg = refused(capsys, *args, f"model.loras=[{{path: {fits}}}, {{path: {tmp_path / 'wide.safetensors'}}}]")
    assert msg.startswith(f"error: model.loras.1.path: {tmp_path / 'wide.safetensors'}: 2 of its 2 keys do not fit "
                          "the transformer of ")
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight [4, 40] (the module is 24 -> 24)" in msg
    assert not out.exists()
