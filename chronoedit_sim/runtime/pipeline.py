"""The run's stages, in order. Adding a stage is its module, its config section and one entry here.

Each entry builds one stage from the plan and the cluster's advertised resources (what Ray
reports, never a probe of the driver's own hardware). Task stages that leave `cpus` unset get
a share of what the actor stages leave, never all of it: an actor pool that holds every CPU
starves Ray Data's own tasks and the stream hangs without an error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from ..config import SEQUENCE_SCORES, ConfigError
from ..engine.backends import runs_on_cpu
from ..scenario import settings_key
from ..stages.base import Resources, Stage
from ..stages.edit import EditStage
from ..stages.encode import EncodeStage
from ..stages.enhance import EnhanceStage
from ..stages.localize import LocalizeStage
from ..stages.read import ReadStage
from ..stages.score import ScoreStage
from ..stages.sketch import SketchStage
from .plan import RunPlan
from .vlm_service import VlmClient, vlm_gpus

log = logging.getLogger(__name__)
# what the pipeline's tasks (reading, encoding, writing) keep at least, and the least CPU share an actor is
# scaled down to before a run is refused: an editor on a twentieth of a core is a mistake, not a plan
TASKS_MIN, ACTOR_MIN = 0.5, 0.1


@dataclass(frozen=True)
class Cluster:
    # what Ray advertises for the whole cluster
    cpus: float
    gpus: float


@dataclass(frozen=True)
class BuildContext:
    plan: RunPlan
    run_id: str
    cluster: Cluster
    # the run's bookkeeping folder (OUT/_state): the enhancer keeps its rewrites there
    state_dir: str = ""
    # the client of the run's VLM actors (vlm_service), when the enhancer or the judge is on
    vlm: VlmClient | None = None


def _score_gpus(ctx: BuildContext) -> float:
    # on GPU clusters the scorer takes a quarter of one GPU beside an editor; CLIP needs little
    sc = ctx.plan.cfg.scoring
    if not sc.clip.enabled:
        return 0.0
    return sc.gpus_per_actor if sc.gpus_per_actor is not None else (0.25 if ctx.cluster.gpus else 0.0)


def _vlm_gpus(ctx: BuildContext) -> float:
    # what the VLM actors hold: not there for editors
    return vlm_gpus(ctx.plan.cfg, ctx.cluster.gpus) * ctx.plan.cfg.vlm.num_actors if ctx.vlm else 0.0


def read_stage(ctx: BuildContext) -> Stage:
    cfg = ctx.plan.cfg
    return ReadStage(cfg.input, cfg.output, ctx.run_id, Resources(cpus=None))


def sketch_stage(ctx: BuildContext) -> Stage | None:
    # only where a scenario draws sketches: a stage a run does not need is not in its pipeline
    if not any(e.sketch for sc in ctx.plan.scenarios for e in sc.edits):
        return None
    return SketchStage(Resources(cpus=None), batch_size=ctx.plan.cfg.input.read_batch_size)


def enhance_stage(ctx: BuildContext) -> Stage | None:
    # the model work is the VLM actors'; the stage itself only waits on them, so a task's small CPU share
    cfg = ctx.plan.cfg
    if not cfg.enhance.enabled:
        return None
    return EnhanceStage(ctx.vlm, cfg.enhance, ctx.state_dir, Resources(cpus=None), max_pixels=cfg.input.max_pixels, min_side=cfg.input.min_side)


def corrupt_stage(ctx: BuildContext) -> Stage | None:
    """The weight-free corruption backend as CPU tasks, before the GPU editor (which passes its rows through):
    a run of corruptions only starts no actor and loads no model."""
    if "corruption" not in ctx.plan.backends:
        return None
    rt = ctx.plan.cfg.runtime
    return EditStage(ctx.plan.cfg.model, ctx.plan.settings, Resources(cpus=None), rt.batch_size,
                     batch_samples=rt.batch_samples, backend="corruption", name="corrupt")


def edit_stage(ctx: BuildContext) -> Stage | None:
    """One editor per GPU by default, each taking what the scorer leaves of its GPU (Ray's fractions
    are accounting: the editor still sees the whole device). None when every edit is a CPU backend's."""
    if all(runs_on_cpu(b) for b in ctx.plan.backends):
        return None
    rt, gpus_in_cluster = ctx.plan.cfg.runtime, ctx.cluster.gpus
    if rt.gpus_per_actor is not None:
        gpus = rt.gpus_per_actor
        # what the score actors take is not there for editors: more would wait for a GPU forever
        free = gpus_in_cluster - _score_gpus(ctx) * ctx.plan.cfg.scoring.num_actors - _vlm_gpus(ctx)
        actors = rt.num_actors or (max(1, int(free // gpus)) if gpus else 1)
    else:
        gpus = (1.0 - _score_gpus(ctx)) if gpus_in_cluster else 0.0
        actors = rt.num_actors or max(1, int(gpus_in_cluster - _vlm_gpus(ctx)))
    res = Resources(cpus=rt.cpus_per_actor, gpus=gpus, actors=actors, queue=rt.queue_per_actor,
                    spread=rt.spread_actors)
    model, upscale = ctx.plan.cfg.model, ctx.plan.cfg.upscale
    texts = run_prompt_texts(ctx.plan) if model.offload_text_encoder else None
    if texts is not None and upscale.enabled:  # the upscaler pass's prompt, and its empty negative one
        texts += [t for t in (upscale.prompt, "") if t not in texts]
    return EditStage(model, ctx.plan.settings, res, rt.batch_size, batch_samples=rt.batch_samples,
                     prompt_texts=texts, upscale=upscale, backend=model.backend)


def run_prompt_texts(plan: RunPlan) -> list[str]:
    """The distinct texts the plan's jobs encode, in plan order: each prompt, and its negative prompt
    where the edit uses guidance (one pass over the streamed plan)."""
    texts = {}
    for task in plan.frame_tasks():
        for job in task["jobs"]:
            if runs_on_cpu(job["backend"]):  # a spec, not a text for the encoder
                continue
            guided = plan.settings[settings_key(job["scenario"], job["edit_id"])].generation.guidance_scale > 1
            for text in (job["prompt"], job["negative_prompt"]) if guided else (job["prompt"],):
                texts.setdefault(text, None)
    if len(texts) > plan.cfg.model.cache_prompts:
        raise ConfigError(f"model.offload_text_encoder: the run has {len(texts)} distinct prompt texts, more than "
                          f"model.cache_prompts={plan.cfg.model.cache_prompts} embeddings an editor keeps; "
                          "raise model.cache_prompts or leave the text encoder on the GPU")
    return list(texts)


def encode_stage(ctx: BuildContext) -> Stage:
    enc = ctx.plan.cfg.encode
    return EncodeStage(ctx.plan.settings, Resources(cpus=enc.cpus, actors=enc.num_actors), enc.batch_size,
                       thumbnail_side=ctx.plan.cfg.report.thumbnail_side)


def localize_stage(ctx: BuildContext) -> Stage:
    # weight-free CPU work: tasks like encode's, which Ray Data fuses with its neighbours
    return LocalizeStage(ctx.plan.settings, ctx.plan.cfg.localize, Resources(cpus=None),
                         batch_size=ctx.plan.cfg.runtime.batch_size)


def score_stage(ctx: BuildContext) -> Stage:
    sc = ctx.plan.cfg.scoring
    # without CLIP there is no model to keep loaded: the weight-free scores run as Ray tasks, and no
    # actor holds a CPU (or starts a process that imports torch) for nothing
    res = (Resources(cpus=sc.cpus_per_actor, gpus=_score_gpus(ctx), actors=sc.num_actors) if sc.clip.enabled
           else Resources(cpus=None))
    # rows leave as they come: a larger batch would hold finished edits back from the sink
    return ScoreStage(ctx.plan.settings, sc.clip, res, batch_size=ctx.plan.cfg.runtime.batch_size,
                      flow_max_side=sc.flow_max_side, judge=ctx.vlm if ctx.plan.cfg.judge.enabled else None,
                      deferred=SEQUENCE_SCORES)


PIPELINE = [read_stage, sketch_stage, enhance_stage, corrupt_stage, edit_stage, encode_stage, localize_stage,
            score_stage]


def build_stages(ctx: BuildContext) -> list[Stage]:
    """The run's stages; an entry may return None when the run does not need it."""
    stages = [s for s in (make(ctx) for make in PIPELINE) if s is not None]
    check_gpus(stages, _vlm_gpus(ctx), ctx.cluster)
    vlm = ctx.plan.cfg.vlm
    return share_cpus(stages, ctx.cluster, reserved=vlm.cpus_per_actor * vlm.num_actors if ctx.vlm else 0.0)


def check_gpus(stages: list[Stage], reserved: float, cluster: Cluster) -> None:
    """Actors asking for more GPUs than the cluster has would wait for them forever, without an error."""
    asked = {s.name: s.resources.gpus * s.resources.actors for s in stages if s.resources.gpus}
    if reserved:
        asked["vlm"] = reserved
    if sum(asked.values()) > cluster.gpus + 1e-9:
        wants = ", ".join(f"{name} {n:g}" for name, n in asked.items())
        raise ConfigError(f"the actors ask for {sum(asked.values()):g} GPUs ({wants}) and the cluster has "
                          f"{cluster.gpus:g}: lower runtime.num_actors, vlm.gpus_per_actor or scoring.gpus_per_actor")


def share_cpus(stages: list[Stage], cluster: Cluster, reserved: float = 0.0) -> list[Stage]:
    """Task stages without a declared CPU count get a share of what the actors (and `reserved`: actors outside
    the stages, the VLM's) leave, never all of it. Actors that would leave the tasks less than TASKS_MIN have
    their CPU shares scaled down to fit, with a notice (Ray's CPUs are accounting: a GPU-bound actor runs on
    less); only shares that would fall under ACTOR_MIN are refused."""
    actors = [s for s in stages if s.resources.actors and s.resources.cpus]
    own = sum(s.resources.cpus * s.resources.actors for s in actors)
    room = cluster.cpus - reserved - TASKS_MIN
    if own > room + 1e-9:
        scale = max(room, 0.0) / own if own else 0.0
        if not actors or scale * min(s.resources.cpus for s in actors) < ACTOR_MIN:
            # Ray Data's read and write tasks would wait for a CPU forever, without an error
            raise ConfigError(f"the actors hold {reserved + own:g} of the cluster's {cluster.cpus:g} CPUs and leave "
                              f"nothing for the pipeline's tasks, even at under {ACTOR_MIN:g} CPU each: lower "
                              "runtime.num_actors, runtime.cpus_per_actor, scoring.cpus_per_actor or vlm.cpus_per_actor")
        for stage in actors:
            # Ray counts resources in steps of 1/10000
            stage.resources = replace(stage.resources, cpus=math.floor(stage.resources.cpus * scale * 1e4) / 1e4)
        log.warning("notice: the actors asked for %g of the cluster's %g CPUs%s, leaving the pipeline's tasks less "
                    "than %g; their shares are scaled by %.2f to fit: %s", reserved + own, cluster.cpus,
                    f" (the VLM's {reserved:g} included)" if reserved else "", TASKS_MIN, scale,
                    ", ".join(f"{s.name} {s.resources.cpus:g}" for s in actors))
    held = reserved + sum(s.resources.cpus * s.resources.actors for s in actors)
    share = max(min(math.floor(max(cluster.cpus - held, TASKS_MIN) / 4 * 1e4) / 1e4, 1.0), 0.1)
    for stage in stages:
        if stage.resources.cpus is None:
            stage.resources = replace(stage.resources, cpus=share)
    return stages


def describe_actors(stages: list[Stage]) -> str:
    """E.g. "edit 1 x (cpus=1.0, gpus=0.0) -> CPU; score 1 x (...)": said out loud, since a run without
    GPUs edits on CPU, about 1000x slower for the real model."""
    parts = []
    for s in stages:
        r = s.resources
        if r.actors:
            parts.append(f"{s.name} {r.actors} x (cpus={r.cpus:g}, gpus={r.gpus:g}) -> {'GPU' if r.gpus else 'CPU'}")
    return "; ".join(parts)
