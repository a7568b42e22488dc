"""model.transformer_path, model.attention_backend and model.compile on the tiny RANDOM checkpoint:
each changes where the transformer comes from or how fast it runs, never the meaning of an edit."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from chronoedit_sim.config import ConfigError, load_config
from chronoedit_sim.engine.editor import Editor
from chronoedit_sim.engine.tiny import write_tiny_model
from chronoedit_sim.engine.weights import MissingWeightsError

PROMPT = "add a red car on the road ahead"


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second tiny checkpoint: its transformer's weights differ from the session model's."""
    return write_tiny_model(tmp_path_factory.mktemp("other") / "tiny-1", seed=1)


def editor_with(tiny_model_dir, *extra) -> Editor:
    return Editor(load_config(["model=tiny", f"model.path={tiny_model_dir}", *extra]).model)


def weights(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("layout", ["checkpoint", "transformer folder"])
def test_transformer_path_takes_only_the_transformer_from_there(editor, tiny_model_dir, other_model, layout):
    source = other_model if layout == "checkpoint" else other_model / "transformer"
    mixed = editor_with(tiny_model_dir, f"model.transformer_path={source}")
    donor = editor_with(other_model)
    for name in ("transformer", "vae", "text_encoder", "image_encoder"):
        want = (donor if name == "transformer" else editor).pipe
        got, expected = weights(getattr(mixed.pipe, name)), weights(getattr(want, name))
        assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got), name
    assert not all(torch.equal(a, b) for a, b in zip(weights(editor.pipe.transformer).values(),
                                                     weights(donor.pipe.transformer).values()))
    ident = mixed.identity
    assert ident.model_id == f"{tiny_model_dir} + transformer {source}" and ident.random_weights
    assert ident.model_hash not in (editor.identity.model_hash, donor.identity.model_hash)


def test_transformer_path_without_a_transformer_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(MissingWeightsError, match=r"model.transformer_path: directory '.*empty' holds no "
                                                  r"transformer \(neither transformer/ nor the folder itself"):
        (tmp_path / "empty").mkdir()
        editor_with(tiny_model_dir, f"model.transformer_path={tmp_path / 'empty'}")


def test_an_attention_backend_is_set_on_every_attention_and_keeps_the_edit(editor, tiny_cfg, tiny_model_dir, frame):
    math = editor_with(tiny_model_dir, "model.attention_backend=_native_math")
    backends = {str(m.processor._attention_backend) for m in math.pipe.transformer.modules()
                if hasattr(getattr(m, "processor", None), "_attention_backend")}
    assert backends == {"AttentionBackendName._NATIVE_MATH"}
    a = math.edit(frame, PROMPT, seed=4, gen=tiny_cfg.generation)
    math.pipe.transformer.set_attention_backend("native")  # diffusers keeps the last one set process-wide
    b = editor.edit(frame, PROMPT, seed=4, gen=tiny_cfg.generation)
    np.testing.assert_array_equal(a.edited, b.edited)


def test_an_unknown_attention_backend_is_a_config_error_naming_the_key(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"command line: model.attention_backend: 'flash9' is not one of "
                                          r"diffusers' backends: .*_native_cudnn"):
        load_config(["model=tiny", f"model.path={tiny_model_dir}", "model.attention_backend=flash9"])


def test_compile_compiles_each_repeated_block(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset")  # restored after the test
    monkeypatch.setenv("TRITON_CACHE_DIR", "unset")
    compiled = editor_with(tiny_model_dir, "model.compile=true", f"model.compile_cache_dir={tmp_path}")
    blocks = compiled.pipe.transformer.blocks
    assert len(blocks) == 2 and all(b._compiled_call_impl is not None for b in blocks)
    assert compiled.compiled and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    # the default (null) compiles where it pays: not on this CPU
    default = editor_with(tiny_model_dir)
    assert not default.compiled and default.pipe.transformer.blocks[0]._compiled_call_impl is None


@pytest.mark.slow
def test_a_compiled_transformer_gives_the_same_edit(editor, tiny_cfg, tiny_model_dir, frame, tmp_path, monkeypatch):
    """About a minute of inductor compilation on 2 cores: `make test-slow`."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset")
    monkeypatch.setenv("TRITON_CACHE_DIR", "unset")
    compiled = editor_with(tiny_model_dir, "model.compile=true", f"model.compile_cache_dir={tmp_path}")
    a = compiled.edit(frame, PROMPT, seed=5, gen=tiny_cfg.generation)
    np.testing.assert_array_equal(a.edited, editor.edit(frame, PROMPT, seed=5, gen=tiny_cfg.generation).edited)
    # the first edit of the shape left the node's portable copy of what it compiled
    assert [f.name for f in (tmp_path / "mega").iterdir()] == [f"torch-{torch.__version__}-cpu.bin"]


@pytest.mark.parametrize("layout", ["checkpoint", "transformer folder"])
def test_a_random_transformer_is_flagged_when_the_checkpoint_is_not(tiny_model_dir, other_model, tmp_path, layout):
    """No silent random weights: the marker of the transformer's own checkpoint counts."""
    import shutil

    from chronoedit_sim.engine.tiny import TINY_MARKER

    unmarked = tmp_path / "unmarked"
    shutil.copytree(tiny_model_dir, unmarked)
    (unmarked / TINY_MARKER).unlink()
    assert not editor_with(unmarked).identity.random_weights
    source = other_model if layout == "checkpoint" else other_model / "transformer"
    assert editor_with(unmarked, f"model.transformer_path={source}").identity.random_weights


def test_quantize_is_checked_at_config_load_and_needs_torchao(tiny_model_dir):
    with pytest.raises(ConfigError, match="model.quantize.*int3"):
        load_config(["model=tiny", f"model.path={tiny_model_dir}", "model.quantize=int3"])
    import importlib.util

    if importlib.util.find_spec("torchao"):
        pytest.skip("torchao is installed here: the missing-torchao error cannot show")
    from chronoedit_sim.engine.quantize import QuantizeError

    with pytest.raises(QuantizeError, match="model.quantize=fp8_weight_only needs torchao"):
        editor_with(tiny_model_dir, "model.quantize=fp8_weight_only")


def test_quantize_picks_torchaos_config_and_refuses_a_cpu_before_loading(tiny_model_dir, monkeypatch):
    import sys
    import types

    from chronoedit_sim.engine import editor as editor_module
    from chronoedit_sim.engine.quantize import QuantizeError, fp8_config

    fake = types.ModuleType("torchao.quantization")  # the three names fp8_config takes from torchao
    fake.Float8WeightOnlyConfig = lambda: "weight-only"
    fake.Float8DynamicActivationFloat8WeightConfig = lambda granularity: f"dynamic/{granularity}"
    fake.PerRow = lambda: "per-row"
    monkeypatch.setitem(sys.modules, "torchao", types.ModuleType("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", fake)
    assert fp8_config("fp8_weight_only", "cuda:0") == "weight-only"
    monkeypatch.setattr(editor_module.Editor, "_load", lambda *a: pytest.fail("loaded a model it cannot quantize"))
    with pytest.raises(QuantizeError, match="model.quantize=fp8_dynamic needs a CUDA GPU; the model runs on cpu"):
        editor_with(tiny_model_dir, "model.quantize=fp8_dynamic")
