"""The speed options of engine/speed.py on the tiny RANDOM checkpoint: step caches really skip work
(and change nothing when they skip nothing), MagCache calibration, SageAttention's dispatch, the compile
default and its shared cache, and the one-line errors before any weights load."""

from __future__ import annotations

import json
import os
import sys
import types

import numpy as np
import pytest
import torch

from chronoedit_sim.config import ConfigError, load_config
from chronoedit_sim.engine import speed
from chronoedit_sim.engine.editor import Editor

PROMPT = "add a red car on the road ahead"


def editor_with(tiny_model_dir, *extra) -> Editor:
    return Editor(load_config(["model=tiny", f"model.path={tiny_model_dir}", *extra]).model)


def ffn_runs(ed: Editor) -> list:
    """How often the last block's feed-forward really runs (a skipped step or sublayer does not)."""
    runs = [0]
    ed.pipe.transformer.blocks[-1].ffn.net[0].register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    return runs


def edit(ed: Editor, frame, tiny_cfg, seed=3):
    return ed.edit(frame, PROMPT, seed=seed, gen=tiny_cfg.generation).edited


@pytest.fixture(scope="module")
def uncached(editor, frame, tiny_cfg):
    return edit(editor, frame, tiny_cfg)


def test_first_block_cache_skips_the_rest_when_the_first_block_barely_changes(tiny_model_dir, frame, tiny_cfg,
                                                                               uncached):
    steps = tiny_cfg.generation.num_inference_steps
    never = editor_with(tiny_model_dir, "model.step_cache=first_block", "model.step_cache_threshold=1e-9")
    runs = ffn_runs(never)
    # nothing skipped: the same arithmetic as without the cache, bit for bit (cond and uncond kept apart)
    np.testing.assert_array_equal(edit(never, frame, tiny_cfg), uncached)
    assert runs[0] == 2 * steps
    always = editor_with(tiny_model_dir, "model.step_cache=first_block", "model.step_cache_threshold=100")
    runs = ffn_runs(always)
    first = edit(always, frame, tiny_cfg)
    # each pass computes its first step, then reuses: one full run per pass
    assert runs[0] == 2 and not np.array_equal(first, uncached)
    np.testing.assert_array_equal(edit(always, frame, tiny_cfg), first)  # state reset between edits


def test_taylorseer_extrapolates_the_sublayers_between_refreshes(tiny_model_dir, frame):
    six = load_config(["model=tiny", f"model.path={tiny_model_dir}", "generation.num_inference_steps=6"]).generation
    plain = editor_with(tiny_model_dir).edit(frame, PROMPT, seed=3, gen=six).edited
    ed = editor_with(tiny_model_dir, "model.step_cache=taylorseer")
    runs = ffn_runs(ed)
    out = ed.edit(frame, PROMPT, seed=3, gen=six).edited
    # diffusers' schedule, per pass: steps 0-2 computed (warm-up), then every 5th from step 4: 3 and 5 predicted
    assert runs[0] == 2 * 4
    assert not np.array_equal(out, plain)


def test_magcache_calibrates_then_skips_with_the_calibration_file(tiny_model_dir, frame, tiny_cfg, uncached, tmp_path):
    ed = editor_with(tiny_model_dir)
    doc = speed.calibrate_magcache(ed, [(frame, PROMPT, 3), (frame, "make it rain", 4)], tiny_cfg.generation)
    steps = tiny_cfg.generation.num_inference_steps
    assert doc["edits"] == 2 and len(doc["ratios"]) == steps and doc["ratios"][0] == 1.0
    assert doc["random_weights"] and doc["num_inference_steps"] == steps
    # calibration skips nothing: the edit is the uncached one
    np.testing.assert_array_equal(edit(ed, frame, tiny_cfg), uncached)
    file = tmp_path / "magcache.json"
    file.write_text(json.dumps(doc))
    cached = editor_with(tiny_model_dir, "model.step_cache=magcache", f"model.step_cache_calibration={file}",
                         "model.step_cache_threshold=100")
    runs = ffn_runs(cached)
    edit(cached, frame, tiny_cfg)
    # retention keeps the first step (0.2 x 4 steps, rounded), then up to max_skip_steps=3 are skipped
    assert runs[0] == 2


def test_step_cache_errors_are_one_line_before_the_weights_load(tiny_model_dir, tmp_path, monkeypatch):
    base = ["model=tiny", f"model.path={tiny_model_dir}"]
    with pytest.raises(ConfigError, match=r"model.step_cache: 'deepcache' is not one of none, first_block"):
        load_config(base + ["model.step_cache=deepcache"])
    with pytest.raises(ConfigError, match=r"model.step_cache: first_block cannot run with partial temporal reasoning"):
        load_config(base + ["model.step_cache=first_block", "generation.temporal_reasoning=true",
                            "generation.reasoning_steps=2", "generation.num_inference_steps=4"])
    with pytest.raises(ConfigError, match=r"model.step_cache_threshold: applies to step_cache first_block or "
                                          r"magcache, not taylorseer"):
        load_config(base + ["model.step_cache=taylorseer", "model.step_cache_threshold=0.1"])
    monkeypatch.setattr(Editor, "_load", lambda *a: pytest.fail("weights loaded before the check"))
    with pytest.raises(speed.SpeedOptionError, match=r"model.step_cache=magcache needs "
                                                     r"model.step_cache_calibration: the JSON that `chronoedit-sim "
                                                     r"calibrate-cache` writes"):
        editor_with(tiny_model_dir, "model.step_cache=magcache")
    bad = tmp_path / "bad.json"
    bad.write_text('{"ratios": [1.0], "num_inference_steps": 4}')
    with pytest.raises(speed.SpeedOptionError, match=r"bad.json: 1 ratios for 4 steps"):
        editor_with(tiny_model_dir, "model.step_cache=magcache", f"model.step_cache_calibration={bad}")


