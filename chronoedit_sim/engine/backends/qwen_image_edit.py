"""Qwen-Image-Edit (2509) through diffusers' multi-image QwenImageEditPlusPipeline.

The frame goes in as the pipeline's one reference image: it conditions the edit twice, through the
Qwen2.5-VL text encoder (at about 384x384) and through the VAE (at about 1024x1024, fixed by the
pipeline); the output is made at the model resolution of the frame (generation.max_area).
"""

from __future__ import annotations

from ...config import GenerationConfig
from .common import DiffusersBackend


class QwenImageEditBackend(DiffusersBackend):
    name = "qwen_image_edit"
    pipeline_class = "QwenImageEditPlusPipeline"

    def call_settings(self, size: dict, gen: GenerationConfig, negative_prompt: str) -> dict:
        # generation.guidance_scale -> true_cfg_scale: Qwen-Image has no guidance embedding (its
        # pipeline's own guidance_scale is ignored for it), it runs true classifier-free guidance, which
        # the pipeline turns on only with a negative prompt: an empty one becomes " ", as in Qwen's own
        # examples (true_cfg_scale=4.0, negative_prompt=" "). <= 1 turns CFG off: one transformer pass per step.
        if gen.guidance_scale <= 1:
            return {"true_cfg_scale": gen.guidance_scale}
        return {"true_cfg_scale": gen.guidance_scale, "negative_prompt": negative_prompt or " "}
