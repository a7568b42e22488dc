"""Tests for chronoedit_sim.config: defaults, presets, layer order and error messages.

Pure Python: nothing here loads a model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from chronoedit_sim.config import (
    Config,
    ConfigError,
    ConfigLoader,
    GenerationConfig,
    LoraConfig,
    configs_dir,
    load_config,
    to_dict,
    to_yaml,
)

REPO = Path(__file__).resolve().parent.parent
PRESETS = ("chronoedit-14b", "chronoedit-14b-distill", "chronoedit-2b", "tiny", "qwen-image-edit-2509",
           "flux-kontext-dev", "tiny-qwen-image-edit", "tiny-flux-kontext", "corruption")


def _error(overrides=(), layers=(), config_files=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(list(overrides), list(layers), list(config_files))
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_configs_dir_is_the_shipped_folder(monkeypatch):
    monkeypatch.delenv("CHRONOEDIT_SIM_CONFIGS", raising=False)
    assert configs_dir() == REPO / "configs"
    assert sorted(p.stem for p in (REPO / "configs" / "model").glob("*.yaml")) == sorted(PRESETS)


def test_default_config_values():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.seed == 0

    m = cfg.model
    assert m.preset == "chronoedit-14b"
    assert m.path == "nvidia/ChronoEdit-14B-Diffusers"
    assert m.revision is None
    assert m.allow_download is False
    assert m.loras == []
    assert m.device == "auto"
    assert m.dtype == "bfloat16"
    assert m.cpu_offload is False

    g = cfg.generation
    assert g.num_inference_steps == 50
    assert g.guidance_scale == 5.0
    assert g.flow_shift == 5.0
    assert g.temporal_reasoning is False
    assert g.reasoning_steps == 10
    assert g.num_frames == 29
    assert g.max_area == 480 * 832 == 399360
    assert g.height is None
    assert g.width is None
    assert g.denoise_preview_every == 0

    t = cfg.trajectory
    assert (t.image_format, t.quality, t.max_side, t.edited_format) == ("webp", 90, 0, "png")

    f = dataclasses.asdict(cfg.filter)
    assert f.pop("write_rejected") is True
    assert f.pop("clip_text_min") == 0.2
    assert f.pop("clip_direction_min") == 0.2
    assert f.pop("clip_image_min") == 0.7
    # every other bound is inactive
    assert f and all(v is None for v in f.values()), f


def test_default_yaml_agrees_with_dataclass_defaults():
    # configs/default.yaml and the schema's own defaults must not drift apart
    assert dataclasses.asdict(load_config().generation) == dataclasses.asdict(GenerationConfig())


def test_default_preset_is_chronoedit_14b():
    assert load_config() == load_config(["model=chronoedit-14b"])


@pytest.mark.parametrize(
    "preset, path, steps, guidance, flow_shift, num_frames, max_area",
    [
        ("chronoedit-14b", "nvidia/ChronoEdit-14B-Diffusers", 50, 5.0, 5.0, 29, 399360),
        ("chronoedit-14b-distill", "nvidia/ChronoEdit-14B-Diffusers", 8, 1.0, 2.0, 29, 399360),
        ("chronoedit-2b", "nvidia/ChronoEdit-2B-Diffusers", 50, 5.0, 5.0, 29, 399360),
        ("tiny", ".demo/tiny-chronoedit", 4, 5.0, 3.0, 9, 16384),
        # the other editors' presets set no ChronoEdit-only key (flow_shift, num_frames): defaults stay
        ("qwen-image-edit-2509", "Qwen/Qwen-Image-Edit-2509", 40, 4.0, 5.0, 29, 1048576),
        ("flux-kontext-dev", "black-forest-labs/FLUX.1-Kontext-dev", 28, 2.5, 5.0, 29, 1048576),
        ("tiny-qwen-image-edit", ".demo/tiny-qwen-image-edit", 4, 5.0, 5.0, 29, 16384),
        ("tiny-flux-kontext", ".demo/tiny-flux-kontext", 4, 2.5, 5.0, 29, 16384),
    ],
)
def test_presets(preset, path, steps, guidance, flow_shift, num_frames, max_area):
    cfg = load_config([f"model={preset}"])
    assert cfg.model.preset == preset
    assert cfg.model.path == path
    g = cfg.generation
    assert (g.num_inference_steps, g.guidance_scale, g.flow_shift, g.num_frames, g.max_area) == (
        steps,
        guidance,
        flow_shift,
        num_frames,
        max_area,
    )


def test_distill_preset_wires_one_lora():
    cfg = load_config(["model=chronoedit-14b-distill"])
    assert cfg.model.loras == [LoraConfig(path="lora/chronoedit_distill_lora.safetensors", scale=1.0, name="distill")]


@pytest.mark.parametrize("preset", ["chronoedit-14b", "chronoedit-2b", "tiny"])
def test_other_presets_have_no_lora(preset):
    assert load_config([f"model={preset}"]).model.loras == []


def test_tiny_preset_reasoning_steps():
    cfg = load_config(["model=tiny"])
    assert cfg.generation.reasoning_steps == 2
    # values the tiny preset does not set still come from default.yaml
    assert cfg.generation.temporal_reasoning is False
    assert cfg.trajectory.image_format == "webp"
    assert cfg.filter.clip_image_min == 0.7


@pytest.mark.parametrize("preset, backend", [("chronoedit-14b", "chronoedit"), ("tiny", "chronoedit"),
                                             ("qwen-image-edit-2509", "qwen_image_edit"),
                                             ("tiny-qwen-image-edit", "qwen_image_edit"),
                                             ("flux-kontext-dev", "flux_kontext"), ("tiny-flux-kontext", "flux_kontext")])
def test_presets_choose_their_backend(preset, backend):
    assert load_config([f"model={preset}"]).model.backend == backend


@pytest.mark.parametrize("override", ["model.quantize=fp8_dynamic", "upscale.enabled=true", "model.compile=true",
                                      "model.step_cache=first_block", "model.offload_text_encoder=true",
                                      "model.transformer_path=/x", "model.loras=[{path: a.safetensors}]"])
def test_chronoedit_only_keys_are_refused_for_the_other_editors_instead_of_being_ignored(override):
    key = override.split("=")[0]
    for preset in ("qwen-image-edit-2509", "flux-kontext-dev"):
        backend = load_config([f"model={preset}"]).model.backend
        assert _error([f"model={preset}", override]) == \
            f"command line: {key}: applies to ChronoEdit only, not to model.backend={backend}"
    assert load_config(["model=tiny", override]).model.backend == "chronoedit"  # ChronoEdit takes them


def test_the_tiny_preset_finds_clip_and_the_vlm_beside_its_checkpoint():
    """make-tiny-model DIR writes DIR-clip and DIR-vlm: the preset points at them wherever DIR is (#24)."""
    cfg = load_config(["model=tiny", "model.path=/tmp/x"])
    assert (cfg.scoring.clip.model, cfg.vlm.path) == ("local-dir:/tmp/x-clip", "/tmp/x-vlm")
    cfg = load_config(["model=tiny", "model.path=/tmp/x", "vlm.path=/elsewhere"])
    assert (cfg.scoring.clip.model, cfg.vlm.path) == ("local-dir:/tmp/x-clip", "/elsewhere")


# --------------------------------------------------------------------------- overrides and layers


def test_dotlist_overrides_applied():
    cfg = load_config(["generation.num_inference_steps=8", "trajectory.image_format=webp"])
    assert cfg.generation.num_inference_steps == 8
    assert cfg.trajectory.image_format == "webp"
    cfg = load_config(["trajectory.image_format=jpeg", "seed=123", "model.cpu_offload=true", "generation.height=256", "generation.width=512"])
    assert cfg.trajectory.image_format == "jpeg"
    assert cfg.seed == 123
    assert cfg.model.cpu_offload is True
    assert (cfg.generation.height, cfg.generation.width) == (256, 512)
    # untouched keys keep their defaults
    assert cfg.generation.num_inference_steps == 50


def test_dotlist_value_is_converted_to_the_schema_type():
    cfg = load_config(["generation.guidance_scale=3", "generation.num_inference_steps=12"])
    assert cfg.generation.guidance_scale == 3.0
    assert isinstance(cfg.generation.guidance_scale, float)
    assert cfg.generation.num_inference_steps == 12
    assert isinstance(cfg.generation.num_inference_steps, int)


def test_dotlist_value_may_contain_equals_sign():
    cfg = load_config(["model.path=/data/a=b/model"])
    assert cfg.model.path == "/data/a=b/model"


def test_preset_plus_override_in_any_order():
    a = load_config(["model=tiny", "generation.num_inference_steps=2"])
    b = load_config(["generation.num_inference_steps=2", "model=tiny"])
    assert a == b
    assert a.model.preset == "tiny"
    assert a.generation.num_inference_steps == 2
    assert a.generation.num_frames == 9


def test_layer_overrides_preset():
    cfg = load_config(["model=tiny"], layers=[("s.yaml", {"generation": {"num_inference_steps": 3}})])
    assert cfg.generation.num_inference_steps == 3
    # keys the layer does not name keep the preset's values
    assert cfg.generation.num_frames == 9
    assert cfg.generation.flow_shift == 3.0


def test_command_line_wins_over_layers():
    cfg = load_config(
        ["generation.num_inference_steps=7"],
        layers=[("s.yaml", {"generation": {"num_inference_steps": 3}})],
    )
    assert cfg.generation.num_inference_steps == 7


def test_later_layer_wins_over_earlier():
    layers = [
        ("scenario.yaml", {"generation": {"num_inference_steps": 3, "guidance_scale": 2.5}}),
        ("scenario.yaml: edits[0]", {"generation": {"num_inference_steps": 6}}),
    ]
    cfg = load_config(layers=layers)
    assert cfg.generation.num_inference_steps == 6
    assert cfg.generation.guidance_scale == 2.5
    cfg = load_config(layers=list(reversed(layers)))
    assert cfg.generation.num_inference_steps == 3


def test_config_file_sits_between_preset_and_layers(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("generation:\n  num_inference_steps: 11\n  guidance_scale: 4.5\n")
    cfg = load_config(["model=tiny"], config_files=[str(user)])
    assert cfg.generation.num_inference_steps == 11  # over the preset's 4
    assert cfg.generation.guidance_scale == 4.5
    cfg = load_config(["model=tiny"], layers=[("s.yaml", {"generation": {"num_inference_steps": 3}})], config_files=[str(user)])
    assert cfg.generation.num_inference_steps == 3  # scenario over --config
    assert cfg.generation.guidance_scale == 4.5
    cfg = load_config(["model=tiny", "generation.num_inference_steps=1"], config_files=[str(user)])
    assert cfg.generation.num_inference_steps == 1  # command line over --config


def test_later_config_file_wins(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("seed: 1\ntrajectory: {quality: 50}\n")
    b.write_text("seed: 2\n")
    cfg = load_config(config_files=[str(a), str(b)])
    assert (cfg.seed, cfg.trajectory.quality) == (2, 50)


def test_empty_config_file_is_a_no_op(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_config(config_files=[str(empty)]) == load_config()


def test_loader_builds_are_independent():
    loader = ConfigLoader(["model=tiny", "seed=5"])
    with_layer = loader.build([("s.yaml", {"generation": {"num_inference_steps": 3, "temporal_reasoning": True}})])
    plain = loader.build()
    assert with_layer.generation.num_inference_steps == 3
    assert with_layer.generation.temporal_reasoning is True
    assert plain.generation.num_inference_steps == 4
    assert plain.generation.temporal_reasoning is False
    assert plain.seed == with_layer.seed == 5


def test_layer_can_replace_preset_loras():
    cfg = load_config(["model=chronoedit-14b-distill"], layers=[("s.yaml", {"model": {"loras": []}})])
    assert cfg.model.loras == []


def test_custom_preset_file(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("model:\n  preset: mine\n  path: /models/mine\ngeneration:\n  num_inference_steps: 12\n")
    cfg = load_config([f"model={preset}"])
    assert cfg.model.preset == "mine"
    assert cfg.model.path == "/models/mine"
    assert cfg.generation.num_inference_steps == 12
    assert cfg.generation.num_frames == 29  # from default.yaml


def test_alternative_configs_dir(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "default.yaml").write_text("seed: 9\nmodel:\n  preset: alt\n")
    (tmp_path / "model" / "alt.yaml").write_text("model:\n  preset: alt\n  path: /alt\n")
    monkeypatch.setenv("CHRONOEDIT_SIM_CONFIGS", str(tmp_path))
    assert configs_dir() == tmp_path
    cfg = load_config()  # the default preset is read from default.yaml
    assert (cfg.seed, cfg.model.preset, cfg.model.path) == (9, "alt", "/alt")
    assert _error(["model=tiny"]) == "model=tiny: unknown model preset (known: alt)"


# --------------------------------------------------------------------------- errors


def test_unknown_key_on_command_line():
    msg = _error(["generation.foo=1"])
    assert msg == "command line: generation.foo: Key 'foo' not in 'GenerationConfig'"


def test_unknown_top_level_key_on_command_line():
    msg = _error(["generations.num_inference_steps=1"])
    assert msg.startswith("command line: generations: Key 'generations' not in 'Config'")


def test_unknown_key_in_layer_names_the_layer():
    msg = _error(layers=[("scenarios/driving/rain.yaml", {"generation": {"foo": 1}})])
    assert msg == "scenarios/driving/rain.yaml: generation.foo: Key 'foo' not in 'GenerationConfig'"


def test_unknown_filter_key_in_layer():
    msg = _error(layers=[("s.yaml: edits[2]", {"filter": {"clip_img_min": 0.5}})])
    assert msg.startswith("s.yaml: edits[2]: filter.clip_img_min: Key 'clip_img_min' not in 'FilterConfig'")


def test_unknown_key_in_config_file_names_the_file(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("trajectory:\n  quallity: 80\n")
    msg = _error(config_files=[str(user)])
    assert msg.startswith(f"{user}: trajectory.quallity: Key 'quallity' not in 'TrajectoryConfig'")


def test_wrong_type_on_command_line():
    msg = _error(["generation.num_inference_steps=abc"])
    assert msg == (
        "command line: generation.num_inference_steps: "
        "Value 'abc' of type 'str' could not be converted to Integer"
    )


@pytest.mark.parametrize("value", ["true", "8.5"])
def test_int_key_rejects_bool_and_float(value):
    msg = _error([f"generation.num_inference_steps={value}"])
    assert msg.startswith("command line: generation.num_inference_steps: ")
    assert "could not be converted to Integer" in msg


def test_wrong_type_in_layer_names_the_layer():
    msg = _error(layers=[("s.yaml", {"generation": {"num_inference_steps": "x"}})])
    assert msg == "s.yaml: generation.num_inference_steps: Value 'x' of type 'str' could not be converted to Integer"
    msg = _error(layers=[("s.yaml", {"generation": {"temporal_reasoning": "sometimes"}})])
    assert msg == "s.yaml: generation.temporal_reasoning: Value 'sometimes' is not a valid bool (type str)"


def test_bad_image_format():
    msg = _error(["trajectory.image_format=gif"])
    assert msg == "command line: trajectory.image_format: 'gif' is not one of png, webp, jpeg"


def test_bad_enum_from_layer_names_the_layer():
    msg = _error(layers=[("s.yaml", {"trajectory": {"edited_format": "bmp"}})])
    assert msg == "s.yaml: trajectory.edited_format: 'bmp' is not one of png, webp, jpeg"
    msg = _error(["model.dtype=fp8"])
    assert msg == "command line: model.dtype: 'fp8' is not one of bfloat16, float16, float32"


def test_bad_value_in_layer_fixed_on_command_line():
    cfg = load_config(["trajectory.image_format=png"], layers=[("s.yaml", {"trajectory": {"image_format": "gif"}})])
    assert cfg.trajectory.image_format == "png"


def test_unknown_preset_lists_known_presets():
    msg = _error(["model=chronoedit-99b"])
    assert msg == (
        "model=chronoedit-99b: unknown model preset "
        "(known: chronoedit-14b, chronoedit-14b-distill, chronoedit-2b, corruption, flux-kontext-dev, qwen-image-edit-2509, "
        "tiny, tiny-flux-kontext, tiny-qwen-image-edit)"
    )


def test_missing_model_path(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("model:\n  preset: nopath\ngeneration:\n  num_inference_steps: 8\n")
    # build() must raise a ConfigError naming the key, not omegaconf's MissingMandatoryValue
    msg = _error([f"model={preset}"])
    assert msg == f"{preset}: model.path: missing required value (set it in the model preset or as model.path=...)"
    with pytest.raises(ConfigError) as info:
        ConfigLoader([f"model={preset}"]).build_dict()
    assert str(info.value) == msg


def test_path_for_preset_without_one_can_come_from_command_line(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("model:\n  preset: nopath\n")
    cfg = load_config([f"model={preset}", "model.path=/m"])
    assert (cfg.model.preset, cfg.model.path) == ("nopath", "/m")


def test_missing_custom_preset_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert _error([f"model={missing}"]) == f"{missing}: file not found"


@pytest.mark.parametrize("frames", [1, 4, 6, 10, 30, 0])
def test_num_frames_must_be_1_plus_4k(frames):
    msg = _error([f"generation.num_frames={frames}"])
    assert msg == (
        f"command line: generation.num_frames: {frames} must be 1 + 4k with k >= 1 (the VAE's 4x time compression)"
    )


@pytest.mark.parametrize("frames", [5, 9, 29, 81])
def test_num_frames_valid(frames):
    assert load_config([f"generation.num_frames={frames}"]).generation.num_frames == frames


def test_num_frames_error_from_layer_names_the_layer():
    msg = _error(layers=[("s.yaml", {"generation": {"num_frames": 6}})])
    assert msg.startswith("s.yaml: generation.num_frames: 6 must be 1 + 4k")


def test_height_without_width():
    msg = _error(["generation.height=256"])
    assert msg == "command line: generation.height: height and width must be set together"


def test_width_without_height_names_the_layer_that_set_width():
    # the layer that set width is blamed, not configs/default.yaml
    msg = _error(layers=[("s.yaml", {"generation": {"width": 256}})])
    assert msg == "s.yaml: generation.width: height and width must be set together"


@pytest.mark.parametrize("key, value", [("height", 100), ("width", 8), ("width", 0)])
def test_height_width_multiple_of_16(key, value):
    other = "width" if key == "height" else "height"
    msg = _error([f"generation.{key}={value}", f"generation.{other}=256"])
    assert msg == f"command line: generation.{key}: {value} must be a positive multiple of 16"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("generation.num_inference_steps=0", "command line: generation.num_inference_steps: must be >= 1"),
        ("generation.reasoning_steps=-1", "command line: generation.reasoning_steps: must be >= 0"),
        ("generation.max_area=255", "command line: generation.max_area: must be at least 256 (16x16)"),
        ("trajectory.quality=0", "command line: trajectory.quality: must be within 1..100"),
        ("trajectory.quality=101", "command line: trajectory.quality: must be within 1..100"),
        # found by a hostile user (#24): each passed before
        ("generation.guidance_scale=nan", "command line: generation.guidance_scale: nan is not a number this key "
                                          "can take"),
        ("generation.guidance_scale=-inf", "command line: generation.guidance_scale: -inf must be a finite number >= 0"),
        ("runtime.max_failed_fraction=2", "command line: runtime.max_failed_fraction: 2.0 must be within 0..1"),
        ("input.max_pixels=-1", "command line: input.max_pixels: must be >= 1"),
        ("filter.ssim_min=nan", "command line: filter.ssim_min: nan is not a number this key can take"),
    ],
)
def test_range_checks(override, expected):
    assert _error([override]) == expected


def test_range_boundaries_accepted():
    cfg = load_config(
        ["generation.num_inference_steps=1", "generation.reasoning_steps=0", "generation.max_area=256", "trajectory.quality=100"]
    )
    assert (cfg.generation.num_inference_steps, cfg.generation.reasoning_steps) == (1, 0)
    assert (cfg.generation.max_area, cfg.trajectory.quality) == (256, 100)


def test_lora_without_path_is_rejected():
    msg = _error(["model.loras=[{scale: 0.5}]"])
    assert msg == "command line: model.loras.0.path: missing required value"


def test_lora_without_path_names_the_layer():
    msg = _error(layers=[("s.yaml", {"model": {"loras": [{"scale": 0.5}]}})])
    assert msg == "s.yaml: model.loras.0.path: missing required value"


def test_bad_yaml_config_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  num_inference_steps: [8\n")
    msg = _error(config_files=[str(bad)])
    assert msg.startswith(f"{bad}: not valid YAML: ") and "\n" not in msg
    bad.write_text("seed: 1\nseed: 2\n")
    assert _error(config_files=[str(bad)]).endswith("found duplicate key seed in \"" + str(bad) + "\", line 2, column 1")


def test_config_file_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert _error(config_files=[str(bad)]) == f"{bad}: expected a mapping at the top level, got list"


def test_config_file_not_found(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert _error(config_files=[str(missing)]) == f"{missing}: file not found"


@pytest.mark.parametrize("item", ["generation", "generation.num_inference_steps"])
def test_override_without_equals(item):
    assert _error([item]) == f"command line: override {item!r} is not key=value"


def test_errors_raise_before_build():
    # the command line is checked when the loader is made, not only when a config is built
    with pytest.raises(ConfigError, match="is not key=value"):
        ConfigLoader(["seed"])
    with pytest.raises(ConfigError, match="unknown model preset"):
        ConfigLoader(["model=nope"])


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_unresolvable_interpolation_is_a_config_error():
    msg = _error(["generation.num_inference_steps=${nope}"])
    assert msg == "command line: generation.num_inference_steps: Interpolation key 'nope' not found"


# --------------------------------------------------------------------------- to_yaml / to_dict


@pytest.mark.parametrize("preset", PRESETS)
def test_to_yaml_round_trips(preset):
    cfg = load_config([f"model={preset}", "generation.height=256", "generation.width=512", "filter.ssim_min=0.3"])
    text = to_yaml(cfg)
    assert OmegaConf.create(text) == to_dict(cfg)
    assert OmegaConf.to_container(OmegaConf.create(text)) == to_dict(cfg)
    # and back into the schema gives the same Config
    back = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(text)))
    assert back == cfg


def test_to_yaml_of_dictconfig_matches_dataclass():
    loader = ConfigLoader(["model=chronoedit-14b-distill"])
    assert to_yaml(loader.build_dict()) == to_yaml(loader.build())


def test_to_dict_values():
    d = to_dict(load_config(["model=chronoedit-14b-distill"]))
    assert set(d) == {"seed", "model", "generation", "trajectory", "filter", "input", "runtime", "encode", "output",
                      "scoring", "localize", "upscale", "vlm", "enhance", "judge", "report"}
    assert d["model"]["loras"] == [{"path": "lora/chronoedit_distill_lora.safetensors", "scale": 1.0, "name": "distill"}]
    assert d["generation"]["num_inference_steps"] == 8
    assert d["generation"]["height"] is None
    assert "num_inference_steps: 8\n" in to_yaml(load_config(["model=chronoedit-14b-distill"]))


def test_video_storage_settings_are_checked_before_any_model_loads():
    cfg = load_config(["model=tiny", "model.path=/m", "trajectory.storage=video"])
    assert (cfg.trajectory.storage, cfg.trajectory.video_crf, cfg.trajectory.video_preset) == ("video", 18, "veryfast")
    for override, message in (("trajectory.storage=mp4", "'mp4' is not one of frames, video"),
                              ("trajectory.video_preset=turbo", "'turbo' is not one of ultrafast"),
                              ("trajectory.video_crf=60", "must be within 0..51")):
        with pytest.raises(ConfigError, match=message):
            load_config(["model=tiny", "model.path=/m", override])
