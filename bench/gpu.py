"""True-size ChronoEdit-14B on one GPU, with RANDOM weights: seconds per edit, transformer MFU,
peak GPU memory and each phase's share, for the toolkit's Editor and the plain pipeline loop.

    python bench/gpu.py                  # CUDA: the true-size architecture (about 45 GB of weights)
    python bench/gpu.py --quick          # the main cases only
    python bench/gpu.py --arch small --device cpu --json /tmp/gpu.json   # rehearsal of this code, shrunk
    python bench/gpu.py --speed          # the speed options against the targets (bench/gpu_speed.py)
    python bench/gpu.py --smoke          # the shrunk sizes, one edit, on CUDA where there is one; writes nothing

The real weights never exist on our machines. The components are built from the published
architecture (ChronoEdit-14B = Wan 2.1 I2V 14B transformer, UMT5-XXL, CLIP ViT-H/14, Wan VAE)
with random weights directly on the GPU. Weight values do not change the arithmetic, so the
timings are the real cost of an edit; the pixels are noise. Exceptions, stated where they show:
a cache that skips work by comparing activations (first-block cache) skips by what random
weights produce, which says nothing about real weights.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import gpu_speed
from common import RESULTS, machine, print_table

import numpy as np
import torch
from PIL import Image

PROMPT = "add a pedestrian crossing the road ahead"
# dense bf16 tensor-core peak by the vendor's datasheet (H100 SXM and H200 alike)
DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}

ARCHS = {
    "14b": {
        # ChronoEdit-14B: the Wan 2.1 I2V 14B transformer (image cross-attention through
        # added_kv_proj_dim; in_channels = noisy latents 16 + condition 16 + mask 4)
        "transformer": dict(num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
                            text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, image_dim=1280,
                            added_kv_proj_dim=5120, rope_temporal_skip_len=8),
        # UMT5-XXL encoder
        "text_encoder": dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                             relative_attention_num_buckets=32, feed_forward_proj="gated-gelu"),
        # CLIP ViT-H/14 vision tower at 224 px
        "image_encoder": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                              num_attention_heads=16, image_size=224, patch_size=14, projection_dim=1024),
        # Wan 2.1 VAE: AutoencoderKLWan's defaults
        "vae": {},
        "size": (832, 480), "num_frames": 29,
    },
    # the same code on shrunk sizes, to rehearse this script where there is no GPU
    "small": {
        "transformer": dict(num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
                            text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, image_dim=16, added_kv_proj_dim=24,
                            rope_temporal_skip_len=3),
        "text_encoder": dict(vocab_size=256, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                             relative_attention_num_buckets=8),
        "image_encoder": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16),
        "vae": dict(base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
        "size": (160, 96), "num_frames": 9,
    },
}


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_pipeline(arch: dict, device: str, dtype):
    """ChronoEditPipeline of `arch` with random weights, made on `device` in the reference dtypes."""
    from diffusers import AutoencoderKLWan, ChronoEditPipeline, UniPCMultistepScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from chronoedit_sim.engine.tiny import tiny_tokenizer

    side = arch["image_encoder"]["image_size"]
    torch.manual_seed(0)
    transformer = build_transformer(arch, device, dtype)
    with torch.device(device):
        with default_dtype(dtype):
            text_encoder = UMT5EncoderModel(UMT5Config(pad_token_id=0, eos_token_id=1, **arch["text_encoder"]))
        vae = AutoencoderKLWan(**arch["vae"])
        image_encoder = CLIPVisionModel(CLIPVisionConfig(**arch["image_encoder"]))
    for module in (text_encoder, vae, image_encoder):
        module.eval().requires_grad_(False)
    return ChronoEditPipeline(
        # every prompt is padded to 512 tokens, so a small vocabulary costs the encoder the same
        tokenizer=tiny_tokenizer(), text_encoder=text_encoder, image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        transformer=transformer, vae=vae,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
    )


def build_transformer(arch: dict, device: str, dtype):
    from diffusers import ChronoEditTransformer3DModel

    with torch.device(device), default_dtype(dtype):
        transformer = ChronoEditTransformer3DModel(
            patch_size=(1, 2, 2), cross_attn_norm=True, qk_norm="rms_norm_across_heads", **arch["transformer"])
    return transformer.eval().requires_grad_(False)


def transformer_flops(cfg, hidden_shape, context_tokens: int) -> float:
    """FLOPs of one transformer forward: the blocks' matrix products and attention (embeddings,
    norms and the output head, under 1%, left out). hidden_shape is the latents' (B, C, F, H, W)."""
    b, _, f, h, w = hidden_shape
    p = cfg.patch_size
    n = f // p[0] * (h // p[1]) * (w // p[2])
    d = cfg.num_attention_heads * cfg.attention_head_dim
    self_attn = 8 * n * d * d + 4 * n * n * d
    cross_attn = 4 * n * d * d + 4 * context_tokens * d * d + 4 * n * context_tokens * d
    ffn = 4 * n * d * cfg.ffn_dim
    return float(b * cfg.num_layers * (self_attn + cross_attn + ffn))


