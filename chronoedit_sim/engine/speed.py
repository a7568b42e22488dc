"""The editor's speed options beyond dtype and fp8 (quantize.py): torch.compile with a compile cache
shared on the node, 8-bit attention (SageAttention) and step caches (diffusers' first-block cache,
TaylorSeer, MagCache) on ChronoEdit's transformer.

`check` runs before any weights load, so an option that cannot work here (no CUDA, a GPU too old,
a missing package or calibration file) stops the actor with one line instead of minutes into a
14B load. The figures that justify each option are in docs/PERFORMANCE.md (bench/gpu.py).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import UserError

log = logging.getLogger(__name__)

# model.attention_backend: SageAttention 1 (INT8 QK^T, FP16 PV, Triton kernels; Zhang et al., "SageAttention:
# Accurate 8-Bit Attention for Plug-and-play Inference Acceleration", ICLR 2025), sageattention 1.0.6 from PyPI
SAGE = "sageattention"


class SpeedOptionError(UserError):
    """A speed option asked for what this machine or this run cannot do."""


def compile_enabled(setting: bool | None, device: str) -> bool:
    """model.compile: null means where it pays, a CUDA device (a CPU gains nothing for a long compile)."""
    return device.startswith("cuda") if setting is None else bool(setting)


def check(model, device: str) -> None:
    """Every speed option of `model` (ModelConfig) against this device, before weights load (the
    options' combinations with the generation settings are checked with the config)."""
    if model.attention_backend == SAGE:
        try:
            import sageattention  # noqa: F401
        except ImportError:
            raise SpeedOptionError("model.attention_backend=sageattention needs the sageattention package "
                                   "(pip install sageattention==1.0.6; Triton kernels, CUDA only)") from None
        if not device.startswith("cuda"):
            raise SpeedOptionError(f"model.attention_backend=sageattention needs a CUDA GPU; the model runs on {device}")
        import torch

        capability = torch.cuda.get_device_capability(torch.device(device))
        if capability < (8, 0):
            raise SpeedOptionError("model.attention_backend=sageattention needs compute capability 8.0 or later "
                                   f"(Ampere, Ada, Hopper); this GPU has {capability}")
    if model.step_cache == "magcache":
        calibration(model.step_cache_calibration)


# ----- compile cache -------------------------------------------------------------------------------


def use_compile_cache(cache_dir: str | None) -> Path | None:
    """Point inductor's caches (FX graph and AOT autograd caches, Triton kernels) at `cache_dir`,
    shared by every actor and run on the node: a shape compiled once is loaded, not compiled, by the
    next process. Inductor keys its entries by torch version, device and graph, so a software or
    hardware change misses instead of loading a wrong kernel. Entries are written to a temporary name
    and renamed, so concurrent actors are safe. Also loads the portable mega-cache file (see
    save_mega_cache) a user may have copied from another node."""
    if cache_dir is None:
        return None
    import torch

    root = Path(cache_dir).expanduser()
    (root / "mega").mkdir(parents=True, exist_ok=True)
    # set for this process (the actor), which compiles; inductor reads them when it first compiles
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    mega = mega_cache_file(root)
    if mega.exists():
        torch.compiler.load_cache_artifacts(mega.read_bytes())
    return root


def mega_cache_file(root: Path) -> Path:
    """One portable file of compiled artefacts per software version and GPU kind (torch's mega-cache)."""
    import torch

    gpu = torch.cuda.get_device_name(0).replace(" ", "-") if torch.cuda.is_available() else "cpu"
    return root / "mega" / f"torch-{torch.__version__}-{gpu}.bin"


def save_mega_cache(root: Path) -> None:
    """Everything this process compiled so far, as one file (written to a temporary name, then renamed)."""
    import torch

    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return
    target = mega_cache_file(root)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(saved[0])
    os.replace(tmp, target)


# ----- 8-bit attention -----------------------------------------------------------------------------


def use_sage_attention(transformer) -> None:
    """SageAttention 1 on every attention of `transformer`, through diffusers' dispatcher.

    diffusers 0.42 accepts only sageattention >= 2.1.1, which is not on PyPI (it is built from source
    with CUDA); 1.0.6, which is, provides the same INT8-QK / FP16-PV Triton kernel under its plain
    `sageattn`. We install it as the dispatcher's `_sage_qk_int8_pv_fp16_triton` backend, wrapped in a
    custom op so that torch.compile (fullgraph) treats the Triton launch as one opaque call."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    name = AttentionBackendName._SAGE_QK_INT8_PV_FP16_TRITON
    _register_sage_op()
    _AttentionBackendRegistry._backends[name] = _sage_attention
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            processor._attention_backend = name


_SAGE_OP = None


def _register_sage_op():
    global _SAGE_OP
    if _SAGE_OP is not None:
        return
    import torch

    # the schema spelled out: this module's postponed annotations are strings, which torch cannot infer from
    @torch.library.custom_op("chronoedit_sim::sageattn", mutates_args=(),
                             schema="(Tensor query, Tensor key, Tensor value, bool is_causal, float? scale) -> Tensor")
    def sageattn(query, key, value, is_causal, scale):
        from sageattention import sageattn as kernel

        return kernel(query, key, value, tensor_layout="NHD", is_causal=is_causal, sm_scale=scale)

    @sageattn.register_fake
    def _(query, key, value, is_causal, scale):
        return torch.empty_like(query)

    _SAGE_OP = sageattn


def _sage_attention(query, key, value, attn_mask=None, is_causal: bool = False, scale: float | None = None,
                    return_lse: bool = False, _parallel_config=None):
    # the same arguments as diffusers' own sage backends (the dispatcher passes only the names it finds here)
    if attn_mask is not None or return_lse:
        raise ValueError("sageattention 1 takes no attention mask and returns no log-sum-exp")
    return _SAGE_OP(query, key, value, is_causal, scale)


# ----- step caches ---------------------------------------------------------------------------------


def calibration(path: str | None) -> dict:
    """The MagCache calibration file (`chronoedit-sim calibrate-cache`), checked."""
    if not path:
        raise SpeedOptionError("model.step_cache=magcache needs model.step_cache_calibration: the JSON that "
                               "`chronoedit-sim calibrate-cache` writes (MagCache's ratios are checkpoint-dependent)")
    try:
        doc = json.loads(Path(path).expanduser().read_text())
        ratios = [float(r) for r in doc["ratios"]]
        steps = int(doc["num_inference_steps"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpeedOptionError(f"model.step_cache_calibration: {path}: not a calibration file "
                               f"({type(exc).__name__}: {exc})") from None
    if len(ratios) != steps or not ratios:
        raise SpeedOptionError(f"model.step_cache_calibration: {path}: {len(ratios)} ratios for {steps} steps")
    return doc


def _register_chronoedit_block() -> None:
    """diffusers' caches find a model's blocks through a registry that lists Wan's block class but not
    ChronoEdit's copy of it (same signature and outputs), so first-block cache and MagCache refuse it."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
    from diffusers.models.transformers.transformer_chronoedit import WanTransformerBlock

    TransformerBlockRegistry.register(
        model_class=WanTransformerBlock,
        metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None))


