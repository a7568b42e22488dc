"""The run plan, built on the driver before Ray starts: frames x scenarios -> jobs, minus finished ones.

Listing frames needs no decoding, and every job's id and seed come from its
identity, so the plan (and the resume skip) costs no model work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Config, ConfigError, ConfigLoader, to_dict
from ..scenario import EditSettings, Scenario, edit_settings, expand_edit, load_scenario, settings_key
from ..sources.base import FrameRef
from ..perception.taxonomy import map_labels, source_taxonomy
from ..sources.dispatch import detect, list_input


@dataclass
class RunPlan:
    cfg: Config
    scenarios: list[Scenario]
    frames: list[FrameRef]
    settings: dict[str, EditSettings]
    # one task per frame that still has jobs: {"ref": FrameRef, "jobs": [job dict, ...]}
    tasks: list[dict] = field(default_factory=list)
    planned: int = 0
    # jobs per "scenario/edit" (settings_key), done ones included
    planned_by_edit: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    # hash of everything that decides a row's content; a resumed run must match it
    config_hash: str = ""
    # sequence sources: each pending job's previous job in its camera stream (same scenario, edit and sample;
    # None for the first frame), which may be done; jobs of frames without a sequence are not in it
    previous: dict[str, str | None] = field(default_factory=dict)
    # the done jobs a pending job follows (a resumed run reads their frames back from the dataset)
    resume_previous: set[str] = field(default_factory=set)
    # each consistency group's first frame in stream order: what a group's one prompt rewrite looks at
    anchors: dict[str, FrameRef] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return self.planned - self.skipped


# config sections that change speed, layout and previews, not what a row says
NOT_CONTENT = ("runtime", "encode", "output", "report")


def content_hash(cfg: Config, scenarios: list[Scenario]) -> str:
    """Config minus runtime/encode/output/report knobs (they change speed, layout and previews, not what a row
    says) plus scenario texts.

    The input path is part of it (resolved): source ids are relative to it, so a second input
    folder resumed into the same output would otherwise be taken for frames already done.
    """
    content = {k: v for k, v in to_dict(cfg).items() if k not in NOT_CONTENT}
    content["input"]["path"] = str(Path(cfg.input.path).expanduser().resolve())
    content["scenarios"] = sorted(s.sha256 for s in scenarios)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_plan(loader: ConfigLoader, scenario_files: list[str], done: set[str] = frozenset()) -> RunPlan:
    cfg = loader.build()
    scenarios = [load_scenario(f) for f in scenario_files]
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"scenarios: the same scenario name appears twice: {names}")
    settings = edit_settings(loader, scenarios)
    frames = list_input(cfg.input)
    taxonomy = source_taxonomy(detect(cfg.input), bool(cfg.input.annotations))
    plan = RunPlan(cfg=cfg, scenarios=scenarios, frames=frames, settings=settings,
                   config_hash=content_hash(cfg, scenarios))
    chains: dict[tuple, list[tuple]] = {}
    first: dict[str, tuple] = {}
    for ref in frames:
        jobs = []
        # a camera stream of a sequence, and this frame's place in it
        stream = (ref.sequence_id, ref.meta.get("camera")) if ref.sequence_id is not None else None
        order = (ref.timestamp_s if ref.timestamp_s is not None else ref.frame_index, ref.source_id)
        for scenario in scenarios:
            for edit in scenario.edits:
                key = settings_key(scenario.name, edit.id)
                groups = {"sequence": ref.sequence_id, "instant": ref.instant_id}
                for job in expand_edit(scenario, edit, ref.source_id, cfg.seed, groups):
                    plan.planned += 1
                    plan.planned_by_edit[key] = plan.planned_by_edit.get(key, 0) + 1
                    if stream is not None:
                        chains.setdefault((stream, key, job.sample_index), []).append((order, job.job_id))
                    if job.group is not None and (job.group not in first or order < first[job.group][0]):
                        first[job.group] = (order, ref)
                    if job.job_id in done:
                        plan.skipped += 1
                    else:
                        row = {**asdict(job), "source_uri": ref.source_uri, "sequence_id": ref.sequence_id,
                               "instant_id": ref.instant_id}
                        # the inserted object in the source's class names: one category per class
                        row["labels"] = map_labels(job.labels, taxonomy, scenario.class_names)
                        if ref.caption:  # the input's own caption describes this frame better
                            row["source_caption"] = ref.caption
                        jobs.append(row)
        if jobs:
            plan.tasks.append({"ref": ref, "jobs": jobs})
    for chain in chains.values():
        previous = None
        for _, job_id in sorted(chain):
            if job_id not in done:
                plan.previous[job_id] = previous
            previous = job_id
    plan.resume_previous = {p for p in plan.previous.values() if p in done}
    plan.anchors = {group: ref for group, (_, ref) in first.items()}
    return plan


def describe(plan: RunPlan, limit: int = 5) -> list[str]:
    """Lines for --dry-run: counts and the first jobs."""
    lines = [
        f"frames: {len(plan.frames)}  scenarios: {', '.join(s.name for s in plan.scenarios)}",
        f"jobs: {plan.planned} planned, {plan.skipped} already done, {plan.remaining} to run",
    ]
    shown = 0
    for task in plan.tasks:
        for job in task["jobs"]:
            if shown == limit:
                return lines
            lines.append(f"  {job['job_id']} {job['scenario']}/{job['edit_id']}#{job['sample_index']} "
                         f"{job['source_id']} seed={job['seed']}: {job['prompt'][:80]}")
            shown += 1
    return lines


def output_is_compatible(manifest: dict | None, plan: RunPlan) -> str | None:
    """None when OUT may be resumed with this plan, else why not."""
    if manifest is None:
        return None
    if manifest.get("config_hash") != plan.config_hash:
        return (f"the output was made with a different config or scenarios (config hash "
                f"{manifest.get('config_hash')} != {plan.config_hash}); use another --output or --overwrite")
    return None
