"""LoRA loading through the pipeline's own (Wan) LoRA loader."""

from __future__ import annotations

from pathlib import Path

_KNOWN_PREFIXES = ("diffusion_model.", "transformer.", "lora_unet_")


def normalize_lora_keys(state_dict: dict) -> dict:
    """DiffSynth-Studio LoRAs (ChronoEdit's own training code) use the original Wan
    module names without the `diffusion_model.` prefix that diffusers' Wan loader
    keys its conversion on, and may keep peft's `.default` adapter segment."""
    if any(k.startswith(_KNOWN_PREFIXES) for k in state_dict):
        return state_dict
    return {"diffusion_model." + k.replace(".default.", "."): v for k, v in state_dict.items()}


def load_loras(pipe, loras: list[tuple[Path, float, str]]) -> list[str]:
    """Load each (file, scale, adapter name) and activate them together; returns the adapter names."""
    if not loras:
        return []
    from safetensors.torch import load_file

    names, scales = [], []
    for path, scale, name in loras:
        name = name or Path(path).stem
        if name in names:
            raise ValueError(f"two LoRAs share the adapter name {name!r}; set model.loras.N.name")
        pipe.load_lora_weights(normalize_lora_keys(load_file(str(path))), adapter_name=name)
        names.append(name)
        scales.append(float(scale))
    pipe.set_adapters(names, adapter_weights=scales)
    return names
