"""The layered config loader.

Layers, lowest first: configs/default.yaml < configs/model/<preset>.yaml < user
files (--config) < scenario < scenario edit < command-line dotlist. Every layer
is merged into the structured schema one at a time, so an unknown key, a wrong
type or a missing value fails with the key *and the layer it came from*, before
any model is loaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError
from .schema import BACKENDS, DTYPES, IMAGE_FORMATS, QUANTIZE, INPUT_TYPES, SCORES, STEP_CACHES, TRAJECTORY_STORAGE, X264_PRESETS, Config, ModelConfig


class ConfigError(UserError):
    """A configuration or scenario problem, reported before any model loads."""


def configs_dir() -> Path:
    """The shipped configs/ folder (override with CHRONOEDIT_SIM_CONFIGS)."""
    env = os.environ.get("CHRONOEDIT_SIM_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs"


def _read_yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except Exception as exc:  # yaml scanner/parser errors
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None  # one line
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _preset_path(name: str) -> Path:
    if name.endswith((".yaml", ".yml")):
        return Path(name)
    path = configs_dir() / "model" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (configs_dir() / "model").glob("*.yaml"))
        raise ConfigError(f"model={name}: unknown model preset (known: {', '.join(known)})")
    return path


def _dotlist(overrides: list[str]) -> tuple[Optional[str], dict]:
    """Split `model=<preset>` from the dotlist and parse the rest into a nested dict."""
    preset, rest = None, []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: override {item!r} is not key=value")
        key, value = item.split("=", 1)
        if key == "model":
            preset = value
        else:
            rest.append(item)
    try:
        data = OmegaConf.to_container(OmegaConf.from_dotlist(rest), resolve=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"command line: {exc}") from None
    return preset, data


def _merge(base: DictConfig, data: dict, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, data)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{source}: {key}: {msg}") from None


# ChronoEdit editor keys and the values that leave them off (engine/editor.py reads them; other backends do not)
CHRONOEDIT_ONLY = (("model.loras", ([],)), ("model.transformer_path", (None,)), ("model.quantize", ("none",)),
                   ("model.compile", (None, False)), ("model.step_cache", ("none",)),
                   ("model.attention_backend", (None,)), ("model.offload_text_encoder", (False,)),
                   ("upscale.enabled", (False,)))


def _check_values(cfg: DictConfig, source_of) -> None:
    """Checks the type system cannot express; each names the key and its layer."""

    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{source_of(key)}: {key}: {msg}")

    if OmegaConf.is_missing(cfg.model, "path"):
        raise bad("model.path", "missing required value (set it in the model preset or as model.path=...)")
    for i, lora in enumerate(cfg.model.loras):
        if OmegaConf.is_missing(lora, "path"):
            raise bad(f"model.loras.{i}.path", "missing required value")
    for key, allowed in (
        ("trajectory.image_format", IMAGE_FORMATS),
        ("trajectory.edited_format", IMAGE_FORMATS),
        ("model.dtype", DTYPES),
        ("vlm.dtype", DTYPES),
        ("model.quantize", QUANTIZE),
        ("output.source_format", IMAGE_FORMATS),
        ("input.type", INPUT_TYPES),
        ("trajectory.storage", TRAJECTORY_STORAGE),
        ("model.step_cache", STEP_CACHES),
        ("model.backend", BACKENDS),
    ):
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise bad(key, f"{value!r} is not one of {', '.join(allowed)}")
    backend = cfg.model.attention_backend
    if backend is not None:
        # imported only when set: diffusers takes seconds to import
        from diffusers.models.attention_dispatch import AttentionBackendName

        known = sorted([b.value for b in AttentionBackendName] + ["sageattention"])
        if backend not in known:
            raise bad("model.attention_backend", f"{backend!r} is not one of diffusers' backends: {', '.join(known)}")
    _check_ranges(cfg, bad)
    gen = cfg.generation
    if cfg.model.step_cache != "none" and gen.temporal_reasoning and gen.reasoning_steps < gen.num_inference_steps:
        # the partial-reasoning cut changes the latents' shape mid-run: no cached residual fits after it
        raise bad("model.step_cache", f"{cfg.model.step_cache} cannot run with partial temporal reasoning "
                  f"(generation.reasoning_steps={gen.reasoning_steps} < num_inference_steps={gen.num_inference_steps})")
    threshold = cfg.model.step_cache_threshold
    if threshold is not None and not threshold > 0:
        raise bad("model.step_cache_threshold", f"{threshold} must be > 0")
    if threshold is not None and cfg.model.step_cache not in ("first_block", "magcache"):
        raise bad("model.step_cache_threshold", f"applies to step_cache first_block or magcache, not {cfg.model.step_cache}")
    if gen.num_inference_steps < 1:
        raise bad("generation.num_inference_steps", "must be >= 1")
    if gen.reasoning_steps < 0:
        raise bad("generation.reasoning_steps", "must be >= 0")
    if (gen.num_frames - 1) % 4 != 0 or gen.num_frames < 5:
        raise bad("generation.num_frames", f"{gen.num_frames} must be 1 + 4k with k >= 1 (the VAE's 4x time compression)")
    if (gen.height is None) != (gen.width is None):
        raise bad("generation.height" if gen.width is None else "generation.width", "height and width must be set together")
    for key in ("height", "width"):
        value = gen[key]
        if value is not None and (value < 16 or value % 16):
            raise bad(f"generation.{key}", f"{value} must be a positive multiple of 16")
    if gen.max_area < 256:
        raise bad("generation.max_area", "must be at least 256 (16x16)")
    for key in ("input.stride", "input.read_batch_size", "runtime.batch_size", "output.shard_max_rows", "output.row_group_rows",
                "scoring.clip.batch_size", "scoring.num_actors", "encode.batch_size", "report.page_size",
                "model.cache_prompts", "model.cache_frames", "vlm.num_actors", "vlm.max_side", "enhance.max_new_tokens",
                "enhance.batch_size"):
        if OmegaConf.select(cfg, key) < 1:
            raise bad(key, "must be >= 1")
    for key in ("generation.denoise_preview_every", "trajectory.max_side", "input.max_frames", "runtime.num_actors",
                "runtime.queue_per_actor", "encode.num_actors", "scoring.flow_max_side", "report.thumbnail_side"):
        if OmegaConf.select(cfg, key) < 0:
            raise bad(key, "must be >= 0")
    if cfg.input.video_cache_gb <= 0:
        raise bad("input.video_cache_gb", "must be > 0")
    for score in SCORES:
        low, high = cfg.filter[f"{score}_min"], cfg.filter[f"{score}_max"]
        if low is not None and high is not None and low > high:
            raise bad(f"filter.{score}_min", f"{low} is above filter.{score}_max {high}")
    if not 1 <= cfg.trajectory.quality <= 100:
        raise bad("trajectory.quality", "must be within 1..100")
    if cfg.trajectory.video_preset not in X264_PRESETS:
        raise bad("trajectory.video_preset", f"{cfg.trajectory.video_preset!r} is not one of {', '.join(X264_PRESETS)}")
    if not 0 <= cfg.trajectory.video_crf <= 51:
        raise bad("trajectory.video_crf", "must be within 0..51 (x264's range)")
    up = cfg.upscale
    if up.enabled and not up.to_source_size and up.max_area < 256:
        raise bad("upscale.max_area", "set the upscaled size (at least 256 pixels) or upscale.to_source_size=true")
    if up.num_inference_steps is not None and up.num_inference_steps < 1:
        raise bad("upscale.num_inference_steps", "must be >= 1")
    if cfg.model.backend not in ("chronoedit", "corruption"):
        # the other diffusers editors load none of these: set, they would be ignored without a word
        for key, unset in CHRONOEDIT_ONLY:
            if OmegaConf.select(cfg, key) not in unset:
                raise bad(key, f"applies to ChronoEdit only, not to model.backend={cfg.model.backend}")
    if cfg.enhance.enabled and cfg.model.offload_text_encoder:
        # the editor encodes every text before it lets its text encoder go; enhanced texts exist only later
        raise bad("enhance.enabled", "needs the editor's text encoder: model.offload_text_encoder encodes every "
                  "prompt at plan time, and the enhancer writes its prompts during the run")


def _nan_key(node, prefix: str = "") -> str | None:
    """The first key holding NaN: every comparison with it is false, so a NaN bound or weight passes
    whatever check reads it and changes nothing silently."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, float) and math.isnan(value):
            return f"{prefix}{key}"
        found = _nan_key(value, f"{prefix}{key}.")
        if found:
            return found
    return None


