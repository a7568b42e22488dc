"""fp8 quantisation of the transformer's linear layers through torchao, an optional dependency
(it pins torch versions of its own, so it is installed apart, where the GPU stack supports it)."""

from __future__ import annotations

from ..errors import UserError


class QuantizeError(UserError):
    """model.quantize asked for what this machine cannot do."""


def quantize_transformer(transformer, kind: str) -> None:
    """In place: "fp8_weight_only" stores the weights in fp8 and computes in the original dtype;
    "fp8_dynamic" also quantises activations per row and multiplies in fp8 (Hopper and later)."""
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Float8WeightOnlyConfig,
            PerRow,
            quantize_,
        )
    except ImportError:
        raise QuantizeError(f"model.quantize={kind} needs torchao, which is not installed here "
                            "(pip install torchao, matching your torch)") from None
    config = (Float8WeightOnlyConfig() if kind == "fp8_weight_only"
              else Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    quantize_(transformer, config)
