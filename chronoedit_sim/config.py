"""The one config schema (dataclasses) and the layered loader.

Layers, lowest first: configs/default.yaml < configs/model/<preset>.yaml < user
files (--config) < scenario < scenario edit < command-line dotlist. Every layer
is merged into the structured schema one at a time, so an unknown key, a wrong
type or a missing value fails with the key *and the layer it came from*, before
any model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

IMAGE_FORMATS = ("png", "webp", "jpeg")
INPUT_TYPES = ("auto", "images", "video", "parquet", "lerobot", "kitti", "nuscenes")
DTYPES = ("bfloat16", "float16", "float32")
SCORES = (
    "clip_text",
    "clip_text_source",
    "clip_image",
    "clip_direction",
    "trajectory_min_adjacent",
    "trajectory_monotonic",
    "ssim",
    "psnr",
    "flow_warp_error",
)


class ConfigError(ValueError):
    """A configuration or scenario problem, reported before any model loads."""


@dataclass
class LoraConfig:
    # LoRA safetensors file: absolute, or relative to the model root
    # (e.g. lora/chronoedit_distill_lora.safetensors inside the downloaded repo)
    path: str = MISSING
    # adapter strength passed to set_adapters
    scale: float = 1.0
    # adapter name; empty means the file stem
    name: str = ""


@dataclass
class ModelConfig:
    # preset that filled this section (configs/model/<preset>.yaml); recorded in results
    preset: str = "chronoedit-14b"
    # local diffusers-layout directory, or a Hugging Face repo id resolved from the local cache
    path: str = MISSING
    # hub revision (branch, tag or commit) when path is a repo id
    revision: Optional[str] = None
    # let a repo id that is not cached be downloaded; off so runs never touch the network
    allow_download: bool = False
    # LoRAs stacked on the transformer, in order (the distill preset wires its own)
    loras: List[LoraConfig] = field(default_factory=list)
    # "auto" picks cuda when visible, else cpu; never a silent fallback for an explicit "cuda"
    device: str = "auto"
    # transformer and text-encoder dtype on GPU (VAE and image encoder stay fp32; CPU runs all fp32)
    dtype: str = "bfloat16"
    # diffusers' enable_model_cpu_offload: less VRAM, slower
    cpu_offload: bool = False


@dataclass
class GenerationConfig:
    # denoising steps (reference: 50; distill LoRA: 8)
    num_inference_steps: int = 50
    # classifier-free guidance; <= 1 turns CFG off and halves transformer passes
    guidance_scale: float = 5.0
    # flow-matching shift of the UniPC scheduler
    flow_shift: float = 5.0
    # generate the in-between "reasoning" frames of the edit
    temporal_reasoning: bool = False
    # denoising steps run over the whole reasoning video before it is cut to [input, edit];
    # >= num_inference_steps keeps the whole video to the end ("full reasoning")
    reasoning_steps: int = 10
    # video length with reasoning (real model: 29 = 8 latent frames); forced to 5 without
    num_frames: int = 29
    # pixel area the frame is fitted into, aspect kept, sides rounded to 16
    max_area: int = 480 * 832
    # explicit output height; set together with width to bypass max_area
    height: Optional[int] = None
    # explicit output width; set together with height to bypass max_area
    width: Optional[int] = None
    # record the edited frame's clean (x0) estimate every N steps; 0 = off
    denoise_preview_every: int = 0


@dataclass
class TrajectoryConfig:
    # storage format of reasoning and preview frames: png | webp | jpeg
    image_format: str = "webp"
    # quality for webp/jpeg (ignored by png)
    quality: int = 90
    # longest side of stored reasoning frames in px; 0 keeps the generated size
    max_side: int = 0
    # storage format of the edited frame; png keeps it lossless
    edited_format: str = "png"


@dataclass
class FilterConfig:
    # keep rows that fail a bound (keep=false) instead of dropping them
    write_rejected: bool = True
    # lower/upper bounds on each score; null = inactive
    clip_text_min: Optional[float] = 0.2
    clip_text_max: Optional[float] = None
    clip_text_source_min: Optional[float] = None
    clip_text_source_max: Optional[float] = None
    clip_image_min: Optional[float] = 0.7
    clip_image_max: Optional[float] = None
    clip_direction_min: Optional[float] = 0.2
    clip_direction_max: Optional[float] = None
    trajectory_min_adjacent_min: Optional[float] = None
    trajectory_min_adjacent_max: Optional[float] = None
    trajectory_monotonic_min: Optional[float] = None
    trajectory_monotonic_max: Optional[float] = None
    ssim_min: Optional[float] = None
    ssim_max: Optional[float] = None
    psnr_min: Optional[float] = None
    psnr_max: Optional[float] = None
    flow_warp_error_min: Optional[float] = None
    flow_warp_error_max: Optional[float] = None


@dataclass
class InputConfig:
    # image folder (recursive) or video file; the run's --input sets it
    path: str = ""
    # auto | images | video | parquet | lerobot | kitti | nuscenes ("auto" looks at the path)
    type: str = "auto"
    # keep every Nth frame (of a video, an episode, a sorted folder or a Parquet file)
    stride: int = 1
    # stop after this many frames; 0 = all
    max_frames: int = 0
    # images: only relative paths matching one of these globs (empty = all), e.g. ["cam_front/**"]
    include: List[str] = field(default_factory=list)
    # images: drop relative paths matching any of these globs
    exclude: List[str] = field(default_factory=list)
    # video: skip frames before this time (seconds)
    start_s: float = 0.0
    # video: stop at this time (seconds); null = the end
    end_s: Optional[float] = None
    # parquet: the image column (a Hugging Face Image struct {bytes, path} or raw bytes)
    image_column: str = "image"
    # parquet: a column whose value identifies the row (source_id); empty = the row index
    id_column: str = ""
    # parquet: a caption column; its text becomes the job's source_caption
    caption_column: str = ""
    # lerobot: camera video keys (e.g. observation.images.top); nuscenes: CAM_* names; kitti:
    # image_2 / image_3 / image_02 ...; empty = every camera
    cameras: List[str] = field(default_factory=list)
    # lerobot: episode indices to read; empty = all
    episodes: List[int] = field(default_factory=list)
    # use a caption the input provides (caption column, LeRobot task text) as source_caption
    use_input_captions: bool = True
    # frames per read task: neighbours share a video decode or a Parquet row group
    read_batch_size: int = 8
    # decompression-bomb guard, checked from the image header before decoding
    max_pixels: int = 50_000_000
    # frames smaller than this on their short side are error rows, not model inputs
    min_side: int = 16


@dataclass
class RuntimeConfig:
    # Ray cluster to join ("auto", "ray://host:port", "host:port"); empty starts a private local instance
    address: str = ""
    # edit actors (one loaded model each); 0 = one per GPU in the cluster, 1 without GPUs
    num_actors: int = 0
    # GPUs per edit actor; null = 1 when CUDA is visible, else 0 (fractions share a GPU)
    gpus_per_actor: Optional[float] = None
    # CPUs per edit actor: keep below the node's count so Ray Data's read/write tasks always get a core
    cpus_per_actor: float = 1.0
    # times Ray restarts a dead actor and retries its work before the job becomes an error row
    max_restarts: int = 3
    # the run exits non-zero when more than this fraction of written jobs failed
    max_failed_fraction: float = 0.1
    # jobs handed to an actor at once (ChronoEdit edits one frame per call)
    batch_size: int = 1
    # fault injection for tests: the edit actor kills its process on its Nth job, once (0 = off)
    fault_kill_at_job: int = 0
    # fault injection for tests: the edit actor kills its process on every job of this source_id
    fault_kill_source: str = ""


@dataclass
class OutputConfig:
    # rows per Parquet shard before it is closed and made visible
    shard_max_rows: int = 512
    # approximate bytes per shard before it is closed (image data dominates)
    shard_max_bytes: int = 256 * 1024 * 1024
    # rows per row group: small, since one row carries dozens of images
    row_group_rows: int = 32
    # Parquet compression codec (images are already compressed; zstd still shrinks the rest)
    compression: str = "zstd"
    # storage format of the source frame in each row
    source_format: str = "png"


@dataclass
class ClipConfig:
    # compute the CLIP scores; off leaves only the weight-free ones (ssim, psnr, flow_warp_error)
    enabled: bool = True
    # open_clip architecture (ViT-L-14, ViT-B-32, ...) or "local-dir:PATH" (open_clip_config.json + weights)
    model: str = "ViT-L-14"
    # weights: a local file, or an open_clip pretrained tag resolved from the local cache (ignored for local-dir:)
    pretrained: str = "openai"
    # let a pretrained tag that is not cached be downloaded; off so runs never touch the network
    allow_download: bool = False
    # "auto" picks cuda when visible, else cpu
    device: str = "auto"
    # images per CLIP forward pass
    batch_size: int = 32


@dataclass
class ScoringConfig:
    # which CLIP scores the edits
    clip: ClipConfig = field(default_factory=ClipConfig)
    # GPUs per score actor; null = 0.25 when the cluster has GPUs (it shares a GPU with an editor), else 0
    gpus_per_actor: Optional[float] = None
    # CPUs per score actor
    cpus_per_actor: float = 0.5
    # score actors in the pool
    num_actors: int = 1


@dataclass
class Config:
    # run seed; every job's seed and variable choices derive from it and the job identity
    seed: int = 0
    # which weights, LoRAs and devices
    model: ModelConfig = field(default_factory=ModelConfig)
    # sampling settings (scenarios and edits may override)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    # how frames are encoded for storage
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    # keep/reject thresholds (scenarios and edits may override)
    filter: FilterConfig = field(default_factory=FilterConfig)
    # where frames come from
    input: InputConfig = field(default_factory=InputConfig)
    # Ray resources and failure handling
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # dataset shard layout
    output: OutputConfig = field(default_factory=OutputConfig)
    # consistency scoring (CLIP and weight-free metrics)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


def configs_dir() -> Path:
    """The shipped configs/ folder (override with CHRONOEDIT_SIM_CONFIGS)."""
    env = os.environ.get("CHRONOEDIT_SIM_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def _read_yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except Exception as exc:  # yaml scanner/parser errors
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
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
        ("output.source_format", IMAGE_FORMATS),
        ("input.type", INPUT_TYPES),
    ):
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise bad(key, f"{value!r} is not one of {', '.join(allowed)}")
    gen = cfg.generation
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
                "scoring.clip.batch_size", "scoring.num_actors"):
        if OmegaConf.select(cfg, key) < 1:
            raise bad(key, "must be >= 1")
    for key in ("generation.denoise_preview_every", "trajectory.max_side", "input.max_frames", "runtime.num_actors"):
        if OmegaConf.select(cfg, key) < 0:
            raise bad(key, "must be >= 0")
    for score in SCORES:
        low, high = cfg.filter[f"{score}_min"], cfg.filter[f"{score}_max"]
        if low is not None and high is not None and low > high:
            raise bad(f"filter.{score}_min", f"{low} is above filter.{score}_max {high}")
    if not 1 <= cfg.trajectory.quality <= 100:
        raise bad("trajectory.quality", "must be within 1..100")


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


__all__ = [
    "Config",
    "ConfigError",
    "ConfigLoader",
    "FilterConfig",
    "GenerationConfig",
    "LoraConfig",
    "ModelConfig",
    "SCORES",
    "TrajectoryConfig",
    "load_config",
    "to_dict",
    "to_yaml",
]
