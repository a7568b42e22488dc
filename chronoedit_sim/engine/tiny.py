"""Tiny, randomly initialised ChronoEdit checkpoint for tests and the demo.

The checkpoint has the exact diffusers layout of nvidia/ChronoEdit-14B-Diffusers
(model_index.json plus tokenizer, text_encoder, image_encoder, image_processor,
transformer, vae, scheduler) so it goes through the same loading code as the
real weights. Its weights are RANDOM: it proves the plumbing, never edit quality.
Everything is built offline; nothing touches the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

# Marker file written beside model_index.json; the editor reads it so every
# result made with these weights says so (see Editor.identity).
TINY_MARKER = "chronoedit_sim_tiny.json"

# Latent frames used with temporal reasoning by the tiny preset: 9 frames ->
# 1 + (9 - 1) / 4 = 3 latent frames. The transformer's temporal RoPE skip length
# must equal it, as the real model's 8 matches its 29 frames.
TINY_REASONING_LATENT_FRAMES = 3

_WORDS = (
    "a an the add remove make it rain snow fog night sun glare wet road car red blue green "
    "pedestrian cyclist vehicle street table object light keep camera unchanged scene in on of "
    "with and to from left right ahead crossing parked lamp cup box robot gripper surface dry day"
).split()


def tiny_tokenizer():
    from transformers import T5Tokenizer

    # Unigram vocabulary: the three T5 specials, single characters so any text
    # tokenizes, then a few whole words ("▁" marks a word start).
    chars = sorted({c for w in _WORDS for c in w} | set("0123456789.,:;!?'-()"))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"▁{w}", -2.0) for w in _WORDS]
    vocab += [("▁", -3.0)] + [(c, -5.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_pipeline(seed: int = 0):
    """Return an in-memory ChronoEditPipeline with tiny random components."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        ChronoEditPipeline,
        ChronoEditTransformer3DModel,
        UniPCMultistepScheduler,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    tokenizer = tiny_tokenizer()
    text_dim, clip_dim, heads, head_dim = 32, 16, 2, 12

    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=text_dim,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    torch.manual_seed(seed + 1)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=clip_dim,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=clip_dim,
        )
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(seed + 2)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(seed + 3)
    # Same architecture family as the 14B model (image cross-attention through
    # added_kv_proj_dim, in_channels = 2 * z_dim + 4), shrunk to two layers.
    transformer = ChronoEditTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=2 * 16 + 4,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        image_dim=clip_dim,
        added_kv_proj_dim=heads * head_dim,
        rope_max_seq_len=64,
        rope_temporal_skip_len=TINY_REASONING_LATENT_FRAMES,
    )
    # The released checkpoint ships UniPC in flow mode; the editor re-derives it
    # with the configured flow_shift anyway.
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000
    )
    for module in (text_encoder, image_encoder, vae, transformer):
        module.eval()  # freshly built modules are in train mode (UMT5 dropout); from_pretrained's are not
    return ChronoEditPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        image_processor=image_processor,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
    )


def write_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint to ``directory`` in diffusers layout and return it."""
    directory = Path(directory)
    pipe = build_tiny_pipeline(seed)
    pipe.save_pretrained(directory, safe_serialization=True)
    write_marker(directory, seed, "Randomly initialised tiny ChronoEdit written by chronoedit-sim for tests and the "
                 "demo. It proves the plumbing; its edits are noise, not edits.")
    return directory


def write_marker(directory: Path, seed: int, note: str, **extra) -> None:
    """The TINY_MARKER file that labels `directory` as random weights (weights.is_random_tiny reads it)."""
    (directory / TINY_MARKER).write_text(json.dumps({"random_weights": True, "seed": seed, **extra, "note": note},
                                                    indent=2) + "\n")