def _check_ranges(cfg: DictConfig, bad) -> None:
    nan = _nan_key(OmegaConf.to_container(cfg, resolve=False))
    if nan:
        raise bad(nan, "nan is not a number this key can take")
    if not math.isfinite(cfg.generation.guidance_scale) or cfg.generation.guidance_scale < 0:
        raise bad("generation.guidance_scale", f"{cfg.generation.guidance_scale} must be a finite number >= 0")
    if not 0 <= cfg.runtime.max_failed_fraction <= 1:
        raise bad("runtime.max_failed_fraction", f"{cfg.runtime.max_failed_fraction} must be within 0..1")
    for key in ("input.max_pixels", "input.min_side"):
        if OmegaConf.select(cfg, key) < 1:
            raise bad(key, "must be >= 1")


def _has_path(data, parts: list[str]) -> bool:
    for part in parts:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False
    return True


class ConfigLoader:
    """Holds the base layers and the command line; builds configs with extra layers in between."""

    def __init__(self, overrides: list[str] = (), config_files: list[str] = (), layers: list[tuple[str, dict]] = ()):
        """`layers` sit with the --config files, above the preset (e.g. a dataset's recorded config)."""
        preset, self._cli = _dotlist(list(overrides))
        default_path = configs_dir() / "default.yaml"
        default = _read_yaml(default_path)
        preset = preset or (default.get("model") or {}).get("preset") or ModelConfig.preset
        preset_path = _preset_path(preset)
        self._base: list[tuple[str, dict]] = [(str(default_path), default), (str(preset_path), _read_yaml(preset_path))]
        self._base += [*layers, *((str(f), _read_yaml(Path(f))) for f in config_files)]

    def build(self, layers: list[tuple[str, dict]] = ()) -> Config:
        return OmegaConf.to_object(self.build_dict(layers))

    def build_dict(self, layers: list[tuple[str, dict]] = ()) -> DictConfig:
        cfg = OmegaConf.structured(Config)
        sources: list[tuple[str, dict]] = [*self._base, *layers, ("command line", self._cli)]
        for name, data in sources:
            cfg = _merge(cfg, data, name)

        def source_of(key: str) -> str:
            # the last layer that set the key, or else its nearest parent (a list entry, a section)
            parts = key.split(".")
            for depth in range(len(parts), 0, -1):
                for name, data in reversed(sources):
                    if _has_path(data, parts[:depth]):
                        return name
            return sources[0][0]

        try:
            OmegaConf.resolve(cfg)
        except OmegaConfBaseException as exc:  # e.g. an unresolvable ${...} interpolation
            key = getattr(exc, "full_key", None) or "?"
            raise ConfigError(f"{source_of(key)}: {key}: {str(exc).splitlines()[0]}") from None
        _check_values(cfg, source_of)
        return cfg


def load_config(overrides: list[str] = (), layers: list[tuple[str, dict]] = (), config_files: list[str] = ()) -> Config:
    """The effective config for the given command-line dotlist and extra layers."""
    return ConfigLoader(overrides, config_files).build(layers)


def to_yaml(cfg: Config | DictConfig) -> str:
    """The effective config as plain YAML (written into manifests)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg)


def to_dict(cfg: Config) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg))
