"""Capturing ChronoEdit's temporal-reasoning trajectory from diffusers' pipeline.

With partial reasoning (k of n steps) ChronoEditPipeline cuts the latents to
[input, edit] at the start of step k and never decodes the frames between. The
recorder runs as `callback_on_step_end`: at step k-1 (after the scheduler step,
before the cut) it keeps UniPC's last model output, which is the model's clean
(x0) estimate of the whole reasoning video, far more legible than the noisy
latents. `decode_latents` decodes it exactly as the pipeline decodes its own
output. The recorder returns no tensors, so it never changes the result.
"""

from __future__ import annotations

import time

import numpy as np
import torch


class TrajectoryRecorder:
    """`callback_on_step_end` that keeps clean estimates without touching the sampling."""

    def __init__(self, capture_step: int | None, preview_every: int = 0):
        # 0-based step whose x0 estimate of the whole video is kept (k - 1), or None
        self.capture_step = capture_step
        self.preview_every = preview_every
        self.x0: torch.Tensor | None = None
        self.x0_sigma: float | None = None
        # (step index, sigma, x0 latents of [input, edit])
        self.previews: list[tuple[int, float, torch.Tensor]] = []
        self.step_ends: list[float] = []

    def __call__(self, pipe, i: int, t, callback_kwargs: dict) -> dict:
        scheduler = pipe.scheduler
        if i == self.capture_step or (self.preview_every and (i + 1) % self.preview_every == 0):
            x0 = scheduler.model_outputs[-1]
            # sigmas[i] is the noise level the model saw when it made this estimate
            sigma = float(scheduler.sigmas[i])
            if i == self.capture_step:
                self.x0, self.x0_sigma = x0.detach().clone(), sigma
            if self.preview_every and (i + 1) % self.preview_every == 0:
                self.previews.append((i, sigma, x0[:, :, [0, -1]].detach().clone()))
        self.step_ends.append(time.perf_counter())
        return {}


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Pipeline float frames in [0, 1] to uint8, rounded as diffusers' numpy_to_pil does."""
    return (frames * 255).round().clip(0, 255).astype(np.uint8)


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor) -> np.ndarray:
    """Decode normalised video latents (B=1) to uint8 frames (F, H, W, 3), as the pipeline does.

    Mirrors the tail of ChronoEditPipeline.__call__: undo the VAE's latents_mean /
    latents_std normalisation, decode the reasoning part (all but the last latent
    frame) and [input, edit] separately, and join them. T latent frames give
    1 + 4 (T - 1) frames.
    """
    vae = pipe.vae
    latents = latents.to(device=next(vae.parameters()).device, dtype=vae.dtype)
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    latents = latents / inv_std + mean
    if latents.shape[2] > 2:
        edit = vae.decode(latents[:, :, [0, -1]], return_dict=False)[0]
        reason = vae.decode(latents[:, :, :-1], return_dict=False)[0]
        video = torch.cat([reason, edit[:, :, 1:]], dim=2)
    else:
        video = vae.decode(latents, return_dict=False)[0]
    frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
    return to_uint8(frames)
