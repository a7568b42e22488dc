"""Scenario files: parsing, validation, templating and deterministic job expansion.

Pure Python. A job is (frame, edit, sample index). Its id, seed and variable
choices come from SHA-256 of its identity and the run seed, never from Python's
hash() or a global RNG, so a job renders the same prompt and seed on any
machine, in any process and in any order.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import ConfigError, ConfigLoader, FilterConfig, GenerationConfig, TrajectoryConfig
from .perception.sketch import SketchSpec, place
from .perception.taxonomy import CLASS_NAMES
from .engine.backends.corruption import spec_prompt
from .scenario_keys import (check_keys, mapping, parse_backend, parse_corruption, parse_labels, parse_consistency,
                            parse_levels, parse_policy, parse_region, parse_severity, parse_sketch, read_yaml)

DOMAINS = ("driving", "robotics")
_ID = re.compile(r"[a-z0-9_]+")
_TOP_KEYS = {"name", "domain", "description", "labels", "generation", "filter", "edits", "annotations",
             "consistent_across", "class_names", "backend"}
_REQUIRED_TOP = ("name", "domain", "description", "edits")
_EDIT_KEYS = {
    "id", "prompt", "vars", "target_caption", "source_caption", "samples",
    "negative_prompt", "labels", "generation", "filter", "annotations", "region", "severity", "sketch",
    "consistent_across", "backend", "corruption",
}
_REQUIRED_EDIT = ("id", "prompt", "target_caption", "source_caption")
# a corruption edit's prompt is its spec, written here, and it has no variables to render
_REQUIRED_CORRUPTION = ("id", "corruption", "severity", "target_caption", "source_caption")


def stable_hash(*parts: object) -> bytes:
    """SHA-256 of the parts, separated so ("ab", "c") and ("a", "bc") differ."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def make_job_id(scenario: str, edit_id: str, sample_index: int, source_id: str) -> str:
    return stable_hash("job", scenario, edit_id, sample_index, source_id).hex()[:20]


def make_seed(run_seed: int, job_id: str) -> int:
    # 63 bits: fits int64 columns and torch.Generator.manual_seed
    return int.from_bytes(stable_hash("seed", run_seed, job_id)[:8], "big") >> 1


