"""Configuration: the dataclass schema (schema.py) and the layered OmegaConf loader (loader.py)."""

from .loader import ConfigError, ConfigLoader, configs_dir, load_config, to_dict, to_yaml
from .schema import (
    BACKENDS,
    CALL_NAMES,
    CPU_BACKENDS,
    DTYPES,
    QUANTIZE,
    IMAGE_FORMATS,
    INPUT_TYPES,
    JUDGE_SCORES,
    LOCALIZE_SCORES,
    SCORES,
    SEQUENCE_SCORES,
    TRAJECTORY_STORAGE,
    X264_PRESETS,
    ClipConfig,
    Config,
    EncodeConfig,
    FaultConfig,
    FilterConfig,
    GenerationConfig,
    InputConfig,
    LocalizeConfig,
    LoraConfig,
    ModelConfig,
    OutputConfig,
    ReportConfig,
    RuntimeConfig,
    ScoringConfig,
    TrajectoryConfig,
    UpscaleConfig,
)
from .vlm import EnhanceConfig, JudgeConfig, VlmConfig

__all__ = [
    "BACKENDS", "CPU_BACKENDS", "CALL_NAMES", "DTYPES", "QUANTIZE", "IMAGE_FORMATS", "INPUT_TYPES", "JUDGE_SCORES", "LOCALIZE_SCORES", "SCORES", "SEQUENCE_SCORES", "TRAJECTORY_STORAGE", "X264_PRESETS", "ClipConfig", "Config", "ConfigError",
    "ConfigLoader", "EncodeConfig", "FaultConfig", "FilterConfig", "GenerationConfig", "InputConfig", "LocalizeConfig", "LoraConfig",
    "ModelConfig", "OutputConfig", "ReportConfig", "RuntimeConfig", "ScoringConfig", "TrajectoryConfig", "UpscaleConfig", "VlmConfig", "EnhanceConfig", "JudgeConfig", "configs_dir",
    "load_config", "to_dict", "to_yaml",
]