def cache_config(kind: str, threshold: float | None, num_inference_steps: int, calibration_path: str | None,
                 calibrate: bool = False):
    """diffusers' config for a step cache kind (None for "none")."""
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if kind == "first_block":
        return FirstBlockCacheConfig(**({} if threshold is None else {"threshold": threshold}))
    if kind == "taylorseer":
        # diffusers' default patterns ("^blocks.*attn", matched whole) match none of Wan's attn1 / attn2 /
        # ffn names, so nothing would be cached: name the sublayers whose outputs TaylorSeer extrapolates
        return TaylorSeerCacheConfig(cache_identifiers=[r"blocks\.\d+\.(attn1|attn2|ffn)"])
    if kind == "magcache":
        extra = {} if threshold is None else {"threshold": threshold}
        if calibrate:
            # one step more than the run: MagCache resets (and forgets) its ratios at its last step
            return MagCacheConfig(calibrate=True, num_inference_steps=num_inference_steps + 1, **extra)
        return MagCacheConfig(mag_ratios=calibration(calibration_path)["ratios"],
                              num_inference_steps=num_inference_steps, **extra)
    return None


class StepCache:
    """A step cache on the transformer for one edit's settings, and the cache context it needs.

    ChronoEditPipeline calls the transformer without diffusers' `cache_context`, which the hooks use
    to keep classifier-free guidance's two passes apart. Its loop calls the conditional pass first and
    the unconditional one second at every step, so a pre-forward hook names each call by its place
    (no copy of the pipeline loop). The hooks' state is reset at the end of every pipeline call."""

    def __init__(self, transformer, kind: str, threshold: float | None, calibration_path: str | None,
                 calibrate: bool = False):
        self.transformer, self.kind, self.calibrate = transformer, kind, calibrate
        self.threshold, self.calibration_path = threshold, calibration_path
        self.applied: int | None = None  # the step count of the config on the transformer
        self.calls = 0
        self.per_step = 1
        self.ratios: list[float] = []  # calibration: the conditional pass's ratios of the last edit
        _register_chronoedit_block()
        self.attach()

    def attach(self) -> None:
        self._handles = [self.transformer.register_forward_pre_hook(self._enter),
                         self.transformer.register_forward_hook(self._leave)]

    def close(self) -> None:
        """Take the cache off the transformer (attach() puts it back; the config is applied again)."""
        for handle in self._handles:
            handle.remove()
        if self.applied is not None:
            self.transformer.disable_cache()
        self.applied = None

    def prepare(self, num_inference_steps: int, guidance: bool) -> None:
        """Before a pipeline call: (re)apply the config for its step count; reset the pass counter."""
        if self.applied != num_inference_steps:
            if self.applied is not None:
                self.transformer.disable_cache()
            self.transformer.enable_cache(cache_config(self.kind, self.threshold, num_inference_steps,
                                                       self.calibration_path, self.calibrate))
            self.applied = num_inference_steps
        self.calls, self.per_step, self.ratios = 0, 2 if guidance else 1, []

    def _enter(self, module, args):
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        name = ("cond", "uncond")[self.calls % self.per_step]
        _set_cache_context(module, CacheContext(name, step_index=self.calls // self.per_step))

    def _leave(self, module, args, output):
        from diffusers.hooks.hooks import _set_cache_context

        if self.calibrate and self.calls % self.per_step == 0:
            self.ratios = list(self._head_state("cond").calibration_ratios)
        self.calls += 1
        _set_cache_context(module, None)

    def _head_state(self, context: str):
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.mag_cache import _MAG_CACHE_LEADER_BLOCK_HOOK

        block = self.transformer.blocks[0]
        manager = HookRegistry.check_if_exists_or_initialize(block).get_hook(_MAG_CACHE_LEADER_BLOCK_HOOK).state_manager
        return manager._state_cache[context]


def calibrate_magcache(editor, jobs, gen) -> dict:
    """MagCache's per-step ratios, averaged over `jobs` ((frame, prompt, seed) triples, a sample of the
    run's own scenarios and frames), as the calibration file model.step_cache_calibration reads.
    Nothing is skipped while calibrating; each edit records the conditional pass's residual ratios."""
    import numpy as np

    if not jobs:
        raise SpeedOptionError("calibrate-cache: no jobs to calibrate on")
    previous = editor.step_cache
    if previous is not None:
        previous.close()  # the run's own cache stays off while calibrating, and comes back after
    cache = editor.step_cache = StepCache(editor.pipe.transformer, "magcache", None, None, calibrate=True)
    rows = []
    try:
        for frame, prompt, seed in jobs:
            editor.edit(frame, prompt, seed=seed, gen=gen)
            rows.append(cache.ratios)
    finally:
        cache.close()
        editor.step_cache = previous
        if previous is not None:
            previous.attach()
    ratios = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
    return {"num_inference_steps": gen.num_inference_steps, "guidance_scale": gen.guidance_scale,
            "model_id": editor.identity.model_id, "model_hash": editor.identity.model_hash,
            "random_weights": editor.identity.random_weights, "edits": len(rows),
            "ratios": [round(float(r), 6) for r in ratios]}
