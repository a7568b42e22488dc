"""LoRA loading through the pipeline's own (Wan) LoRA loader, and the check of a LoRA file before any model
loads: a safetensors file whose keys, converted as the loader converts them, name modules of the transformer
with their shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import storage
from ..errors import UserError

# a converted key: the module it adapts, and what of it
_ADAPTER_KEY = re.compile(r"^(?:transformer\.)?(?P<module>.+?)\.(?P<part>lora_A|lora_B)\.(?:weight|bias)$")


class LoraError(UserError):
    """A LoRA file that is not a LoRA of this transformer: caught before any model loads."""

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


# safetensors' dtype names; the header's limit (its format's own)
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
           "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}
_MAX_HEADER = 100_000_000


def _header_tensors(path) -> dict:
    """The tensors of a safetensors file as check_lora needs them, read from its header (safetensors' own
    reader opens local files only; this one reads a URL's by ranged GETs): meta tensors of each shape, but
    the scalar alphas, read, because the key conversion reads their values."""
    import torch

    with storage.open_ranges(path) as f:
        size = int.from_bytes(f.read(8), "little")
        if size > _MAX_HEADER:
            raise ValueError(f"header length {size} is over the format's limit")
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    sd = {key: torch.empty(meta["shape"], dtype=torch.float32, device="meta") for key, meta in header.items()}
    # a LoRA has an alpha per module (hundreds): their bytes are read in one batch of ranges, side by side
    alphas = [key for key in header if key.endswith(".alpha")]
    data = storage.read_ranges(path, [(8 + size + header[k]["data_offsets"][0], 8 + size + header[k]["data_offsets"][1])
                                      for k in alphas])
    for key, raw in zip(alphas, data):
        dtype = getattr(torch, _DTYPES[header[key]["dtype"]])
        sd[key] = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(header[key]["shape"])
    return sd


def check_lora(path, transformer_dir, where: str) -> None:
    """Read the file's safetensors header, local or on a store (no tensor data but the scalar alphas), convert
    its keys as load_loras does, and check each adapted module exists in the transformer built from its config
    on the meta device (no weights) with the shapes the LoRA's matrices need. LoraError names `where`."""
    import torch
    from diffusers import ChronoEditPipeline, ChronoEditTransformer3DModel

    try:
        sd = _header_tensors(path)
    except Exception as exc:  # a file that is not safetensors (ValueError, KeyError), OSError
        raise LoraError(f"{where}: {path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    if not sd:
        raise LoraError(f"{where}: {path}: holds no tensors")
    try:
        converted = ChronoEditPipeline.lora_state_dict(normalize_lora_keys(sd))
    except Exception as exc:  # diffusers' conversion refuses keys it does not know
        raise LoraError(f"{where}: {path}: not a LoRA of a Wan/ChronoEdit transformer "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    with torch.device("meta"):
        modules = dict(ChronoEditTransformer3DModel.from_config(
            json.loads((transformer_dir / "config.json").read_text())).named_modules())
    misfits = []
    for key, tensor in converted.items():
        m = _ADAPTER_KEY.match(key)
        module = modules.get(m["module"] if m else key.removeprefix("transformer.").rsplit(".", 1)[0])
        if module is None:
            misfits.append(f"{key} (no such module)")
        elif m and key.endswith(".weight") and isinstance(module, torch.nn.Linear):
            size = module.in_features if m["part"] == "lora_A" else module.out_features
            if tensor.shape[1 if m["part"] == "lora_A" else 0] != size:
                misfits.append(f"{key} {list(tensor.shape)} (the module is {module.in_features} -> "
                               f"{module.out_features})")
    if misfits:
        raise LoraError(f"{where}: {path}: {len(misfits)} of its {len(converted)} keys do not fit the transformer "
                        f"of {transformer_dir}: {', '.join(misfits[:3])}{' ...' if len(misfits) > 3 else ''}")


def check_loras(model, root: Path, upscale=None) -> dict[str, Path]:
    """Every LoRA of `model` (a ModelConfig), and the upscaler's where `upscale` is enabled: found, readable and
    fitting the transformer they adapt (MissingWeightsError or LoraError, one line each). Returns each file by
    the key that names it."""
    from .weights import resolve_lora_path, resolve_transformer

    files = [(lora.path, f"model.loras.{i}.path") for i, lora in enumerate(model.loras)]
    if upscale is not None and upscale.enabled:
        files.append((upscale.lora, "upscale.lora"))
    if not files:
        return {}
    transformer = (resolve_transformer(model.transformer_path, model.allow_download) if model.transformer_path
                   else root / "transformer")
    found = {}
    for path, where in files:
        found[where] = resolve_lora_path(path, root, model.allow_download)
        check_lora(found[where], transformer, where)
    return found