class Meter:
    """Calls and seconds of each component (the GPU synchronised around every call), and the
    transformer's FLOPs. Wraps the components' entry points on the instances."""

    def __init__(self, pipe, sync):
        self.sync, self.cfg = sync, pipe.transformer.config
        self.reset()
        for name, obj, attr in (("text_encoder", pipe.text_encoder, "forward"),
                                ("image_encoder", pipe.image_encoder, "forward"),
                                ("vae_encode", pipe.vae, "encode"), ("vae_decode", pipe.vae, "decode"),
                                ("transformer", pipe.transformer, "forward")):
            setattr(obj, attr, self._wrap(name, getattr(obj, attr)))

    def reset(self):
        self.calls, self.seconds, self.flops = Counter(), Counter(), 0.0
        # prefix of the calls made inside the Editor's trajectory decode, kept apart from the pipeline's
        self.tag = ""

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            self.sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            self.calls[self.tag + name] += 1
            self.seconds[self.tag + name] += time.perf_counter() - t0
            if name == "transformer":
                hidden = kwargs.get("hidden_states", args[0] if args else None)
                context = kwargs["encoder_hidden_states"].shape[1] + kwargs["encoder_hidden_states_image"].shape[1]
                self.flops += transformer_flops(self.cfg, tuple(hidden.shape), context)
            return out
        return timed


def plain_edit(pipe, image, s, seed):
    """The plain loop's job: one ChronoEditPipeline call, frames to uint8 (as a user would write it)."""
    from diffusers import UniPCMultistepScheduler

    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=s["flow_shift"])
    out = pipe(image=image.resize((s["width"], s["height"]), Image.Resampling.BICUBIC), prompt=PROMPT,
               height=s["height"], width=s["width"], num_frames=s["num_frames"],
               num_inference_steps=s["num_inference_steps"], guidance_scale=s["guidance_scale"],
               generator=torch.Generator().manual_seed(seed), output_type="np",
               enable_temporal_reasoning=s["temporal_reasoning"],
               num_temporal_reasoning_steps=s["reasoning_steps"])
    return (out.frames[0] * 255).round().clip(0, 255).astype(np.uint8)


