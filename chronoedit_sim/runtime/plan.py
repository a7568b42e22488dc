"""The run plan: frames x scenarios -> jobs, minus finished ones, as a stream.

Nothing here holds the corpus. The source lists frames lazily, `frame_tasks` expands each frame's jobs as the
listing passes it (a run does this in its listing task, runtime.ray_runner, --dry-run on the driver), and the
resume index is a JobIndex (8 bytes a done job). Every job's id and seed come from its identity, so the same
corpus and config give the same jobs in the same order however often they are streamed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from .. import storage
from ..config import Config, ConfigError, ConfigLoader, to_dict
from ..dataset.jobindex import JobIndex
from ..scenario import EditSettings, Scenario, edit_settings, expand_edit, load_scenario, make_job_id, settings_key
from ..sources.base import FrameRef, InputError
from ..perception.taxonomy import map_labels, source_taxonomy
from ..sources.dispatch import detect, iter_input

# one frame's jobs travel together as one task: a scenario that gives a frame more is refused at once
MAX_JOBS_PER_FRAME = 100_000


@dataclass
class PlanCounts:
    frames: int = 0
    planned: int = 0
    # jobs already in the dataset
    skipped: int = 0
    # jobs per "scenario/edit" (settings_key), done ones included
    planned_by_edit: dict[str, int] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return self.planned - self.skipped


@dataclass
class RunPlan:
    cfg: Config
    scenarios: list[Scenario]
    settings: dict[str, EditSettings]
    # hash of everything that decides a row's content; a resumed run must match it
    config_hash: str = ""
    # the jobs already in the dataset
    done: JobIndex = field(default_factory=JobIndex)
    # the source's class names (perception.taxonomy) that inserted objects take; None: the scenario's words
    taxonomy: str | None = None

    @property
    def backends(self) -> set[str]:
        """The backends the plan's edits name (model.backend or a scenario's `backend:`)."""
        return {s.backend for s in self.settings.values()}

    @property
    def jobs_per_frame(self) -> int:
        return sum(e.samples for s in self.scenarios for e in s.edits)

    def refs(self) -> Iterator[FrameRef]:
        return iter_input(self.cfg.input)

    def counts(self) -> PlanCounts:
        """One pass over the listing: frames, and job ids only where some jobs are done."""
        counts = PlanCounts()
        for ref in self.refs():
            counts.frames += 1
            if len(self.done):
                counts.skipped += sum(make_job_id(s.name, e.id, k, ref.source_id) in self.done
                                      for s in self.scenarios for e in s.edits for k in range(e.samples))
        counts.planned = counts.frames * self.jobs_per_frame
        counts.planned_by_edit = {settings_key(s.name, e.id): counts.frames * e.samples
                                  for s in self.scenarios for e in s.edits}
        return counts

    def frame_tasks(self, skip: JobIndex | None = None) -> Iterator[dict]:
        """One task per frame that has jobs not in `skip` (default: the done ones), in plan order:
        {"ref": FrameRef, "jobs": [job dict, ...]}.

        A frame of a sequence source knows its camera stream's previous and next frames (streams are listed
        contiguously and in order, checked here), so each job says which job precedes it (`sequence_link`) and
        the driver scores flicker without any plan-wide map. With the enhancer on, a job carries its consistency
        group's first frame (`anchor`): the listing remembers one frame per group."""
        skip = self.done if skip is None else skip
        anchors: dict[str, FrameRef] | None = {} if self.cfg.enhance.enabled else None
        closed: set = set()
        held = None  # the frame waiting for its next one: (ref, stream, previous source id)
        for ref in itertools.chain(self.refs(), [None]):
            stream = _stream(ref) if ref is not None else None
            if held is not None:
                same = stream is not None and stream == held[1]
                if same and _order(ref) <= _order(held[0]):
                    raise InputError(f"input: {ref.source_id} is listed after {held[0].source_id} in sequence "
                                     f"{ref.sequence_id} but comes before it")
                if held[1] is not None and not same:
                    closed.add(held[1])
                task = self._task(held[0], held[2], ref.source_id if same else None, skip, anchors)
                if task["jobs"]:
                    yield task
                previous = held[0].source_id if same else None
            else:
                previous = None
            if stream is not None and previous is None and stream in closed:
                raise InputError(f"input: the frames of sequence {ref.sequence_id} (camera {stream[1]}) are not "
                                 f"listed together ({ref.source_id} comes after another sequence)")
            held = (ref, stream, previous) if ref is not None else None

    def _task(self, ref: FrameRef, previous: str | None, following: str | None, skip: JobIndex,
              anchors: dict | None) -> dict:
        jobs = []
        groups = {"sequence": ref.sequence_id, "instant": ref.instant_id}
        for scenario in self.scenarios:
            for edit in scenario.edits:
                for job in expand_edit(scenario, edit, ref.source_id, self.cfg.seed, groups):
                    if anchors is not None and job.group is not None:
                        anchors.setdefault(job.group, ref)
                    if job.job_id in skip:
                        continue
                    row = {**asdict(job), "source_uri": ref.source_uri, "sequence_id": ref.sequence_id,
                           "instant_id": ref.instant_id,
                           "backend": self.settings[settings_key(scenario.name, edit.id)].backend}
                    # the inserted object in the source's class names: one category per class
                    row["labels"] = map_labels(job.labels, self.taxonomy, scenario.class_names)
                    if ref.caption:  # the input's own caption describes this frame better
                        row["source_caption"] = ref.caption
                    if anchors is not None and job.group is not None:
                        row["anchor"] = anchors[job.group]
                    if _stream(ref) is not None:
                        before = make_job_id(scenario.name, edit.id, job.sample_index, previous) if previous else None
                        after = make_job_id(scenario.name, edit.id, job.sample_index, following) if following else None
                        row["sequence_link"] = {"previous": before, "previous_done": before in self.done if before else False,
                                                "has_next": after is not None and after not in skip}
                    jobs.append(row)
        return {"ref": ref, "jobs": jobs}


