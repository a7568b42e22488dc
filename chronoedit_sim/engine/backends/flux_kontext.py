"""FLUX.1 Kontext [dev] through diffusers' FluxKontextPipeline.

The frame is the context image, at the model resolution of the frame (generation.max_area): the
pipeline's own snap to Kontext's preferred resolutions (_auto_resize) is off and its max_area is the
output's area, so the size the editor chose is the size the pipeline uses for both.
"""

from __future__ import annotations

from ...config import GenerationConfig
from .common import DiffusersBackend


class FluxKontextBackend(DiffusersBackend):
    name = "flux_kontext"
    pipeline_class = "FluxKontextPipeline"

    def call_settings(self, size: dict, gen: GenerationConfig, negative_prompt: str) -> dict:
        # generation.guidance_scale -> guidance_scale, the guidance *embedding* of the guidance-distilled
        # [dev] model (one transformer pass per step; BFL's default 2.5), not classifier-free guidance:
        # true_cfg_scale stays at the pipeline's 1.0, so a negative prompt has nothing to act on and is
        # not passed. The pipeline rescales height x width to max_area (aspect kept): the output's own
        # area keeps them as they are.
        return {"guidance_scale": gen.guidance_scale, "max_area": size["height"] * size["width"],
                "_auto_resize": False}
