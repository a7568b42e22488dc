"""The edit engine: owns one loaded ChronoEditPipeline and turns one job into an EditResult.

We use diffusers' ChronoEditPipeline as a component and never re-implement its
sampling loop; the trajectory is captured through its step callback.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from ..config import GenerationConfig, ModelConfig, UpscaleConfig
from .conditioning import CALLS, Conditioning, frame_digest
from . import speed
from .lora import load_loras
from .node_cache import on_this_node, transformer_on_this_node
from .quantize import fp8_config, quantize_transformer
from .trajectory import TrajectoryRecorder, decode_latents, to_uint8
from .weights import (
    MissingWeightsError,
    is_random_tiny,
    model_hash,
    resolve_lora_path,
    resolve_model_root,
    resolve_transformer,
)

log = logging.getLogger(__name__)

# The transformer's attention processor hard-codes a 512-token text context.
MAX_SEQUENCE_LENGTH = 512
# the adapter name of upscale.lora
UPSCALER = "upscaler"


def fit_resolution(width: int, height: int, max_area: int, multiple: int = 16) -> tuple[int, int]:
    """(width, height) keeping the aspect ratio within max_area, sides multiples of `multiple` (reference CLI)."""
    aspect = height / width
    out_h = max(multiple, round(math.sqrt(max_area * aspect)) // multiple * multiple)
    out_w = max(multiple, round(math.sqrt(max_area / aspect)) // multiple * multiple)
    return out_w, out_h


@dataclass
class ModelIdentity:
    # model.path as configured (repo id, directory or URL)
    model_id: str
    # hash of component configs, weight file sizes and LoRA bytes (see weights.model_hash)
    model_hash: str
    # preset name the config came from
    preset: str
    # true for the tiny test checkpoint: results are noise
    random_weights: bool
    # "name:scale" per active LoRA
    loras: list[str]


@dataclass
class EditResult:
    edited: np.ndarray  # (H, W, 3) uint8, the last generated frame
    reasoning_frames: np.ndarray | None  # (F, H, W, 3) uint8 from input to edit, or None without reasoning
    reasoning_kind: str | None  # "decoded" | "x0_at_step_k" | None
    # for x0_at_step_k: how many denoising steps had run, and the noise level of that estimate
    reasoning_step: int | None
    reasoning_sigma: float | None
    # optional denoising previews of the edited frame: (step index, sigma, frame)
    previews: list[tuple[int, float, np.ndarray]]
    settings: dict  # exactly what the pipeline was called with
    identity: ModelIdentity
    timings_ms: dict = field(default_factory=dict)
    # component calls this edit made (conditioning.CALLS); cache hits make none
    calls: dict = field(default_factory=dict)


class Editor:
    """One loaded ChronoEdit model. Construct once per process (or Ray actor); call edit() per job."""

    def __init__(self, model: ModelConfig, pipeline=None):
        """`pipeline`: an already built ChronoEditPipeline to use instead of loading `model.path`
        (bench/gpu.py builds the true-size architecture in memory); its weights count as random."""
        import torch

        self.cfg = model
        self.device = self._pick_device(model.device)
        fp8 = fp8_config(model.quantize, self.device) if model.quantize != "none" else None
        speed.check(model, self.device)
        on_gpu = self.device.startswith("cuda")
        # reference dtypes: transformer / text encoder low precision on GPU, VAE and CLIP fp32; CPU all fp32
        self.dtype = getattr(torch, model.dtype) if on_gpu else torch.float32
        if pipeline is None:
            # weights given as URLs load from this node's copy of them (node_cache)
            # a transformer kept apart replaces path's own, which is then neither copied nor checked here
            replaced = ("transformer",) if model.transformer_path else ()
            self.root = resolve_model_root(on_this_node(model.path, model.cache_dir, tuple(f"{c}/" for c in replaced)),
                                           model.revision, model.allow_download, apart=replaced)
            # the folder of a transformer kept apart, or None: path's own
            self.transformer_dir = (resolve_transformer(transformer_on_this_node(model.transformer_path,
                                                                                 model.cache_dir),
                                                        model.allow_download) if model.transformer_path else None)
            lora_files = [(resolve_lora_path(on_this_node(l.path, model.cache_dir), self.root, model.allow_download),
                           l.scale, l.name) for l in model.loras]
            self.pipe = self._load(self.dtype)
            names = load_loras(self.pipe, lora_files)
            self._adapters = (names, [s for _, s, _ in lora_files])  # the edits' active set
            apart = self.transformer_dir
            self.identity = ModelIdentity(
                model_id=model.path if apart is None else f"{model.path} + transformer {model.transformer_path}",
                model_hash=model_hash(self.root, [(p, s) for p, s, _ in lora_files], transformer=apart),
                preset=model.preset,
                random_weights=is_random_tiny(self.root) or (apart is not None and is_random_tiny(apart)),
                loras=[f"{n}:{s:g}" for n, (_, s, _) in zip(names, lora_files)],
            )
        else:
            self.root, self.pipe = None, pipeline
            self._adapters = ([], [])
            self.identity = ModelIdentity(model_id=model.path, model_hash="in-memory", preset=model.preset,
                                          random_weights=True, loras=[])
        if model.cpu_offload:
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.cond = Conditioning(self.pipe, prompts=model.cache_prompts, frames=model.cache_frames)
        self._scheduler_config = dict(self.pipe.scheduler.config)
        if fp8 is not None:
            quantize_transformer(self.pipe.transformer, fp8)
        if model.attention_backend == speed.SAGE:
            speed.use_sage_attention(self.pipe.transformer)
        elif model.attention_backend:
            self.pipe.transformer.set_attention_backend(model.attention_backend)
        self.step_cache = (speed.StepCache(self.pipe.transformer, model.step_cache, model.step_cache_threshold,
                                           model.step_cache_calibration) if model.step_cache != "none" else None)
        # the compile cache's root while compiling (None: not compiling, or torch's own cache place), and
        # the shapes whose kernels are in its mega-cache file
        self.compiled, self.compile_root, self._saved_shapes = False, None, set()
        if speed.compile_enabled(model.compile, self.device):
            self.compile_root = speed.use_compile_cache(model.compile_cache_dir)
            # regional compilation: the 40 identical blocks compile once, not the whole model
            self.pipe.transformer.compile_repeated_blocks(fullgraph=True)
            self.compiled = True
        if self.identity.random_weights:
            log.warning("model %s has RANDOM weights (tiny test checkpoint): edits are noise", model.path)

    @staticmethod
    def _pick_device(device: str) -> str:
        import torch

        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"model.device={device} but CUDA is not available here (use model.device=auto or cpu)")
        return device

    def _load(self, dtype):
        import torch
        from diffusers import AutoencoderKLWan, ChronoEditPipeline, ChronoEditTransformer3DModel
        from transformers import CLIPVisionModel

        parts = {}
        for name, cls, part_dtype in (
            ("transformer", ChronoEditTransformer3DModel, dtype),
            ("vae", AutoencoderKLWan, torch.float32),
            ("image_encoder", CLIPVisionModel, torch.float32),
        ):
            root, subfolder = ((self.transformer_dir, None) if name == "transformer" and self.transformer_dir
                               else (self.root, name))
            try:
                parts[name] = cls.from_pretrained(root, subfolder=subfolder, dtype=part_dtype)
            except Exception as exc:
                raise MissingWeightsError(f"ChronoEdit weights unreadable: {root}/{subfolder or ''}: {exc}") from None
        try:
            return ChronoEditPipeline.from_pretrained(self.root, dtype=dtype, **parts)
        except Exception as exc:
            raise MissingWeightsError(f"ChronoEdit weights unreadable: {self.root}: {exc}") from None

    def _scheduler(self, flow_shift: float):
        from diffusers import UniPCMultistepScheduler

        # UniPC in flow mode: the pipeline's partial-reasoning cut edits model_outputs /
        # last_sample, which the Euler flow scheduler lacks.
        return UniPCMultistepScheduler.from_config(
            self._scheduler_config, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift
        )

    def settings_for(self, image_size: tuple[int, int], gen: GenerationConfig) -> dict:
        """The exact pipeline settings for a frame of (width, height) under `gen`."""
        if gen.height is not None:
            width, height = gen.width, gen.height
        else:
            width, height = fit_resolution(*image_size, gen.max_area)
        reasoning = gen.temporal_reasoning
        return {
            "num_inference_steps": gen.num_inference_steps,
            "guidance_scale": gen.guidance_scale,
            "flow_shift": gen.flow_shift,
            "temporal_reasoning": reasoning,
            "reasoning_steps": min(gen.reasoning_steps, gen.num_inference_steps) if reasoning else 0,
            "num_frames": gen.num_frames if reasoning else 5,
            "height": height,
            "width": width,
            "loras": list(self.identity.loras),
            "denoise_preview_every": gen.denoise_preview_every,
        }

    def edit(self, image, prompt: str, *, seed: int, gen: GenerationConfig, negative_prompt: str = "") -> EditResult:
        """Edit one RGB frame (HxWx3 uint8 array or PIL image). Deterministic for a seed."""
        return self.edit_samples(image, prompt, seeds=[seed], gen=gen, negative_prompt=negative_prompt)[0]

    def edit_samples(self, image, prompt: str, *, seeds: list[int], gen: GenerationConfig,
                     negative_prompt: str = "") -> list[EditResult]:
        """One pipeline call for several samples of one (frame, prompt), one seed each.

        One seed is exactly the single edit; several run as one batch (the prompt embeddings
        repeated, a generator per sample), which matches the single calls to float noise, not bit
        for bit: a result is deterministic for a given batch composition.
        """
        import torch

        t0 = time.perf_counter()
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        s = self.settings_for(pil.size, gen)
        pil = pil.convert("RGB").resize((s["width"], s["height"]), Image.Resampling.BICUBIC)
        partial = s["temporal_reasoning"] and s["reasoning_steps"] < s["num_inference_steps"]
        recorder = TrajectoryRecorder(s["reasoning_steps"] - 1 if partial else None, s["denoise_preview_every"])
        self.pipe.scheduler = self._scheduler(s["flow_shift"])
        calls = self.cond.snapshot()
        n = len(seeds)
        # the canonical path: text goes in as embeddings from the per-actor cache (the pipeline's own
        # encode_prompt, so bit-identical to passing the text)
        embeds, negative_embeds = self.cond.prompt_embeds(prompt, negative_prompt, s["guidance_scale"] > 1,
                                                          MAX_SEQUENCE_LENGTH)
        if n > 1:
            embeds = embeds.repeat(n, 1, 1)
            negative_embeds = None if negative_embeds is None else negative_embeds.repeat(n, 1, 1)
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        if self.step_cache is not None:
            if partial:
                raise speed.SpeedOptionError(f"model.step_cache={self.cfg.step_cache} cannot run with partial "
                                             "temporal reasoning (the cut changes the latents' shape mid-run)")
            self.step_cache.prepare(s["num_inference_steps"], s["guidance_scale"] > 1)
        # CFG's two passes stay two transformer calls (the pipeline's loop): one batch-2 forward measured
        # 2.5% slower on an H200 (docs/PERFORMANCE.md), not worth a copy of the loop
        t_call = time.perf_counter()
        with self.cond.frame(frame_digest(pil), s["num_frames"], s["height"], s["width"]):
            out = self.pipe(
                image=pil,
                prompt_embeds=embeds,
                negative_prompt_embeds=negative_embeds,
                height=s["height"],
                width=s["width"],
                num_frames=s["num_frames"],
                num_inference_steps=s["num_inference_steps"],
                guidance_scale=s["guidance_scale"],
                generator=generators[0] if n == 1 else generators,
                output_type="np",
                max_sequence_length=MAX_SEQUENCE_LENGTH,
                enable_temporal_reasoning=s["temporal_reasoning"],
                num_temporal_reasoning_steps=s["reasoning_steps"],
                callback_on_step_end=recorder,
            )
        t_done = time.perf_counter()
        shape = (n, s["num_frames"], s["height"], s["width"])
        if self.compile_root is not None and shape not in self._saved_shapes:
            # the first edit of a shape compiled it: keep the portable copy of the node's compile cache current
            speed.save_mega_cache(self.compile_root)
            self._saved_shapes.add(shape)
        videos = [to_uint8(v) for v in out.frames]
        reasoning, kind, r_step, r_sigma = [None] * n, None, None, None
        if s["temporal_reasoning"] and not partial:
            reasoning, kind = videos, "decoded"
        elif partial:
            reasoning = [decode_latents(self.pipe, recorder.x0[i:i + 1]) for i in range(n)]
            kind, r_step, r_sigma = "x0_at_step_k", s["reasoning_steps"], recorder.x0_sigma
        t_reason = time.perf_counter()
        previews = [[(step, sig, decode_latents(self.pipe, lat[i:i + 1])[-1]) for step, sig, lat in recorder.previews]
                    for i in range(n)]
        t_end = time.perf_counter()
        last_step = recorder.step_ends[-1] if recorder.step_ends else t_done
        # a batched call's time and calls are shared: each sample gets its share of the time, and the
        # calls go to the first sample (so sums over rows stay true)
        ms = lambda a, b: round((b - a) * 1000 / n, 3)  # noqa: E731
        timings = {
            "prepare_ms": ms(t0, t_call),
            # image and VAE conditioning and the denoising loop, up to the last step's callback
            "denoise_ms": ms(t_call, last_step),
            "decode_ms": ms(last_step, t_done),
            "reasoning_decode_ms": ms(t_done, t_reason),
            "preview_decode_ms": ms(t_reason, t_end),
            "total_ms": ms(t0, t_end),
        }
        spent = self.cond.since(calls)
        return [EditResult(edited=videos[i][-1], reasoning_frames=reasoning[i], reasoning_kind=kind,
                           reasoning_step=r_step, reasoning_sigma=r_sigma, previews=previews[i], settings=s,
                           identity=self.identity, timings_ms=dict(timings),
                           calls=spent if i == 0 else dict.fromkeys(CALLS, 0))
                for i in range(n)]

    def add_upscaler(self, cfg: UpscaleConfig) -> None:
        """Load the Upscaler LoRA as an adapter of its own, inactive for edits (upscale() switches to it)."""
        path = resolve_lora_path(on_this_node(cfg.lora, self.cfg.cache_dir), self.root, self.cfg.allow_download)
        load_loras(self.pipe, [(path, cfg.lora_scale, UPSCALER)])
        self.upscale_cfg = cfg
        self._use(*self._adapters)  # loading activated it alone: back to the edits' own set

    def _use(self, names: list[str], weights: list[float]) -> None:
        if names:
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, adapter_weights=weights)
        else:  # no LoRA of the edits: the loaded upscaler must not take part
            self.pipe.disable_lora()

    def upscale(self, edited: np.ndarray, size: tuple[int, int], *, seed: int, gen: GenerationConfig) -> EditResult:
        """The super-resolution pass: the edited frame through the pipeline with the Upscaler LoRA alone
        and its trigger prompt, at `size` (width, height; sides rounded to multiples of 16), no reasoning.
        The result's `edited` is resized to exactly `size` (the source camera's resolution)."""
        cfg = self.upscale_cfg
        w16, h16 = (max(16, round(v / 16) * 16) for v in size)
        steps = cfg.num_inference_steps or gen.num_inference_steps
        pass_gen = replace(gen, width=w16, height=h16, temporal_reasoning=False, num_inference_steps=steps,
                           denoise_preview_every=0)
        self._use([UPSCALER], [cfg.lora_scale])
        try:
            result = self.edit(edited, cfg.prompt, seed=seed, gen=pass_gen)
        finally:
            self._use(*self._adapters)
        if (w16, h16) != tuple(size):
            result.edited = np.asarray(Image.fromarray(result.edited).resize(size, Image.Resampling.BICUBIC))
        return result

    def offload_text_encoder(self, texts: list[str]) -> None:
        """Encode every text (prompts and negative prompts) the run will ask for, then move the text
        encoder off the GPU; a text outside the list is then an error, never a silent CPU encode."""
        self.cond.pin_texts(texts, MAX_SEQUENCE_LENGTH, "cpu")
