"""fp8 quantisation of the transformer's linear layers through torchao, an optional dependency
(it pins torch versions of its own, so it is installed apart, where the GPU stack supports it)."""

from __future__ import annotations

from ..errors import UserError


class QuantizeError(UserError):
    """model.quantize asked for what this machine cannot do."""


def fp8_config(kind: str, device: str):
    """torchao's config for `kind` ("fp8_weight_only": fp8 weights, computed in the original dtype;
    "fp8_dynamic": activations quantised per row too, fp8 matmuls, Hopper and later). Checked before the
    model loads: without torchao, or off a GPU that runs fp8, the run stops here instead of at the first
    edit (or minutes into loading a 14B model)."""
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig, PerRow
    except ImportError:
        raise QuantizeError(f"model.quantize={kind} needs torchao, which is not installed here "
                            "(pip install torchao, matching your torch)") from None
    if not device.startswith("cuda"):
        raise QuantizeError(f"model.quantize={kind} needs a CUDA GPU; the model runs on {device}")
    if kind == "fp8_weight_only":
        return Float8WeightOnlyConfig()
    import torch

    if torch.cuda.get_device_capability(torch.device(device)) < (8, 9):
        raise QuantizeError(f"model.quantize={kind} multiplies in fp8, which needs compute capability 8.9 or "
                            f"later (Ada, Hopper); this GPU has {torch.cuda.get_device_capability(torch.device(device))}")
    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())


def quantize_transformer(transformer, config) -> None:
    """In place, with a config from fp8_config."""
    from torchao.quantization import quantize_

    quantize_(transformer, config)
