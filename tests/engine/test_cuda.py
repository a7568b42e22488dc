"""The CUDA path of the edit engine on the tiny checkpoint (see also bench/gpu_check.py).

`gpu`-marked tests are skipped where torch sees no CUDA device (tests/conftest.py). The tiny
model has RANDOM weights: this checks the plumbing on CUDA (bf16 transformer and text encoder,
fp32 VAE and image encoder, seeded determinism, trajectory capture), not edit quality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from chronoedit_sim.config import load_config
from chronoedit_sim.engine.editor import Editor

PROMPT = "add a red car on the road ahead"
# reference dtypes: low precision where the compute is, fp32 where precision shows in pixels
EXPECTED = {
    "transformer": ("cuda", torch.bfloat16),
    "text_encoder": ("cuda", torch.bfloat16),
    "vae": ("cuda", torch.float32),
    "image_encoder": ("cuda", torch.float32),
}


def placement(pipe) -> dict:
    """(device type, dtype) of each model component. `.dtype` is the component's working dtype
    (diffusers and transformers both skip the few norms they keep in fp32); every weight must also
    sit on that device, and most of each component's weights (by count) in that dtype."""
    out = {}
    for name in EXPECTED:
        module = getattr(pipe, name)
        params = list(module.parameters())
        devices = {p.device.type for p in params}
        assert len(devices) == 1, (name, devices)
        main = sum(p.numel() for p in params if p.dtype == module.dtype)
        assert main > 0.5 * sum(p.numel() for p in params), (name, module.dtype)
        out[name] = (devices.pop(), module.dtype)
    return out


@pytest.fixture(scope="module")
def cuda_editor(tiny_model_dir):
    cfg = load_config(["model=tiny", f"model.path={tiny_model_dir}", "model.device=cuda"])
    return Editor(cfg.model), cfg


@pytest.mark.gpu
def test_components_load_in_reference_dtypes_on_cuda(cuda_editor):
    editor, cfg = cuda_editor
    assert cfg.model.dtype == "bfloat16" and editor.device == "cuda"
    assert placement(editor.pipe) == EXPECTED


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["none", "partial", "full"])
def test_edit_on_cuda_is_deterministic_for_a_seed(cuda_editor, frame, mode):
    editor, cfg = cuda_editor
    steps = cfg.generation.num_inference_steps
    gen = dataclasses.replace(cfg.generation, temporal_reasoning=mode != "none",
                              reasoning_steps={"none": 0, "partial": 2, "full": steps}[mode], denoise_preview_every=2)
    a = editor.edit(frame, PROMPT, seed=1, gen=gen)
    b = editor.edit(frame, PROMPT, seed=1, gen=gen)
    assert a.edited.shape == (96, 160, 3)
    assert a.edited.std() > 0  # not a blank frame (bf16 NaNs decode to a constant image)
    np.testing.assert_array_equal(a.edited, b.edited)
    assert [p for _, _, p in a.previews] and all(
        np.array_equal(p, q) for (_, _, p), (_, _, q) in zip(a.previews, b.previews, strict=True))
    if mode == "none":
        assert a.reasoning_frames is None
    else:
        assert a.reasoning_kind == {"partial": "x0_at_step_k", "full": "decoded"}[mode]
        assert a.reasoning_frames.shape == (9, 96, 160, 3)
        np.testing.assert_array_equal(a.reasoning_frames, b.reasoning_frames)
        assert not np.array_equal(a.reasoning_frames[0], a.reasoning_frames[4])
    c = editor.edit(frame, PROMPT, seed=2, gen=gen)
    assert not np.array_equal(a.edited, c.edited)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown where CUDA is missing")
def test_cuda_device_without_cuda_is_a_clear_error(tiny_model_dir):
    cfg = load_config(["model=tiny", f"model.path={tiny_model_dir}", "model.device=cuda"])
    with pytest.raises(RuntimeError, match=r"model.device=cuda but CUDA is not available here"):
        Editor(cfg.model)