def test_calibrate_cache_writes_the_file_a_run_reads(tiny_model_dir, tmp_path):
    from chronoedit_sim.runtime.calibrate import calibrate_cache

    out = tmp_path / "cal" / "magcache.json"
    doc = calibrate_cache(["scenarios/driving/rain.yaml"], ["examples/frames/driving/road_day_000.png"], str(out),
                          ["model=tiny", f"model.path={tiny_model_dir}", "generation.num_inference_steps=2"], edits=1)
    assert json.loads(out.read_text()) == doc
    assert doc["edits"] == 1 and len(doc["ratios"]) == 2 and doc["images"] == ["road_day_000.png"]
    assert [p.name for p in out.parent.iterdir()] == ["magcache.json"]  # no temporary left
    speed.calibration(str(out))


def fake_sage(calls):
    def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, **_):
        assert tensor_layout == "NHD"
        calls.append(q.shape)
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=is_causal, scale=sm_scale)
        return out.transpose(1, 2)

    return types.SimpleNamespace(sageattn=sageattn)


def test_sageattention_is_checked_before_the_weights_load(tiny_model_dir, monkeypatch):
    load_config(["model=tiny", f"model.path={tiny_model_dir}", "model.attention_backend=sageattention"])
    monkeypatch.setattr(Editor, "_load", lambda *a: pytest.fail("weights loaded before the check"))
    monkeypatch.setitem(sys.modules, "sageattention", None)
    with pytest.raises(speed.SpeedOptionError, match=r"needs the sageattention package \(pip install "
                                                     r"sageattention==1.0.6"):
        editor_with(tiny_model_dir, "model.attention_backend=sageattention")
    monkeypatch.setitem(sys.modules, "sageattention", fake_sage([]))
    with pytest.raises(speed.SpeedOptionError, match=r"model.attention_backend=sageattention needs a CUDA GPU; "
                                                     r"the model runs on cpu"):
        editor_with(tiny_model_dir, "model.attention_backend=sageattention")


def test_sageattention_runs_every_attention_through_its_kernel(tiny_model_dir, frame, tiny_cfg, uncached, monkeypatch):
    """On a CPU the kernel is stood in for by SDPA in sageattn's layout: the dispatch, the custom op and the
    arguments are ours, the arithmetic the stand-in's."""
    calls = []
    monkeypatch.setitem(sys.modules, "sageattention", fake_sage(calls))
    ed = editor_with(tiny_model_dir)
    speed.use_sage_attention(ed.pipe.transformer)
    out = edit(ed, frame, tiny_cfg)
    # 2 blocks x (self + cross attention; the image context is a third, dispatched too) per transformer call
    steps = tiny_cfg.generation.num_inference_steps
    assert len(calls) == 2 * steps * 2 * 3
    assert np.abs(out.astype(int) - uncached.astype(int)).max() <= 1


def test_compile_is_on_where_it_pays_and_shares_one_cache(tmp_path, monkeypatch):
    assert not speed.compile_enabled(None, "cpu") and speed.compile_enabled(None, "cuda:1")
    assert speed.compile_enabled(True, "cpu") and not speed.compile_enabled(False, "cuda")
    for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(var, "unset")  # restored after the test
    loaded = []
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", loaded.append)
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"kernels", None))
    root = speed.use_compile_cache(str(tmp_path / "cc"))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cc" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cc" / "triton")
    assert loaded == []  # nothing saved yet
    speed.save_mega_cache(root)
    files = list((tmp_path / "cc" / "mega").iterdir())
    assert [f.name for f in files] == [f"torch-{torch.__version__}-cpu.bin"] and files[0].read_bytes() == b"kernels"
    speed.use_compile_cache(str(tmp_path / "cc"))  # the next process (actor) on the node
    assert loaded == [b"kernels"]


def test_the_hopper_fp8_preset_is_fp8_dynamic_compiled_and_refused_on_a_cpu(tiny_model_dir, monkeypatch):
    cfg = load_config(["model=tiny", f"model.path={tiny_model_dir}"], config_files=["configs/speed/hopper-fp8.yaml"])
    assert (cfg.model.quantize, cfg.model.compile) == ("fp8_dynamic", True)
    from chronoedit_sim.engine.quantize import QuantizeError

    monkeypatch.setattr(Editor, "_load", lambda *a: pytest.fail("weights loaded before the check"))
    with pytest.raises(QuantizeError, match="model.quantize=fp8_dynamic needs (torchao|a CUDA GPU)"):
        Editor(cfg.model)