class Bench:
    def __init__(self, args):
        self.args, self.t_start = args, time.perf_counter()
        self.cuda = args.device.startswith("cuda")
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.arch = ARCHS[args.arch]
        self.doc = {"benchmark": "gpu", "arch": args.arch, "random_weights": True, "machine": machine(),
                    "device": torch.cuda.get_device_name(0) if self.cuda else "cpu", "cases": [], "forwards": [],
                    "notes": [], "compile_cache": [], "editors": [], "step_cache": []}
        if self.cuda:
            self.doc["torch_cuda"] = torch.version.cuda
            self.doc["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)

    def save(self):
        if self.args.smoke:
            return
        Path(self.args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(self.args.json).write_text(json.dumps(self.doc, indent=2, default=str) + "\n")

    def over_budget(self) -> bool:
        return time.perf_counter() - self.t_start > self.args.budget_s

    def peak_tflops(self) -> float | None:
        if not self.cuda:
            return None
        name = torch.cuda.get_device_name(0)
        return next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)

    def matmul_tflops(self) -> float | None:
        """The card's bf16 matrix rate as measured here (8192^3 products on random data)."""
        if not self.cuda:
            return None
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ a
        self.sync()
        t0 = time.perf_counter()
        for _ in range(10):
            a @ a
        self.sync()
        return round(10 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12, 1)

    def setup(self):
        from chronoedit_sim.config import load_config
        from chronoedit_sim.engine import editor as editor_module
        from chronoedit_sim.engine.editor import Editor

        t0 = time.perf_counter()
        dtype = torch.bfloat16 if self.cuda else torch.float32
        pipe = build_pipeline(self.arch, self.args.device, dtype)
        self.sync()
        self.doc["build_s"] = round(time.perf_counter() - t0, 1)
        self.doc["params_b"] = {n: round(sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e9, 3)
                                for n in ("transformer", "text_encoder", "image_encoder", "vae")}
        if self.cuda:
            self.doc["weights_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
            self.doc["matmul_bf16_tflops_measured"] = self.matmul_tflops()
            self.doc["datasheet_bf16_tflops"] = self.peak_tflops()
        self.meter = Meter(pipe, self.sync)
        decode = editor_module.decode_latents

        def tagged_decode(*args, **kwargs):
            self.meter.tag = "trajectory_"
            try:
                return decode(*args, **kwargs)
            finally:
                self.meter.tag = ""

        editor_module.decode_latents = tagged_decode
        # uncompiled, as every table but --speed's (compile is the CUDA default since #26)
        cfg = load_config([f"model.device={self.args.device}", "model.path=in-memory-random", "model.compile=false"])
        self.editor = Editor(cfg.model, pipeline=pipe)
        self.base_gen = cfg.generation
        w, h = self.arch["size"]
        frame = Image.open(Path(__file__).resolve().parents[1] / "examples/frames/driving/road_day_000.png")
        self.frame = np.asarray(frame.convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
        self.save()

    def gen(self, preset: str, mode: str, **extra):
        steps, guidance, shift = {"base50": (50, 5.0, 5.0), "distill8": (8, 1.0, 2.0)}[preset]
        if self.args.arch == "small":
            steps = min(steps, 4)
        reasoning = {"none": 0, "partial": max(1, steps // 5 if preset == "base50" else steps // 2),
                     "full": steps}[mode]
        w, h = self.arch["size"]
        return dataclasses.replace(self.base_gen, num_inference_steps=steps, guidance_scale=guidance,
                                   flow_shift=shift, temporal_reasoning=mode != "none", reasoning_steps=reasoning,
                                   num_frames=self.arch["num_frames"], width=w, height=h, **extra)

    def case(self, preset: str, mode: str, runner: str, reps: int = 1, option: str = "none"):
        if self.over_budget():
            self.doc["cases"].append({"preset": preset, "mode": mode, "runner": runner, "option": option,
                                      "skipped": "time budget"})
            return
        g = self.gen(preset, mode)
        row = {"preset": preset, "mode": mode, "runner": runner, "option": option,
               "steps": g.num_inference_steps, "guidance": g.guidance_scale, "reasoning_steps": g.reasoning_steps}
        try:
            walls, last = [], None
            for _ in range(reps):
                self.meter.reset()
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats()
                self.sync()
                t0 = time.perf_counter()
                if runner == "toolkit":
                    last = self.editor.edit(self.frame, PROMPT, seed=0, gen=g)
                else:
                    plain_edit(self.editor.pipe, Image.fromarray(self.frame), self.editor.settings_for(
                        (self.frame.shape[1], self.frame.shape[0]), g), seed=0)
                self.sync()
                walls.append(time.perf_counter() - t0)
            wall = float(np.mean(walls))
            m = self.meter
            traj = (last.timings_ms["reasoning_decode_ms"] / 1000) if last else 0.0
            phases = {"text": m.seconds["text_encoder"], "image": m.seconds["image_encoder"],
                      "vae_encode": m.seconds["vae_encode"], "denoise": m.seconds["transformer"],
                      "decode": m.seconds["vae_decode"], "trajectory_decode": traj}
            phases["other"] = walls[-1] - sum(phases.values())
            row.update(wall_s=round(wall, 3), walls_s=[round(x, 3) for x in walls],
                       calls=dict(m.calls), transformer_tflop=round(m.flops / 1e12, 1),
                       achieved_tflops=round(m.flops / max(m.seconds["transformer"], 1e-9) / 1e12, 1),
                       share={k: round(v / walls[-1], 3) for k, v in phases.items()},
                       phase_s={k: round(v, 3) for k, v in phases.items()})
            if self.peak_tflops():
                row["mfu"] = round(row["achieved_tflops"] / self.peak_tflops(), 3)
            if self.cuda:
                row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        self.doc["cases"].append(row)
        print(json.dumps(row), flush=True)
        self.save()

    def forward_inputs(self, latent_frames: int, batch: int = 1) -> dict:
        """Seeded random inputs of one transformer forward at the edit's shape."""
        t = self.editor.pipe.transformer
        cfg, (w, h) = t.config, self.arch["size"]
        dev, dtype = self.args.device, t.dtype
        g = torch.Generator(device=dev).manual_seed(0)
        rand = lambda *shape: torch.randn(*shape, device=dev, dtype=dtype, generator=g)  # noqa: E731
        img_tokens = (self.arch["image_encoder"]["image_size"] // self.arch["image_encoder"]["patch_size"]) ** 2 + 1
        return {"hidden_states": rand(batch, cfg.in_channels, latent_frames, h // 8, w // 8),
                "timestep": torch.tensor([500.0], device=dev),
                "encoder_hidden_states": rand(batch, 512, cfg.text_dim),
                "encoder_hidden_states_image": rand(batch, img_tokens, cfg.image_dim)}

    @torch.no_grad()
    def forward_output(self, latent_frames: int):
        """One forward's output (float32) on the seeded inputs: what an attention backend's drift is measured on."""
        return self.editor.pipe.transformer(**self.forward_inputs(latent_frames), return_dict=False)[0].float()

    def frame_at(self, edited: np.ndarray) -> np.ndarray:
        """The source frame at an edit's size (the scores compare the two)."""
        return np.asarray(Image.fromarray(self.frame).resize((edited.shape[1], edited.shape[0]), Image.Resampling.BICUBIC))

    def forward_timing(self, label: str, latent_frames: int, reps: int, batch: int = 1):
        """One transformer forward at the edit's shape, timed alone (attention backends, compile,
        batch 2 = both CFG passes in one forward)."""
        if self.over_budget():
            self.doc["forwards"].append({"option": label, "skipped": "time budget"})
            return
        t = self.editor.pipe.transformer
        inputs = self.forward_inputs(latent_frames, batch)
        row = {"option": label, "latent_frames": latent_frames, "batch": batch,
               "tokens": int(np.prod(inputs["hidden_states"].shape[2:]) // 4)}
        try:
            t0 = time.perf_counter()
            with torch.no_grad():
                t(**inputs)
                self.sync()
                row["first_call_s"] = round(time.perf_counter() - t0, 2)
                self.meter.reset()
                for _ in range(reps):
                    t(**inputs)
            secs = self.meter.seconds["transformer"] / reps
            row.update(forward_s=round(secs, 4), tflops=round(self.meter.flops / reps / secs / 1e12, 1))
            if self.peak_tflops():
                row["mfu"] = round(row["tflops"] / self.peak_tflops(), 3)
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        self.doc["forwards"].append(row)
        print(json.dumps(row), flush=True)
        self.save()


def compiled_edits(b: Bench) -> int:
    """The Editor built with model.compile=true: the first edit of each shape compiles (timed as the
    warm-up), then whole edits; the uncompiled baseline ran before compile in the same process."""
    from chronoedit_sim.config import load_config
    from chronoedit_sim.engine.editor import Editor

    for option in ("uncompiled", "compiled"):
        if option == "compiled":  # the same components, through the toolkit's own option
            cfg = load_config([f"model.device={b.args.device}", "model.path=in-memory-random", "model.compile=true"])
            b.editor = Editor(cfg.model, pipeline=b.editor.pipe)
        for mode in ("none", "full"):
            b.case("distill8", mode, "toolkit", option=f"{option} warm-up")
            b.case("distill8", mode, "toolkit", reps=2 if mode == "none" else 1, option=option)
    b.doc["total_s"] = round(time.perf_counter() - b.t_start, 1)
    b.save()
    print_table(b.doc["cases"], ["preset", "mode", "option", "wall_s", "achieved_tflops", "mfu", "peak_gib"])
    return 0


def never_twice(b: Bench) -> int:
    """What the per-editor caches, batched samples and the offloaded text encoder save at true size:
    each case's seconds per edit cold (caches emptied: a new frame and prompt), with a known prompt
    on a new frame, and warm (the same frame and prompt, another seed); two samples in one call."""
    other = np.ascontiguousarray(b.frame[::-1])

    def timed(label, preset, mode, work, n_edits=1):
        if b.over_budget():
            b.doc["cases"].append({"preset": preset, "mode": mode, "option": label, "skipped": "time budget"})
            return
        b.meter.reset()
        if b.cuda:
            torch.cuda.reset_peak_memory_stats()
        b.sync()
        t0 = time.perf_counter()
        work(b.gen(preset, mode))
        b.sync()
        wall = time.perf_counter() - t0
        row = {"preset": preset, "mode": mode, "option": label, "edits": n_edits,
               "s_per_edit": round(wall / n_edits, 3), "calls": dict(b.meter.calls),
               "phase_s": {k: round(v, 3) for k, v in b.meter.seconds.items()}}
        if b.cuda:
            row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        b.doc["cases"].append(row)
        print(json.dumps(row), flush=True)
        b.save()

    ed = b.editor
    for preset, mode in (("distill8", "none"), ("distill8", "full"), ("base50", "none")):
        timed("warm-up", preset, mode, lambda g: ed.edit(b.frame, PROMPT, seed=0, gen=g))
        b.doc["cases"].pop()
        for _ in range(2 if preset == "distill8" else 1):
            timed("cold", preset, mode, lambda g: (ed.cond.clear(), ed.edit(b.frame, PROMPT, seed=1, gen=g)))
        timed("known prompt, new frame", preset, mode, lambda g: ed.edit(other, PROMPT, seed=1, gen=g))
        for _ in range(2 if preset == "distill8" else 1):
            timed("warm", preset, mode, lambda g: ed.edit(b.frame, PROMPT, seed=2, gen=g))
        if preset == "distill8":
            timed("2 samples in one call (warm)", preset, mode,
                  lambda g: ed.edit_samples(b.frame, PROMPT, seeds=[3, 4], gen=g), n_edits=2)
    if b.cuda:
        before = torch.cuda.memory_allocated()
        ed.offload_text_encoder([PROMPT, ""])
        torch.cuda.synchronize()
        b.doc["offload_text_encoder_freed_gib"] = round((before - torch.cuda.memory_allocated()) / 2**30, 2)
        timed("text encoder offloaded (warm)", "distill8", "full", lambda g: ed.edit(b.frame, PROMPT, seed=2, gen=g))
    b.doc["total_s"] = round(time.perf_counter() - b.t_start, 1)
    b.save()
    print_table(b.doc["cases"], ["preset", "mode", "option", "edits", "s_per_edit", "peak_gib"])
    print(f"wrote {b.args.json} (RANDOM weights: timings are the real cost, the pixels are noise)")
    return 0


def quantized(b: Bench) -> int:
    """model.quantize through the toolkit's Editor: for each kind a freshly built (random) bf16
    transformer, quantised by the editor, then whole edits and one timed forward."""
    import gc

    from chronoedit_sim.config import load_config
    from chronoedit_sim.engine.editor import Editor

    pipe = b.editor.pipe
    latent = (b.arch["num_frames"] - 1) // 4 + 1
    compiled = "true" if b.args.compile else "false"
    for kind in ("none", "fp8_dynamic") if b.args.compile else ("none", "fp8_weight_only", "fp8_dynamic"):
        if b.over_budget():
            b.doc["cases"].append({"option": kind, "skipped": "time budget"})
            continue
        try:
            if kind != "none":
                pipe.transformer = None
                b.editor = None
                gc.collect()
                if b.cuda:
                    torch.cuda.empty_cache()
                pipe.transformer = build_transformer(b.arch, b.args.device, torch.bfloat16 if b.cuda else torch.float32)
                pipe.transformer.forward = b.meter._wrap("transformer", pipe.transformer.forward)
            cfg = load_config([f"model.device={b.args.device}", "model.path=in-memory-random", f"model.quantize={kind}",
                               f"model.compile={compiled}"])
            t0 = time.perf_counter()
            b.editor = Editor(cfg.model, pipeline=pipe)
            b.sync()
            note = {"option": kind, "quantize_s": round(time.perf_counter() - t0, 2)}
            if b.cuda:
                note["allocated_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
            b.doc.setdefault("quantize", []).append(note)
            print(json.dumps(note), flush=True)
        except Exception as exc:  # noqa: BLE001 - the stack may not support a kind: record it
            b.doc["cases"].append({"option": kind, "error": f"{type(exc).__name__}: {exc}"[:500]})
            print(json.dumps(b.doc["cases"][-1]), flush=True)
            continue
        for mode in ("none", "full"):
            b.case("distill8", mode, "toolkit", option=f"{kind} warm-up")
            b.case("distill8", mode, "toolkit", reps=2 if mode == "none" else 1, option=kind)
        b.forward_timing(kind, latent, reps=3)
    b.doc["total_s"] = round(time.perf_counter() - b.t_start, 1)
    b.save()
    print_table(b.doc["cases"], ["preset", "mode", "option", "wall_s", "achieved_tflops", "mfu", "peak_gib", "error"])
    print_table(b.doc["forwards"], ["option", "latent_frames", "forward_s", "tflops", "mfu"])
    print(f"wrote {b.args.json} (RANDOM weights: timings are the real cost, the pixels are noise)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the main cases only")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="14b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=str(RESULTS / "gpu.json"))
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip the remaining cases after this long")
    ap.add_argument("--compile", action="store_true",
                    help="whole edits with model.compile=true (the first edit of each shape compiles) against the "
                         "same edits uncompiled, in one process; writes gpu_compile.json unless --json is given")
    ap.add_argument("--never-twice", action="store_true",
                    help="the caches, batched samples and the offloaded text encoder: cold, known-prompt and warm "
                         "edits; writes gpu_cache.json unless --json is given")
    ap.add_argument("--quantize", action="store_true",
                    help="model.quantize (torchao fp8, weights only and dynamic) against bf16, whole edits and one "
                         "forward; writes gpu_quantize.json unless --json is given")
    ap.add_argument("--speed", action="store_true",
                    help="the speed options (bench/gpu_speed.py: compile cache cold and warm, two editors per GPU, "
                         "sageattention, step caches at 50 steps, compiled and fp8 edits) against the targets; "
                         "writes gpu_speed.json unless --json is given")
    ap.add_argument("--sections", default=",".join(gpu_speed.SECTIONS), help="--speed: which sections, in order")
    ap.add_argument("--cache-dir", default="/tmp/chronoedit-bench/compile",
                    help="model.compile_cache_dir of --speed's editors (start empty for a cold first edit)")
    ap.add_argument("--probe", default="", help=argparse.SUPPRESS)  # --speed's child process
    ap.add_argument("--probe-edits", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--ready-file", default="", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true",
                    help="--arch small, one edit, on CUDA where there is one, else the CPU; writes no figures")
    args = ap.parse_args()
    args.sections = [s for s in args.sections.split(",") if s]
    if args.smoke:
        args.arch, args.device = "small", "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: the true-size benchmark runs only on a GPU (rehearse with --arch small --device cpu)")
        return 2
    b = Bench(args)
    if args.probe:
        b.setup()
        return gpu_speed.probe(b, args)
    if args.speed:
        if args.json == ap.get_default("json"):
            args.json = str(RESULTS / "gpu_speed.json")
        gpu_speed.before_setup(b, args, lambda: args.budget_s - (time.perf_counter() - b.t_start))
        b.setup()
        gpu_speed.after_setup(b, args)
        b.doc["targets"] = gpu_speed.summary(b)
        b.doc["total_s"] = round(time.perf_counter() - b.t_start, 1)
        b.save()
        for key, cols in (("cases", ["preset", "mode", "option", "wall_s", "achieved_tflops", "mfu", "peak_gib", "error"]),
                          ("forwards", ["option", "tokens", "forward_s", "tflops", "mfu"]),
                          ("step_cache", ["kind", "s_per_edit", "skipped_share", "max_px", "mean_px", "error"]),
                          ("targets", ["target", "goal_s", "measured_s", "met"])):
            if b.doc[key]:
                print_table(b.doc[key], cols)
        print(f"wrote {args.json} (RANDOM weights: timings are the real cost, the pixels are noise)")
        return 0
    if args.compile and args.json == ap.get_default("json"):
        args.json = str(RESULTS / "gpu_compile.json")
    if args.never_twice and args.json == ap.get_default("json"):
        args.json = str(RESULTS / "gpu_cache.json")
    if args.quantize and args.json == ap.get_default("json"):
        args.json = str(RESULTS / ("gpu_quantize_compile.json" if args.compile else "gpu_quantize.json"))
    b.setup()
    if args.smoke:
        b.case("distill8", "none", "toolkit")
        print_table(b.doc["cases"], ["preset", "mode", "runner", "wall_s", "error"])
        return 0
    if args.quantize:  # with --compile: bf16 and fp8_dynamic, both compiled
        return quantized(b)
    if args.compile:
        return compiled_edits(b)
    if args.never_twice:
        return never_twice(b)
    latent = (b.arch["num_frames"] - 1) // 4 + 1
    # warm-ups: the first call of each shape pays for allocation and kernel selection
    b.case("distill8", "none", "toolkit", option="warm-up")
    b.case("distill8", "full", "toolkit", option="warm-up")
    b.doc["cases"] = []
    b.case("distill8", "none", "toolkit", reps=2)
    b.case("distill8", "none", "plain", reps=2)
    b.case("distill8", "full", "toolkit")
    b.case("distill8", "full", "plain")
    b.case("distill8", "partial", "toolkit")
    b.case("base50", "none", "toolkit")
    b.case("base50", "none", "plain")
    b.forward_timing("cfg_batched", 2, reps=3, batch=2)
    for backend in ("native", "_native_cudnn", "_native_flash", "_native_efficient"):
        b.editor.pipe.transformer.set_attention_backend(backend)
        for frames in (2, latent):
            b.forward_timing(f"attention={backend}", frames, reps=3)
    # reset_attention_backend() leaves diffusers' global active backend set (0.42.1): set native again
    b.editor.pipe.transformer.set_attention_backend("native")
    # diffusers 0.42.1's first-block cache, MagCache and TaylorSeer refuse ChronoEdit: its block class
    # (transformer_chronoedit.WanTransformerBlock) is not in their registry, and the pipeline calls the
    # transformer without the cache_context they need to keep CFG's two passes apart (seen on CPU)
    b.doc["notes"].append("enable_cache (first-block cache, MagCache, TaylorSeer) does not apply to "
                          "ChronoEditPipeline in diffusers 0.42.1: block class not registered, no cache_context")
    if not args.quick:
        b.case("base50", "partial", "toolkit")
        b.case("base50", "full", "toolkit")
        if b.cuda:
            b.editor.pipe.transformer.compile_repeated_blocks(fullgraph=True)
            b.forward_timing("compile_repeated_blocks", 2, reps=3)
    b.doc["total_s"] = round(time.perf_counter() - b.t_start, 1)
    b.save()
    rows = [dict(c, **{f"{k}_share": v for k, v in c.get("share", {}).items()}) for c in b.doc["cases"]]
    print_table(rows, ["preset", "mode", "runner", "option", "wall_s", "achieved_tflops", "mfu", "peak_gib",
                       "denoise_share", "vae_encode_share", "decode_share", "trajectory_decode_share", "other_share"])
    print_table(b.doc["forwards"], ["option", "latent_frames", "batch", "forward_s", "tflops", "mfu", "first_call_s"])
    print(f"wrote {args.json} (RANDOM weights: timings are the real cost, the pixels are noise)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
