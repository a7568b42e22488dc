"""What the diffusers editor backends other than ChronoEdit share: the offline load, the identity, and
one pipeline call per seed list. Each backend names its pipeline and maps the generation settings onto
its own pipeline's arguments (`call_settings`); diffusers runs the sampling loop, never a copy of it.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from PIL import Image

from ...config import CALL_NAMES, GenerationConfig, ModelConfig
from ...errors import MissingWeightsError
from ..editor import EditResult, Editor, ModelIdentity, fit_resolution
from ..node_cache import on_this_node
from ..trajectory import TrajectoryRecorder, to_uint8
from ..weights import CHECKPOINTS, is_random_tiny, model_hash, resolve_model_root

log = logging.getLogger(__name__)

# component -> the call counter it feeds (config.CALL_NAMES); these pipelines have no image encoder:
# the frame reaches them through the VAE (and, for Qwen, the text encoder's vision tower)
_COUNTED = (("text_encoder", "text_encoder_calls"), ("text_encoder_2", "text_encoder_calls"),
            ("transformer", "transformer_forwards"))


class DiffusersBackend:
    """One loaded diffusers editing pipeline. Construct once per process (or Ray actor); edit per job."""

    # the model.backend key (weights.CHECKPOINTS) and the diffusers pipeline class
    name: str
    pipeline_class: str

    def __init__(self, model_cfg: ModelConfig):
        import diffusers
        import torch

        self.cfg = model_cfg
        self.device = Editor._pick_device(model_cfg.device)
        # the model's dtype on a GPU, fp32 on a CPU (as the ChronoEdit editor)
        self.dtype = getattr(torch, model_cfg.dtype) if self.device.startswith("cuda") else torch.float32
        self.root = resolve_model_root(on_this_node(model_cfg.path, model_cfg.cache_dir), model_cfg.revision,
                                       model_cfg.allow_download, self.name)
        title = CHECKPOINTS[self.name].title
        try:
            self.pipe = getattr(diffusers, self.pipeline_class).from_pretrained(self.root, dtype=self.dtype)
        except Exception as exc:
            raise MissingWeightsError(f"{title} weights unreadable: {self.root}: {exc}") from None
        self.identity = ModelIdentity(model_id=model_cfg.path, model_hash=model_hash(self.root, []),
                                      preset=model_cfg.preset, random_weights=is_random_tiny(self.root), loras=[])
        if model_cfg.cpu_offload:
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        # output sides: multiples of the packed latent patch (VAE factor x 2), read from the checkpoint
        self.multiple = self.pipe.vae_scale_factor * 2
        self.calls = dict.fromkeys(CALL_NAMES, 0)
        for component, counter in _COUNTED:
            module = getattr(self.pipe, component, None)
            if module is not None:
                module.register_forward_pre_hook(self._counting(counter))
        for method, counter in (("encode", "vae_encode_calls"), ("decode", "vae_decode_calls")):
            setattr(self.pipe.vae, method, self._counted(getattr(self.pipe.vae, method), counter))
        if self.identity.random_weights:
            log.warning("model %s has RANDOM weights (tiny test checkpoint): edits are noise", model_cfg.path)

    def _counting(self, counter: str):
        def hook(module, args):
            self.calls[counter] += 1
        return hook

    def _counted(self, method, counter: str):
        def call(*args, **kwargs):
            self.calls[counter] += 1
            return method(*args, **kwargs)
        return call

    def call_settings(self, size: dict, gen: GenerationConfig, negative_prompt: str) -> dict:
        """The pipeline's own arguments beside `size` (height, width, steps): each backend maps
        generation.guidance_scale onto its pipeline's knob and says how."""
        raise NotImplementedError

    def settings_for(self, image_size: tuple[int, int], gen: GenerationConfig, negative_prompt: str = "") -> dict:
        """Exactly the pipeline arguments (besides image, prompt and generators) for a (width, height) frame."""
        if gen.height is not None:
            width, height = gen.width, gen.height
        else:
            width, height = fit_resolution(*image_size, gen.max_area, self.multiple)
        size = {"height": height, "width": width, "num_inference_steps": gen.num_inference_steps}
        return {**size, **self.call_settings(size, gen, negative_prompt)}

    def edit_samples(self, image, prompt: str, *, seeds: list[int], gen: GenerationConfig,
                     negative_prompt: str = "") -> list[EditResult]:
        """One pipeline call for every seed (num_images_per_prompt, one generator each); deterministic per
        seed list. The frame is resized to the model resolution here, so the pipeline sees that size."""
        import torch

        t0 = time.perf_counter()
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        s = self.settings_for(pil.size, gen, negative_prompt)
        pil = pil.convert("RGB").resize((s["width"], s["height"]), Image.Resampling.BICUBIC)
        n = len(seeds)
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        before = dict(self.calls)
        recorder = TrajectoryRecorder(None)  # step end times only: these pipelines have no trajectory
        t_call = time.perf_counter()
        with torch.no_grad():
            out = self.pipe(image=pil, prompt=prompt, **s, num_images_per_prompt=n,
                            generator=generators[0] if n == 1 else generators, output_type="np",
                            callback_on_step_end=recorder)
        t_done = time.perf_counter()
        last_step = recorder.step_ends[-1] if recorder.step_ends else t_done
        # a batched call's time and calls are shared as in Editor.edit_samples: each sample gets its share
        # of the time, the calls go to the first sample
        ms = lambda a, b: round((b - a) * 1000 / n, 3)  # noqa: E731
        timings = {"prepare_ms": ms(t0, t_call), "denoise_ms": ms(t_call, last_step),
                   "decode_ms": ms(last_step, t_done), "reasoning_decode_ms": 0.0, "preview_decode_ms": 0.0,
                   "total_ms": ms(t0, t_done)}
        spent = {name: self.calls[name] - before[name] for name in CALL_NAMES}
        return [EditResult(edited=to_uint8(out.images[i]), reasoning_frames=None, reasoning_kind=None,
                           reasoning_step=None, reasoning_sigma=None, previews=[], settings=dict(s),
                           identity=self.identity, timings_ms=dict(timings),
                           calls=spent if i == 0 else dict.fromkeys(CALL_NAMES, 0))
                for i in range(n)]