@dataclass(frozen=True)
class Edit:
    id: str
    prompt: str
    # variable -> ((choice, weight), ...), in file order
    vars: dict[str, tuple[tuple[str, float], ...]]
    target_caption: str
    source_caption: str
    samples: int = 1
    negative_prompt: str = ""
    labels: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    filter: dict = field(default_factory=dict)
    # what the edit does to the source's boxes (perception.labels.POLICIES); None = the scenario's
    annotations: str | None = None
    # where the edited object should appear: relative (x0, y0, x1, y1) or a name in perception.labels.REGIONS
    region: tuple[float, float, float, float] | str | None = None
    # variable -> {choice: severity level}; a job's severity is the highest level its choices map to
    severity: dict[str, dict[str, int]] = field(default_factory=dict)
    # a black sketch drawn on the frame before the edit (PaintBrush LoRA): what, where, how big
    sketch: SketchSpec | None = None
    # what its choices and seed are shared across (scenario_keys.CONSISTENCY); the scenario's when unset
    consistent_across: str = "frame"
    # the editor (config.BACKENDS); None: the scenario's, else the run's model.backend
    backend: str | None = None
    # corruption edits: the library corruption (engine/backends/corruption.CORRUPTIONS) and its severity
    # levels; sample k takes levels[k % len(levels)], so `samples` counts every level's samples
    corruption: str | None = None
    levels: tuple[int, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    domain: str
    description: str
    edits: tuple[Edit, ...]
    labels: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    filter: dict = field(default_factory=dict)
    # the edits' default annotation policy
    annotations: str = "keep"
    # the inserted object's class per source taxonomy (perception/taxonomy.py), over its table: {kitti: ...}
    class_names: dict = field(default_factory=dict)
    # the edits' default editor (config.BACKENDS); None: the run's model.backend
    backend: str | None = None
    # where it was read from, its text and the text's SHA-256 (recorded in run manifests)
    path: str = ""
    text: str = ""
    sha256: str = ""

    def edit(self, edit_id: str) -> Edit:
        for e in self.edits:
            if e.id == edit_id:
                return e
        raise KeyError(f"{self.name}: no edit {edit_id!r}")

    def config_layers(self, edit: Edit) -> list[tuple[str, dict]]:
        """Config layers this scenario and edit put between the preset and the command line."""
        layers = []
        top = {k: v for k in ("generation", "filter") if (v := getattr(self, k))}
        if top:
            layers.append((self.path or self.name, top))
        own = {k: v for k in ("generation", "filter") if (v := getattr(edit, k))}
        if own:
            idx = self.edits.index(edit)
            layers.append((f"{self.path or self.name}: edits[{idx}]", own))
        return layers


@dataclass(frozen=True)
class Job:
    job_id: str
    scenario: str
    edit_id: str
    sample_index: int
    source_id: str
    seed: int
    prompt: str
    negative_prompt: str
    target_caption: str
    source_caption: str
    labels: dict
    # the variable choices that rendered the prompt
    choices: dict
    # the edit's severity level for these choices (scenario `severity:`), None when it declares none
    severity: int | None = None
    # sketch edits: where the drawing stands (perception.sketch.place: shape, center_x, base, height, aspect)
    sketch: dict | None = None
    # the consistency group whose draws these are ("sequence:<id>", "instant:<id>"); None: the frame's own
    group: str | None = None


def _placeholders(template: str, where: str) -> list[str]:
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template: {exc}") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not _ID.fullmatch(name) or spec or conv:
            raise ConfigError(f"{where}: placeholder {{{name}}} must be a plain lower-case name")
        names.append(name)
    return names


def _parse_vars(raw, where: str) -> dict[str, tuple[tuple[str, float], ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of variable -> choices")
    out = {}
    for name, choices in raw.items():
        key = f"{where}.{name}"
        if isinstance(choices, list):
            pairs = [(c, 1.0) for c in choices]
        elif isinstance(choices, dict):
            pairs = list(choices.items())
        else:
            raise ConfigError(f"{key}: choices must be a list or a mapping choice -> weight")
        if not pairs:
            raise ConfigError(f"{key}: empty choice list")
        for choice, weight in pairs:
            if not isinstance(choice, (str, int, float)) or isinstance(choice, bool):
                raise ConfigError(f"{key}: choice {choice!r} must be a string or number")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight < math.inf:
                raise ConfigError(f"{key}: weight of {choice!r} must be a positive number, got {weight!r}")
        out[str(name)] = tuple((str(c), float(w)) for c, w in pairs)
    return out


def _parse_edit(raw, idx: int, path: str, default_group: str, default_backend: str | None) -> Edit:
    where = f"{path}: edits[{idx}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    if "corruption" in raw:
        return _parse_corruption_edit(raw, idx, path, default_group, default_backend)
    check_keys(raw, _EDIT_KEYS, _REQUIRED_EDIT, where + ".")
    if not _ID.fullmatch(str(raw["id"])):
        raise ConfigError(f"{where}.id: {raw['id']!r} must match [a-z0-9_]+")
    variables = _parse_vars(raw.get("vars"), f"{where}.vars")
    used = set()
    for key in ("prompt", "target_caption", "source_caption", "negative_prompt"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where}.{key}: expected a string")
        for name in _placeholders(raw.get(key) or "", f"{where}.{key}"):
            if name not in variables:
                raise ConfigError(f"{where}.{key}: template variable {{{name}}} has no choices in vars")
            used.add(name)
    unused = sorted(set(variables) - used)
    if unused:
        raise ConfigError(f"{where}.vars.{unused[0]}: variable is never used in a template")
    samples = raw.get("samples", 1)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ConfigError(f"{where}.samples: must be an integer >= 1, got {samples!r}")
    return Edit(
        id=raw["id"],
        prompt=raw["prompt"],
        vars=variables,
        target_caption=raw["target_caption"],
        source_caption=raw["source_caption"],
        samples=samples,
        negative_prompt=raw.get("negative_prompt") or "",
        labels=parse_labels(raw.get("labels"), f"{where}.labels"),
        generation=mapping(raw.get("generation"), f"{where}.generation"),
        filter=mapping(raw.get("filter"), f"{where}.filter"),
        annotations=parse_policy(raw.get("annotations"), f"{where}.annotations"),
        region=parse_region(raw.get("region"), f"{where}.region"),
        severity=parse_severity(raw.get("severity"), variables, f"{where}.severity"),
        sketch=parse_sketch(raw.get("sketch"), f"{where}.sketch"),
        consistent_across=parse_consistency(raw.get("consistent_across"), f"{where}.consistent_across") or default_group,
        backend=parse_backend(raw.get("backend"), f"{where}.backend"),
    )


def _parse_corruption_edit(raw: dict, idx: int, path: str, default_group: str, default_backend: str | None) -> Edit:
    """`corruption: fog`, `severity: [1, 2, 3]`: the corruption backend's edit; its prompt is its spec."""
    where = f"{path}: edits[{idx}]"
    allowed = _EDIT_KEYS - {"prompt", "vars", "negative_prompt", "generation", "region", "sketch"}
    check_keys(raw, allowed, _REQUIRED_CORRUPTION, where + ".")
    backend = parse_backend(raw.get("backend"), f"{where}.backend")
    if (backend or default_backend) != "corruption":
        raise ConfigError(f"{where}.corruption: needs backend: corruption (on the edit or the scenario)")
    corruption = parse_corruption(raw["corruption"], f"{where}.corruption")
    levels = parse_levels(raw["severity"], f"{where}.severity")
    # the shared checks of every other key; the prompt placeholder is replaced by each job's spec
    edit = _parse_edit({**{k: v for k, v in raw.items() if k not in ("corruption", "severity")},
                        "prompt": corruption, "backend": "corruption"}, idx, path, default_group, None)
    return replace(edit, corruption=corruption, levels=levels, samples=edit.samples * len(levels))


def parse_class_names(value, where: str) -> dict:
    names = mapping(value, where)
    unknown = sorted(set(names) - set(CLASS_NAMES))
    if unknown:
        raise ConfigError(f"{where}: {', '.join(unknown)}: not a source taxonomy ({', '.join(CLASS_NAMES)})")
    return {k: str(v) for k, v in names.items()}


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    data = read_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario is a mapping with name, domain, description and edits")
    check_keys(data, _TOP_KEYS, _REQUIRED_TOP, f"{path}: ")
    if not _ID.fullmatch(str(data["name"])):
        raise ConfigError(f"{path}: name: {data['name']!r} must match [a-z0-9_]+")
    if data["domain"] not in DOMAINS:
        raise ConfigError(f"{path}: domain: {data['domain']!r} is not one of {', '.join(DOMAINS)}")
    if not isinstance(data["edits"], list) or not data["edits"]:
        raise ConfigError(f"{path}: edits: expected a non-empty list")
    default_group = parse_consistency(data.get("consistent_across"), f"{path}: consistent_across") or "frame"
    backend = parse_backend(data.get("backend"), f"{path}: backend")
    edits = tuple(_parse_edit(raw, i, path, default_group, backend) for i, raw in enumerate(data["edits"]))
    seen = set()
    default_policy = parse_policy(data.get("annotations"), f"{path}: annotations") or "keep"
    top_labels = parse_labels(data.get("labels"), f"{path}: labels")
    for i, e in enumerate(edits):
        if e.id in seen:
            raise ConfigError(f"{path}: edits[{i}].id: duplicate edit id {e.id!r}")
        seen.add(e.id)
        policy = e.annotations or ("keep_and_insert" if e.sketch else default_policy)
        if policy == "keep_and_insert" and "inserted" not in {**top_labels, **e.labels}:
            raise ConfigError(f"{path}: edits[{i}]: annotations keep_and_insert{' (a sketch)' if e.sketch else ''} "
                              "needs labels.inserted (the class of the inserted object's box)")
        if e.sketch and policy != "keep_and_insert":
            raise ConfigError(f"{path}: edits[{i}].annotations: a sketch edit inserts its object: keep_and_insert, "
                              f"not {policy}")
    return Scenario(
        name=data["name"],
        domain=data["domain"],
        description=str(data["description"]),
        edits=edits,
        labels=top_labels,
        generation=mapping(data.get("generation"), f"{path}: generation"),
        filter=mapping(data.get("filter"), f"{path}: filter"),
        annotations=default_policy,
        class_names=parse_class_names(data.get("class_names"), f"{path}: class_names"),
        backend=backend,
        path=path,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a scenario: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start})") from None
    scenario = parse_scenario(text, str(path))
    if path.stem != scenario.name:
        raise ConfigError(f"{path}: name: {scenario.name!r} differs from the file name {path.stem!r}")
    return scenario


def _pick(choices: tuple[tuple[str, float], ...], digest: bytes) -> str:
    u = int.from_bytes(digest[:8], "big") / 2**64 * sum(w for _, w in choices)
    for choice, weight in choices:
        u -= weight
        if u < 0:
            return choice
    return choices[-1][0]


def expand_edit(scenario: Scenario, edit: Edit, source_id: str, run_seed: int, groups: dict | None = None) -> list[Job]:
    """The edit's jobs for one frame. Job ids are per frame; choices, seed and sketch placement derive from
    (run seed, the frame's group under edit.consistent_across, edit, sample), so a group shares them.
    `groups`: the frame's {"sequence": id, "instant": id} (None or missing: the frame is its own group)."""
    group = (groups or {}).get(edit.consistent_across) if edit.consistent_across != "frame" else None
    group = f"{edit.consistent_across}:{group}" if group is not None else None
    jobs = []
    for sample in range(edit.samples):
        job_id = make_job_id(scenario.name, edit.id, sample, source_id)
        # a frame's own group keys on its job id, as before groups existed: the same seeds and choices
        key = job_id if group is None else make_job_id(scenario.name, edit.id, sample, group)
        choices = {name: _pick(opts, stable_hash("var", run_seed, key, name)) for name, opts in edit.vars.items()}
        level = edit.levels[sample % len(edit.levels)] if edit.levels else None
        jobs.append(
            Job(
                job_id=job_id,
                scenario=scenario.name,
                edit_id=edit.id,
                sample_index=sample,
                source_id=source_id,
                seed=make_seed(run_seed, key),
                prompt=spec_prompt(edit.corruption, level) if edit.corruption else edit.prompt.format_map(choices),
                negative_prompt=edit.negative_prompt.format_map(choices),
                target_caption=edit.target_caption.format_map(choices),
                source_caption=edit.source_caption.format_map(choices),
                labels={**scenario.labels, **edit.labels},
                choices=choices,
                severity=level if edit.levels else max((edit.severity[v][choices[v]] for v in edit.severity),
                                                       default=None),
                sketch=_sketch_of(edit, run_seed, key),
                group=group,
            )
        )
    return jobs


def _sketch_of(edit: Edit, run_seed: int, key: str) -> dict | None:
    """Where this job's sketch goes: a fixed function of (run seed, job or group), like its seed and choices."""
    if edit.sketch is None:
        return None
    digest = stable_hash("sketch", run_seed, key)
    return place(edit.sketch, tuple(int.from_bytes(digest[8 * i:8 * i + 8], "big") / 2**64 for i in range(3)))


def expand(scenario: Scenario, source_id: str, run_seed: int) -> list[Job]:
    """Every job of one frame under one scenario, edits in file order then samples."""
    return [job for edit in scenario.edits for job in expand_edit(scenario, edit, source_id, run_seed)]


@dataclass
class EditSettings:
    """Effective per-edit settings after the scenario and edit layers (keyed by settings_key)."""

    generation: GenerationConfig
    trajectory: TrajectoryConfig
    filter: FilterConfig
    # what the edit does to the source's boxes (perception.labels.POLICIES)
    annotations: str = "keep"
    # where the edited object should appear (relative box or region name); None = anywhere
    region: tuple[float, float, float, float] | str | None = None
    # the editor of its jobs (config.BACKENDS): the edit's, else the scenario's, else model.backend
    backend: str = "chronoedit"


def settings_key(scenario: str, edit_id: str) -> str:
    return f"{scenario}/{edit_id}"


def edit_settings(loader: ConfigLoader, scenarios: list[Scenario]) -> dict[str, EditSettings]:
    """Every edit's settings, built once per run (and once per rescoring) from the same layers."""
    settings = {}
    for scenario in scenarios:
        for i, edit in enumerate(scenario.edits):
            built = loader.build(scenario.config_layers(edit))
            policy = edit.annotations or ("keep_and_insert" if edit.sketch else scenario.annotations)
            backend = _backend_of(scenario, i, built.model.backend)
            settings[settings_key(scenario.name, edit.id)] = EditSettings(
                built.generation, built.trajectory, built.filter, policy, edit.region, backend)
    return settings


def _backend_of(scenario: Scenario, idx: int, run_backend: str) -> str:
    """An edit's backend, checked against the run: a corruption edit names its corruption, and the one
    generative editor a run loads is model.backend's (another would need a model of its own)."""
    from .engine.backends import check_backend, runs_on_cpu

    edit, where = scenario.edits[idx], f"{scenario.path or scenario.name}: edits[{idx}]"
    backend = edit.backend or scenario.backend or run_backend
    if backend == "corruption" and edit.corruption is None:
        raise ConfigError(f"{where}: backend corruption needs `corruption:` and `severity:` (a list of levels), "
                          "not a prompt")
    if not runs_on_cpu(backend) and backend != run_backend:
        raise ConfigError(f"{where}.backend: {backend} differs from the run's generative editor model.backend="
                          f"{run_backend}: a run loads one; run this scenario with its own model preset")
    check_backend(backend, f"{where}.backend")
    return backend

