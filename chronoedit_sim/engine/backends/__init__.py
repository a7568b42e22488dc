"""The editor backends: one module per backend behind one small interface.

A backend is a class constructed as `Backend(model_cfg: ModelConfig)` with the public surface of
engine.editor.Editor: an `identity` (editor.ModelIdentity) and
`edit_samples(image, prompt, *, seeds, gen, negative_prompt="") -> list[editor.EditResult]` (reasoning
fields None where a backend has no trajectory; `calls` its component calls). The registry names each class
as "module:Class" and imports it only when a run uses it (diffusers takes seconds to import).
"""

from __future__ import annotations

import importlib
import importlib.util

from ...config import BACKENDS, CPU_BACKENDS, ConfigError

REGISTRY = {
    # ChronoEdit's backend is the Editor itself, with its trajectory, LoRAs, enhancer and upscaler
    "chronoedit": "chronoedit_sim.engine.editor:Editor",
    "corruption": "chronoedit_sim.engine.backends.corruption:CorruptionBackend",
    "qwen_image_edit": "chronoedit_sim.engine.backends.qwen_image_edit:QwenImageEditBackend",
    "flux_kontext": "chronoedit_sim.engine.backends.flux_kontext:FluxKontextBackend",
}
assert set(REGISTRY) == set(BACKENDS), "config.BACKENDS and the registry name the same backends"
# libraries a backend needs that pip may not have installed, and how to install them
LIBRARIES = {
    # installed apart: it declares opencv-python, which would clash with our headless OpenCV
    "corruption": [("imagecorruptions", "pip install --no-deps imagecorruptions-imaug==1.1.5")],
}


def check_backend(name: str, where: str) -> None:
    """A ConfigError (one line, before anything loads) for an unknown backend or one whose module is absent."""
    if name not in REGISTRY:
        raise ConfigError(f"{where}: {name!r} is not one of {', '.join(REGISTRY)}")
    module = REGISTRY[name].split(":")[0]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{where}: backend {name!r} is not part of this installation (no module {module})")
    for library, install in LIBRARIES.get(name, []):
        if importlib.util.find_spec(library) is None:
            raise ConfigError(f"{where}: backend {name!r} needs the {library} package: {install}")


def backend_class(name: str):
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def runs_on_cpu(name: str) -> bool:
    """A weight-free backend: its edits run as CPU tasks, never in a GPU actor."""
    return name in CPU_BACKENDS
