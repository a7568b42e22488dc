"""The weight-free corruption backend: COCO-C and weather effects from maintained libraries, on the CPU.

Nothing is re-implemented. The 15 COCO-C corruptions (Michaelis et al. 2019, arXiv:1907.07484; ImageNet-C's
functions, Hendrycks & Dietterich 2019) come from `imagecorruptions` at their reference severities 1-5, in its
maintained fork `imagecorruptions-imaug` (the 2020 original calls scikit-image and NumPy APIs that no longer
exist). Both declare `opencv-python`, which would clash with our `opencv-python-headless`: the package is
installed without its dependencies (pyproject lists the real ones) and imports the headless `cv2`. The weather
effects are albumentations' transforms (rain, fog, snow, sun flare, shadow); albumentations has no
severities, so WEATHER names the parameters of our five levels.

An edit's spec travels as its prompt, "<corruption> severity <level>" (spec_prompt), which the scenario
writes and the report shows. Randomness: the job's seed, cut to 32 bits, seeds NumPy's global generator
(what imagecorruptions draws from), the `seed` argument of the functions that take one, and
albumentations' `set_random_seed`: the same seed gives the library's own pixels.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import time
from importlib.metadata import version

import numpy as np

from ...config import CALL_NAMES, GenerationConfig, ModelConfig

# imagecorruptions.get_corruption_names("common"), in its order
COCO_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
          "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
          "jpeg_compression")
# albumentations' weather: (transform, its arguments at severities 1..5); our ladder, not a published one
WEATHER = {
    "albu_rain": ("RandomRain", [{"rain_type": "drizzle"}, {"rain_type": "default"}, {"rain_type": "heavy"},
                                 {"rain_type": "torrential"},
                                 {"rain_type": "torrential", "brightness_coefficient": 0.5}]),
    "albu_fog": ("RandomFog", [{"fog_coef_range": (c, c)} for c in (0.2, 0.35, 0.5, 0.65, 0.8)]),
    "albu_snow": ("RandomSnow", [{"snow_point_range": (c, c)} for c in (0.1, 0.2, 0.3, 0.4, 0.5)]),
    "albu_sun_flare": ("RandomSunFlare", [{"src_radius": r} for r in (100, 200, 300, 400, 500)]),
    "albu_shadow": ("RandomShadow", [{"num_shadows_limit": (k, k)} for k in (1, 2, 3, 4, 5)]),
}
CORRUPTIONS = COCO_C + tuple(WEATHER)
SEVERITIES = (1, 2, 3, 4, 5)
_SPEC = re.compile(r"([a-z_]+) severity ([1-5])")


def spec_prompt(name: str, severity: int) -> str:
    """The prompt of a corruption job: its spec, readable."""
    return f"{name} severity {severity}"


def parse_spec(prompt: str) -> tuple[str, int]:
    match = _SPEC.fullmatch(prompt)
    if match is None or match[1] not in CORRUPTIONS:
        raise ValueError(f"not a corruption spec: {prompt!r} (expected '<corruption> severity <1-5>', "
                         f"corruptions: {', '.join(CORRUPTIONS)})")
    return match[1], int(match[2])


def seed32(seed: int) -> int:
    """NumPy's legacy seeding takes 32 bits; a job's seed has 63."""
    return seed % 2**32


def apply(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """The library's own function on an RGB uint8 frame (H, W, 3), seeded as described above."""
    s = seed32(seed)
    if name in WEATHER:
        import albumentations as A

        transform_name, levels = WEATHER[name]
        transform = getattr(A, transform_name)(**levels[severity - 1], p=1.0)
        transform.set_random_seed(s)
        return transform(image=image)["image"]
    from imagecorruptions import corrupt, corruptions

    # glass_blur and impulse_noise take a seed of their own; the rest draw from the global generator
    extra = {"seed": s} if "seed" in inspect.signature(getattr(corruptions, name)).parameters else {}
    np.random.seed(s)
    return np.asarray(corrupt(image, severity=severity, corruption_name=name, **extra), dtype=np.uint8)


def library_versions() -> str:
    return f"imagecorruptions-imaug {version('imagecorruptions-imaug')}, albumentations {version('albumentations')}"


class CorruptionBackend:
    """The backend interface (engine/backends) over apply(): no weights, no GPU, no trajectory."""

    def __init__(self, model_cfg: ModelConfig):
        from ..editor import ModelIdentity

        libs = library_versions()
        self.identity = ModelIdentity(model_id=f"corruption ({libs})",
                                      model_hash=hashlib.sha256(libs.encode()).hexdigest()[:16],
                                      preset="corruption", random_weights=False, loras=[])

    def edit_samples(self, image, prompt: str, *, seeds: list[int], gen: GenerationConfig | None = None,
                     negative_prompt: str = "") -> list:
        from ..editor import EditResult

        name, severity = parse_spec(prompt)
        rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
        out = []
        for seed in seeds:
            t0 = time.perf_counter()
            edited = apply(rgb, name, severity, seed)
            ms = round((time.perf_counter() - t0) * 1000, 3)
            out.append(EditResult(edited=edited, reasoning_frames=None, reasoning_kind=None, reasoning_step=None,
                                  reasoning_sigma=None, previews=[],
                                  settings={"corruption": name, "severity": severity, "seed32": seed32(seed)},
                                  identity=self.identity, timings_ms={"total_ms": ms},
                                  calls=dict.fromkeys(CALL_NAMES, 0)))
        return out
