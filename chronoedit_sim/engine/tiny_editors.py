"""Tiny, randomly initialised checkpoints of the other diffusers editors, written offline.

Each has the real diffusers layout of its hub repo (model_index.json and one folder per component, the
same component classes) so it loads through the same from_pretrained code as the released weights:
Qwen/Qwen-Image-Edit-2509 (QwenImageEditPlusPipeline) and black-forest-labs/FLUX.1-Kontext-dev
(FluxKontextPipeline). Their weights are RANDOM: they prove the plumbing, their edits are noise.
The tokenizers and processors are built here from our own word lists; nothing touches the hub.
"""

from __future__ import annotations

from pathlib import Path

from .tiny import _WORDS, tiny_tokenizer, write_marker
from .tiny_vlm import CHAT_TEMPLATE, build_tiny_vlm

NOTE = ("Randomly initialised tiny {name} written by chronoedit-sim for tests and the demo. It proves the "
        "plumbing; its edits are noise, not edits.")
# both released models pack 2x2 patches of 16 latent channels
LATENT_CHANNELS = 16


def _flow_scheduler(**dynamic_shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, use_dynamic_shifting=True, **dynamic_shift)


def build_tiny_qwen_image_edit(seed: int = 0):
    """An in-memory QwenImageEditPlusPipeline (the 2509 multi-image pipeline) with tiny random components.

    The text encoder is the tiny Qwen2.5-VL of tiny_vlm with its tokenizer: the pipeline shows it the frame
    as Qwen-Image-Edit does, so the vision-language path runs, not a stand-in.
    """
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImageEditPlusPipeline, QwenImageTransformer2DModel
    from transformers import Qwen2VLProcessor

    text_encoder, vlm_processor = build_tiny_vlm(seed, family="qwen2_5_vl")
    # the released repo's processor class, over the tiny Qwen2.5-VL's image and video processors
    processor = Qwen2VLProcessor(image_processor=vlm_processor.image_processor, tokenizer=vlm_processor.tokenizer,
                                 video_processor=vlm_processor.video_processor, chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed + 1)
    # The pipeline encodes the conditioning frame at a fixed 1024x1024 (VAE_IMAGE_SIZE in
    # pipeline_qwenimage_edit_plus.py), whatever the output size. With the released 8x VAE that is 4096
    # latent tokens per transformer pass and a 16384-token attention in the VAE: ~7 s per tiny edit on
    # a CPU. One more (spatial-only) down stage makes it 16x: 1024 tokens, a fraction of a second. No
    # residual blocks per stage (the released model has 2) for the same reason: the first stage runs at
    # 1024x1024. Output sides are then multiples of 32, which the backend reads from the VAE.
    vae = AutoencoderKLQwenImage(base_dim=4, z_dim=LATENT_CHANNELS, dim_mult=[1, 1, 1, 1, 1], num_res_blocks=0,
                                 temperal_downsample=[False, True, True, False])
    torch.manual_seed(seed + 2)
    # the released architecture (patch 2, 64 packed input channels, no guidance embedding) shrunk to two
    # layers; the rope axes sum to the head dim as (16, 56, 56) sum to the real 128
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_encoder.config.text_config.hidden_size,
        guidance_embeds=False, axes_dims_rope=(4, 6, 6))
    # Qwen-Image's dynamic shift (exponential time shift, terminal 0.02)
    scheduler = _flow_scheduler(base_image_seq_len=256, max_image_seq_len=8192, base_shift=0.5, max_shift=0.9,
                                shift=1.0, shift_terminal=0.02, time_shift_type="exponential")
    for module in (vae, transformer):
        module.eval()
    return QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                     tokenizer=processor.tokenizer, processor=processor, transformer=transformer)


def tiny_clip_tokenizer():
    """A byte-level CLIP BPE: single bytes (every text tokenizes) and the whole words of our prompts."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)])}
    merges = []
    for word in sorted(set(_WORDS)):
        for i in range(1, len(word)):
            left, right = word[:i], word[i] + ("</w>" if i == len(word) - 1 else "")
            if left + right not in vocab:
                merges.append((left, right))
                vocab[left + right] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_tiny_flux_kontext(seed: int = 0):
    """An in-memory FluxKontextPipeline with tiny random components (CLIP and T5 text encoders, the
    16-channel VAE, a guidance-distilled transformer as FLUX.1 Kontext [dev] is)."""
    import torch
    from diffusers import AutoencoderKL, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    torch.manual_seed(seed + 1)
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1))
    torch.manual_seed(seed + 2)
    # four blocks as the released VAE (8x down), 16 latent channels, its shift and scale, no quant convs
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
        norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159,
        scaling_factor=0.3611)
    torch.manual_seed(seed + 3)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=text_encoder_2.config.d_model,
        pooled_projection_dim=text_encoder.config.projection_dim, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    # FLUX.1's dynamic shift
    scheduler = _flow_scheduler(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15,
                                shift=3.0)
    for module in (text_encoder, text_encoder_2, vae, transformer):
        module.eval()
    return FluxKontextPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                               text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


BUILDERS = {
    "qwen_image_edit": ("Qwen-Image-Edit-2509", build_tiny_qwen_image_edit),
    "flux_kontext": ("FLUX.1 Kontext", build_tiny_flux_kontext),
}


def write_tiny_editor(backend: str, directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint of `backend` (a key of BUILDERS) to `directory` in diffusers layout."""
    name, build = BUILDERS[backend]
    directory = Path(directory)
    build(seed).save_pretrained(directory, safe_serialization=True)
    write_marker(directory, seed, NOTE.format(name=name), backend=backend)
    return directory
