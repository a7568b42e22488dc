"""Validation of scenario keys: the shared checks, the consistency group, and the perception keys of an edit
(annotation policy, region, severity, sketch). Pure Python; every error names the file, the edit and the key."""

from __future__ import annotations

import yaml

from .config import BACKENDS, ConfigError
from .engine.backends.corruption import CORRUPTIONS, SEVERITIES
from .perception.labels import POLICIES, REGIONS
from .perception.sketch import LIBRARY, SketchSpec, load_shape


def check_keys(data: dict, allowed: set, required: tuple, where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if data.get(key) in (None, ""):
            raise ConfigError(f"{where}{key}: missing required value")


# values a scenario file may expand to through its aliases: a real one has hundreds
MAX_YAML_VALUES = 100_000


def _expanded(node, memo: dict) -> int:
    """How many values the node stands for once every alias in it is expanded (shared nodes counted per use)."""
    if id(node) not in memo:
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else
                    node.value if isinstance(node, yaml.SequenceNode) else [])
        memo[id(node)] = 1 + sum(_expanded(c, memo) for c in children)
    return memo[id(node)]


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice (YAML keeps the last one silently) and aliases that expand to
    more than MAX_YAML_VALUES values: nested aliases grow exponentially (a "billion laughs" loads as shared
    references in microseconds, then hangs whatever walks it)."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values: not a scenario")
        return node

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: {key}: the key is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str, path: str):
    """A scenario file's YAML, strictly: every problem one line naming the file."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None  # one line
    except RecursionError:  # PyYAML composes recursively
        raise ConfigError(f"{path}: nested too deeply to be a scenario") from None


def parse_labels(value, where: str) -> dict:
    """Label values are scalars (a class name, a number): what a row's labels and the boxes carry."""
    out = mapping(value, where)
    for key, item in out.items():
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise ConfigError(f"{where}.{key}: a label value is a string or a number, got {type(item).__name__}")
    return out


def mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


# what an edit's variable choices, seed and sketch placement are shared across: each frame its own; every
# frame of the source's sequence (a video, a LeRobot episode, a KITTI raw drive, a nuScenes scene); the
# cameras of one moment (a LeRobot frame, a nuScenes sample, a KITTI stereo pair)
CONSISTENCY = ("frame", "sequence", "instant")


def parse_consistency(value, where: str) -> str | None:
    if value is None:
        return None
    if value not in CONSISTENCY:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(CONSISTENCY)}")
    return value


def _pair(value, where: str) -> tuple[float, float]:
    ok = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not 0 < value[0] <= value[1] <= 1:
        raise ConfigError(f"{where}: expected [min, max] fractions of the frame height, 0 < min <= max <= 1, "
                          f"got {value!r}")
    return float(value[0]), float(value[1])


def parse_sketch(raw, where: str):
    if raw is None:
        return None
    data = mapping(raw, where)
    allowed = {"shape", "region", "height_at_bottom", "height_at_horizon", "horizon", "aspect"}
    check_keys(data, allowed, ("shape", "height_at_bottom", "height_at_horizon"), where + ".")
    try:
        load_shape(str(data["shape"]))
    except ValueError as e:
        shipped = ", ".join(sorted(p.stem for p in LIBRARY.glob("*.txt")))
        raise ConfigError(f"{where}.shape: {e} (shipped: {shipped})") from None
    horizon, aspect = data.get("horizon", 0.45), data.get("aspect", 0.4)
    if not isinstance(horizon, (int, float)) or not 0 <= horizon < 1:
        raise ConfigError(f"{where}.horizon: a fraction of the frame height in [0, 1), got {horizon!r}")
    if not isinstance(aspect, (int, float)) or not 0 < aspect <= 10:
        raise ConfigError(f"{where}.aspect: width / height of the drawing, in (0, 10], got {aspect!r}")
    return SketchSpec(shape=str(data["shape"]), region=parse_region(data.get("region", "full"), f"{where}.region"),
                      height_at_bottom=_pair(data["height_at_bottom"], f"{where}.height_at_bottom"),
                      height_at_horizon=_pair(data["height_at_horizon"], f"{where}.height_at_horizon"),
                      horizon=float(horizon), aspect=float(aspect))


def parse_policy(value, where: str) -> str | None:
    if value is not None and value not in POLICIES:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(POLICIES)}")
    return value


def parse_region(value, where: str):
    if value is None or (isinstance(value, str) and value in REGIONS):
        return value
    nums = value if isinstance(value, list) and len(value) == 4 else None
    if nums is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in nums) \
            or not (nums[0] < nums[2] and nums[1] < nums[3]):
        raise ConfigError(f"{where}: expected [x0, y0, x1, y1] relative to the frame (0..1, x0 < x1, y0 < y1) "
                          f"or one of {', '.join(REGIONS)}, got {value!r}")
    return tuple(float(v) for v in nums)


def parse_severity(raw, variables: dict, where: str) -> dict[str, dict[str, int]]:
    out = {}
    for name, levels in mapping(raw, where).items():
        if name not in variables:
            raise ConfigError(f"{where}.{name}: not a variable of this edit (vars: {', '.join(variables) or 'none'})")
        if not isinstance(levels, dict):
            raise ConfigError(f"{where}.{name}: expected a mapping choice -> level")
        choices = [c for c, _ in variables[name]]
        for choice, level in levels.items():
            if str(choice) not in choices:
                raise ConfigError(f"{where}.{name}: {choice!r} is not a choice of {name} ({', '.join(choices)})")
            if not isinstance(level, int) or isinstance(level, bool) or level < 1:
                raise ConfigError(f"{where}.{name}.{choice}: severity must be an integer >= 1, got {level!r}")
        missing = [c for c in choices if c not in {str(k) for k in levels}]
        if missing:
            raise ConfigError(f"{where}.{name}: no severity for {', '.join(map(repr, missing))}")
        out[name] = {str(k): v for k, v in levels.items()}
    return out


def parse_backend(value, where: str) -> str | None:
    if value is not None and value not in BACKENDS:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(BACKENDS)}")
    return value


def parse_corruption(value, where: str) -> str:
    if value not in CORRUPTIONS:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(CORRUPTIONS)}")
    return value


def parse_levels(value, where: str) -> tuple[int, ...]:
    """A corruption edit's severities: a list of distinct levels in 1..5 (the COCO-C ladder)."""
    ok = isinstance(value, list) and value and all(v in SEVERITIES and not isinstance(v, bool) for v in value)
    if not ok or len(set(value)) != len(value):
        raise ConfigError(f"{where}: expected a list of distinct levels in 1..5, got {value!r}")
    return tuple(value)
