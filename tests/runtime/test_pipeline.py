"""The stage list turned into resources, from what the cluster advertises (no Ray needed)."""

from __future__ import annotations

from PIL import Image

from chronoedit_sim.config import ConfigLoader
from chronoedit_sim.runtime.pipeline import BuildContext, Cluster, build_stages, describe_actors
from chronoedit_sim.runtime.plan import make_plan


def plan_for(overrides, scenario, frames):
    Image.new("RGB", (32, 16)).save(frames / "f.png")
    return make_plan(ConfigLoader(["model=tiny", "model.path=/unused", f"input.path={frames}", *overrides]),
                     [str(scenario)])


def stages_for(overrides, scenario, frames, cpus=16.0, gpus=8.0):
    plan = plan_for(overrides, scenario, frames)
    return {s.name: s.resources for s in build_stages(BuildContext(plan, "run", Cluster(cpus, gpus)))}


def test_with_clip_the_scorer_is_an_actor_beside_each_editor_on_its_gpu(one_edit_scenario, tmp_path):
    res = stages_for([], one_edit_scenario, tmp_path)
    assert (res["edit"].actors, res["edit"].gpus) == (8, 0.75)
    assert (res["score"].actors, res["score"].gpus) == (1, 0.25)
    assert res["read"].actors == res["encode"].actors == 0


def test_without_clip_the_scores_run_as_tasks_and_editors_take_whole_gpus(one_edit_scenario, tmp_path):
    res = stages_for(["scoring.clip.enabled=false"], one_edit_scenario, tmp_path)
    assert (res["edit"].actors, res["edit"].gpus) == (8, 1.0)
    assert (res["score"].actors, res["score"].gpus) == (0, 0.0)
    # a task stage gets a share of the CPUs the 8 editors (1 CPU each) leave: (16 - 8) / 4, at most 1
    assert res["score"].cpus == res["read"].cpus == 1.0


def test_the_plan_is_said_out_loud_per_actor_stage(one_edit_scenario, tmp_path):
    plan = plan_for(["scoring.clip.enabled=false"], one_edit_scenario, tmp_path)
    stages = build_stages(BuildContext(plan, "run", Cluster(2.0, 0.0)))
    assert describe_actors(stages) == "edit 1 x (cpus=1, gpus=0) -> CPU"


def test_half_a_gpu_per_editor_runs_two_per_gpu_beside_the_scorer(one_edit_scenario, tmp_path):
    """An H200 holds two editors (52.6 GiB peak each, docs/PERFORMANCE.md): gpus_per_actor=0.5."""
    import pytest

    from chronoedit_sim.config import ConfigError

    half = ["runtime.gpus_per_actor=0.5", "scoring.clip.enabled=false"]
    res = stages_for(half, one_edit_scenario, tmp_path, cpus=64.0)
    assert (res["edit"].actors, res["edit"].gpus) == (16, 0.5)
    # with CLIP, its actor's quarter GPU leaves room for 15 editors, not 16 (the 16th would never start)
    res = stages_for(["runtime.gpus_per_actor=0.5"], one_edit_scenario, tmp_path, cpus=64.0)
    assert (res["edit"].actors, res["score"].gpus) == (15, 0.25)
    # 16 editors of 1 CPU on 16 CPUs would leave Ray Data's tasks nothing and hang: their shares shrink to fit
    res = stages_for(half, one_edit_scenario, tmp_path)
    assert (res["edit"].actors, res["edit"].cpus, res["read"].cpus) == (16, 0.9687, 0.1251)
    # 256 of them would get under a tenth of a CPU each: refused
    with pytest.raises(ConfigError, match="the actors hold 256 of the cluster's 16 CPUs and leave nothing for the "
                                          "pipeline's tasks, even at under 0.1 CPU each"):
        stages_for(["scoring.clip.enabled=false", "runtime.num_actors=256"], one_edit_scenario, tmp_path, gpus=0.0)


def test_the_defaults_fit_a_two_core_machine_with_a_notice(one_edit_scenario, tmp_path, caplog):
    """The editor's 1 CPU, CLIP's 0.5 and the VLM's 0.5 held both cores of a 2-core machine, which was refused
    (#24): they are scaled to leave the pipeline's tasks half a core, and the run says so."""
    from chronoedit_sim.runtime.vlm_service import VlmClient

    plan = plan_for(["enhance.enabled=true"], one_edit_scenario, tmp_path)
    ctx = BuildContext(plan, "run", Cluster(2.0, 0.0), vlm=VlmClient(plan.cfg.vlm, actors=[]))
    res = {s.name: s.resources for s in build_stages(ctx)}
    assert (res["edit"].cpus, res["score"].cpus, res["read"].cpus) == (0.6666, 0.3333, 0.125)
    assert caplog.messages == ["notice: the actors asked for 2 of the cluster's 2 CPUs (the VLM's 0.5 included), "
                               "leaving the pipeline's tasks less than 0.5; their shares are scaled by 0.67 to fit: "
                               "edit 0.6666, score 0.3333"]


def test_an_offloaded_text_encoder_gets_the_runs_texts_and_they_must_fit_the_cache(one_edit_scenario, tmp_path):
    import pytest

    from chronoedit_sim.config import ConfigError

    plan = plan_for(["model.offload_text_encoder=true"], one_edit_scenario, tmp_path)
    (job,) = next(plan.frame_tasks())["jobs"]
    edit = build_stages(BuildContext(plan, "run", Cluster(2.0, 0.0)))[1]
    assert edit.prompt_texts == [job["prompt"], ""]  # the tiny preset guides: the negative prompt too
    assert build_stages(BuildContext(plan_for([], one_edit_scenario, tmp_path), "run", Cluster(2.0, 0.0)))[1] \
        .prompt_texts is None
    with pytest.raises(ConfigError, match="2 distinct prompt texts, more than model.cache_prompts=1"):
        build_stages(BuildContext(plan_for(["model.offload_text_encoder=true", "model.cache_prompts=1"],
                                           one_edit_scenario, tmp_path), "run", Cluster(2.0, 0.0)))
