"""bench/gpu.py's FLOP count, on which its MFU rests, against torch's own FLOP counter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import gpu  # noqa: E402


@pytest.mark.parametrize("latent_frames", [2, 8])
def test_transformer_flops_match_torch_flop_counter(latent_frames):
    from diffusers import ChronoEditTransformer3DModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # wide enough that the blocks dominate, as in the 14B model (patch and condition embeddings left out)
    torch.manual_seed(0)
    t = ChronoEditTransformer3DModel(num_attention_heads=4, attention_head_dim=64, in_channels=36, out_channels=16,
                                     text_dim=64, freq_dim=32, ffn_dim=768, num_layers=2, image_dim=32,
                                     added_kv_proj_dim=256, rope_temporal_skip_len=8).eval()
    x = torch.randn(1, 36, latent_frames, 16, 24)
    text, image = torch.randn(1, 64, 64), torch.randn(1, 17, 32)
    # the math attention kernel is made of matrix products the counter sees (the fused CPU kernel is not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        t(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=text,
          encoder_hidden_states_image=image)
    ours = gpu.transformer_flops(t.config, tuple(x.shape), context_tokens=64 + 17)
    assert ours == pytest.approx(counter.get_total_flops(), rel=0.05)