def _stream(ref: FrameRef):
    """A camera stream of a sequence (None: the frame is not part of one)."""
    return (ref.sequence_id, ref.meta.get("camera")) if ref.sequence_id is not None else None


def _order(ref: FrameRef) -> tuple:
    """A frame's place in its stream."""
    return (ref.timestamp_s if ref.timestamp_s is not None else ref.frame_index, ref.source_id)


# config sections that change speed, layout and previews, not what a row says
NOT_CONTENT = ("runtime", "encode", "output", "report")
# keys of the other sections that say where a node keeps its caches, not what a row says. model.compile_cache_dir
# is one too but stays hashed: datasets made before these keys hash it, and leaving it out would refuse their resume
NOT_CONTENT_KEYS = {"model": ("cache_dir",), "input": ("video_cache_dir", "video_cache_gb")}


def content_config(config: dict) -> dict:
    """A config (as recorded in run.json) without what does not change the rows: what the config hash covers."""
    return {k: ({key: value for key, value in v.items() if key not in NOT_CONTENT_KEYS[k]} if k in NOT_CONTENT_KEYS
                and isinstance(v, dict) else v) for k, v in config.items() if k not in NOT_CONTENT}


def content_hash(cfg: Config, scenarios: list[Scenario], recorded: dict | None = None) -> str:
    """Config minus runtime/encode/output/report knobs (they change speed, layout and previews, not what a row
    says) plus scenario texts.

    The input path is part of it (resolved): source ids are relative to it, so a second input
    folder resumed into the same output would otherwise be taken for frames already done.

    `recorded`: the config a dataset recorded (run.json); the hash is then the one the toolkit that made the
    dataset would give this config: keys added since are left out while they hold their defaults.
    """
    content = comparable_content(cfg, recorded)
    content["input"]["path"] = storage.absolute(cfg.input.path)
    content["scenarios"] = sorted(s.sha256 for s in scenarios)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def comparable_content(cfg: Config, recorded: dict | None = None) -> dict:
    """content_config of `cfg`; with `recorded` (a dataset's run.json config), as the toolkit that made the
    dataset saw it: the keys added since are left out while they hold their defaults."""
    content = content_config(to_dict(cfg))
    if recorded is None:
        return content
    return _as_recorded(content, content_config(recorded), content_config(to_dict(Config())))


def _as_recorded(content: dict, recorded: dict, default: dict) -> dict:
    """`content` without the keys `recorded` lacks whose values are their defaults: a key is added with the
    default that keeps what the toolkit did before it, so a dataset made before it resumes; set otherwise, the
    key stays and the hashes differ."""
    kept = {}
    for key, value in content.items():
        if key not in recorded:
            if key not in default or value != default[key]:
                kept[key] = value
        elif isinstance(value, dict) and isinstance(recorded[key], dict):
            kept[key] = _as_recorded(value, recorded[key], default.get(key) or {})
        else:
            kept[key] = value
    return kept


def make_plan(loader: ConfigLoader, scenario_files: list[str], done: JobIndex | None = None) -> RunPlan:
    """The plan, checked: config and scenarios, a frame's job count, and the input's first frame (a missing or
    empty input is an error here, before Ray starts). Nothing else is listed."""
    cfg = loader.build()
    scenarios = [load_scenario(f) for f in scenario_files]
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"scenarios: the same scenario name appears twice: {names}")
    plan = RunPlan(cfg=cfg, scenarios=scenarios, settings=edit_settings(loader, scenarios),
                   config_hash=content_hash(cfg, scenarios), done=done if done is not None else JobIndex(),
                   taxonomy=source_taxonomy(detect(cfg.input), bool(cfg.input.annotations)))
    if plan.jobs_per_frame > MAX_JOBS_PER_FRAME:
        raise ConfigError(f"scenarios: each frame expands to {plan.jobs_per_frame:,} jobs (edits x samples), more "
                          f"than {MAX_JOBS_PER_FRAME:,}: a frame's jobs travel as one task; lower `samples`")
    next(plan.refs(), None)
    return plan


def describe(plan: RunPlan, limit: int = 5) -> list[str]:
    """Lines for --dry-run: counts and the first jobs, both streamed."""
    counts = plan.counts()
    lines = [
        f"frames: {counts.frames}  scenarios: {', '.join(s.name for s in plan.scenarios)}",
        f"jobs: {counts.planned} planned, {counts.skipped} already done, {counts.remaining} to run",
    ]
    jobs = (job for task in plan.frame_tasks() for job in task["jobs"])
    for job in itertools.islice(jobs, limit):
        lines.append(f"  {job['job_id']} {job['scenario']}/{job['edit_id']}#{job['sample_index']} "
                     f"{job['source_id']} seed={job['seed']}: {job['prompt'][:80]}")
    return lines
