"""Tiny, randomly initialised Qwen-VL checkpoints for tests and the demo, written offline.

Same layout as a hub download (config.json, safetensors, tokenizer, processor, chat template) and loaded by
the same code as Qwen/Qwen3-VL-30B-A3B-Instruct. Its weights are RANDOM: what it writes is noise and its
ratings mean nothing; it proves the plumbing. The tokenizer is a byte-level BPE learnt from our own prompt
texts, with Qwen's special tokens and its one-digit-per-token split (the judge reads single digits).
"""

from __future__ import annotations

from pathlib import Path

from .tiny import _WORDS, write_marker

FAMILIES = ("qwen3_vl_moe", "qwen2_5_vl")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]
# Qwen's chat template, cut to what our messages use (text and images)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_vlm_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    from .vlm_prompts import CONSISTENCY, ENHANCE, QUALITY

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([ENHANCE, CONSISTENCY, QUALITY, " ".join(_WORDS)], trainer)
    out = Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None)
    out.padding_side = "left"  # decoder-only generation pads on the left
    return out


def build_tiny_vlm(seed: int = 0, family: str = "qwen3_vl_moe"):
    """(model, processor) of a tiny random Qwen3-VL-MoE (the official enhancer's family) or Qwen2.5-VL
    (also Qwen-Image-Edit's text encoder: engine/tiny_editors.py)."""
    import torch
    from transformers import Qwen2VLImageProcessor

    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    tokenizer = tiny_vlm_tokenizer()
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    special = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                   vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                pad_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], bos_token_id=None,
                # far above Qwen's 0.02: with small weights a 2-layer model says the same whatever it is shown
                initializer_range=0.5)
    # images of at most 128x128 pixels: a handful of vision tokens each
    pixels = dict(min_pixels=32 * 32, max_pixels=128 * 128, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    torch.manual_seed(seed)
    if family == "qwen3_vl_moe":
        from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        config = Qwen3VLMoeConfig(
            text_config={**text, "head_dim": 16, "moe_intermediate_size": 16, "num_experts": 4, "num_experts_per_tok": 2,
                         "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                             "mrope_interleaved": True}},
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                               deepstack_visual_indexes=[1]),
            **special)
        model = Qwen3VLMoeForConditionalGeneration(config)
        processor = Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, **pixels),
            video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2),
            tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        config = Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                     "mrope_section": [2, 3, 3]}},
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                               fullatt_block_indexes=[1]),
            **special)
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, **pixels),
            video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2),
            tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    return model.eval(), processor


def write_tiny_vlm(directory: str | Path, seed: int = 0, family: str = "qwen3_vl_moe") -> Path:
    """A tiny random Qwen3-VL-MoE or Qwen2.5-VL (build_tiny_vlm) in `directory`."""
    directory = Path(directory)
    model, processor = build_tiny_vlm(seed, family)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    write_marker(directory, seed, "Randomly initialised tiny Qwen-VL written by chronoedit-sim for tests and the "
                 "demo. Its text is noise and its ratings mean nothing; it proves the plumbing.", family=family)
    return directory
