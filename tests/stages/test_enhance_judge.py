"""The prompt enhancer and the VLM judge (#12) on the tiny RANDOM Qwen-VL: its rewrites are noise and its
ratings meaningless, so what is checked is where they go. Each (frame, instruction) is rewritten once, across
samples and across a resumed run; the rewrite is what the editor is given; the judge's scores are scores like
CLIP's (filter bounds, rescoring); one VLM actor serves both stages in a Ray run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import NO_CLIP_BOUNDS, stage_rows, write_scored_kitti

from chronoedit_sim.config import ConfigError, load_config
from chronoedit_sim.runtime.pipeline import BuildContext, Cluster, build_stages, edit_stage, enhance_stage, score_stage
from chronoedit_sim.runtime.vlm_service import VlmClient
from chronoedit_sim.scoring import metrics

SCENARIO = ("name: two_edits\ndomain: driving\ndescription: test\nlabels: {inserted: car}\nannotations: keep\n"
            "edits:\n  - id: car\n    prompt: 'Add a red car.'\n    samples: 3\n    target_caption: a red car\n"
            "    source_caption: a street\n"
            "  - id: rain\n    prompt: 'Make it rain.'\n    target_caption: rain\n    source_caption: a street\n")


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    return write_scored_kitti(tmp_path_factory.mktemp("enhance") / "kitti")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenarios") / "two_edits.yaml"
    path.write_text(SCENARIO)
    return path


class Counting(VlmClient):
    """The client of a model loaded once for the module, counting what each stage asks."""

    def __init__(self, model):
        super().__init__(model.cfg)
        self.loaded, self.asked = model, []

    def connect(self):
        self.model, self.identity = self.loaded, self.loaded.identity

    def enhance(self, key, items, max_new_tokens):
        self.asked.append([text for _, text in items])
        return super().enhance(key, items, max_new_tokens)


def test_each_frame_and_instruction_is_rewritten_once_even_across_samples_and_a_resumed_run(
        tmp_path, kitti, scenario, tiny_overrides, tiny_vlm):
    overrides = [*tiny_overrides, "enhance.enabled=true", "input.max_frames=2"]
    client = Counting(tiny_vlm)
    rows = stage_rows([scenario], kitti, overrides, [enhance_stage], vlm=client, state_dir=str(tmp_path))
    assert len(rows) == 8  # 2 frames x (3 samples of the car + 1 rain)
    # one call for the batch (here both frames), each distinct (frame, instruction) once in it
    assert client.asked == [["Add a red car.", "Make it rain."] * 2]
    for row in rows:
        direct = tiny_vlm.enhance([(row["_source_rgb"], row["prompt_original"])], 8)[0]
        assert row["prompt"] == direct != row["prompt_original"]
        assert row["enhancer"] == tiny_vlm.identity and json.loads(row["enhancer"])["random_weights"] is True
    assert {r["prompt_original"] for r in rows} == {"Add a red car.", "Make it rain."}
    # the call's time goes to the job that asked; the samples that reused it took none
    assert sorted(r["timings_ms"]["enhance_ms"] > 0 for r in rows) == [False] * 4 + [True] * 4
    assert len(list((tmp_path / "enhance").glob("*.json"))) == 4

    again = Counting(tiny_vlm)
    resumed = stage_rows([scenario], kitti, overrides, [enhance_stage], vlm=again, state_dir=str(tmp_path))
    assert again.asked == [] and [r["prompt"] for r in resumed] == [r["prompt"] for r in rows]


def test_an_edit_consistent_across_an_episode_gets_one_rewrite_from_its_first_frame(tmp_path, tiny_overrides, tiny_vlm):
    from helpers import make_dataset

    source = make_dataset(tmp_path / "lerobot")
    scenario = tmp_path / "light.yaml"
    scenario.write_text("name: light\ndomain: robotics\ndescription: t\nconsistent_across: sequence\nedits:\n"
                        "  - id: relight\n    prompt: Relight it.\n    target_caption: x\n    source_caption: y\n")
    client = Counting(tiny_vlm)
    rows = stage_rows([scenario], source, [*tiny_overrides, "enhance.enabled=true", "input.cameras=[observation.images.top]"],
                      [enhance_stage], vlm=client, state_dir=str(tmp_path / "state"))
    assert len(rows) == 10 and client.asked == [["Relight it."], ["Relight it."]]  # one per episode, alone
    by_episode = {}
    for row in rows:
        by_episode.setdefault(row["sequence_id"], set()).add(row["prompt"])
    assert {k: len(v) for k, v in by_episode.items()} == {"episode_000000": 1, "episode_000001": 1}
    first = {r["sequence_id"]: r for r in rows if r["episode"]["frame_index"] == 0}
    for episode, prompts in by_episode.items():
        assert prompts == {tiny_vlm.enhance([(first[episode]["_source_rgb"], "Relight it.")], 8)[0]}


def test_a_group_rewrite_is_kept_first_come(tmp_path):
    from chronoedit_sim.stages.enhance import _store

    path = tmp_path / "key.json"
    assert _store(path, {"prompt": "first"}) == "first"
    assert _store(path, {"prompt": "second"}) == "first"  # a second task that made it too takes the stored text
    assert [p.name for p in tmp_path.iterdir()] == ["key.json"]


def test_the_editor_is_given_the_rewrite(tmp_path, kitti, one_edit_scenario, tiny_overrides, tiny_vlm, editor):
    overrides = [*tiny_overrides, "enhance.enabled=true", "input.max_frames=1"]
    (row,) = stage_rows([one_edit_scenario], kitti, overrides, [enhance_stage, edit_stage], vlm=Counting(tiny_vlm),
                        state_dir=str(tmp_path))
    gen = load_config(tiny_overrides).generation
    rewritten = editor.edit(row["_source_rgb"], row["prompt"], seed=row["seed"], gen=gen)
    original = editor.edit(row["_source_rgb"], row["prompt_original"], seed=row["seed"], gen=gen)
    np.testing.assert_array_equal(row["_edited_rgb"], rewritten.edited)
    assert not np.array_equal(row["_edited_rgb"], original.edited)


def test_the_judge_scores_reach_the_filter(kitti, one_edit_scenario, tiny_overrides, tiny_vlm):
    base = [*tiny_overrides, *NO_CLIP_BOUNDS, "scoring.clip.enabled=false", "judge.enabled=true", "input.max_frames=1"]
    (row,) = stage_rows([one_edit_scenario], kitti, base, [edit_stage, score_stage], vlm=Counting(tiny_vlm))
    source = metrics.resize_to(row["_source_rgb"], row["_edited_rgb"].shape[:2])
    [(consistency, quality)] = tiny_vlm.judge([(source, row["_edited_rgb"], row["prompt"])])
    assert (row["scores"]["vlm_consistency"], row["scores"]["vlm_quality"]) == (consistency, quality)
    assert row["judge"] == tiny_vlm.identity and row["timings_ms"]["judge_ms"] > 0 and row["keep"] is True
    bound = round(quality + 0.01, 4)
    (strict,) = stage_rows([one_edit_scenario], kitti, [*base, f"filter.vlm_quality_min={bound}"],
                           [edit_stage, score_stage], vlm=Counting(tiny_vlm))
    assert strict["keep"] is False
    assert [r["score"] for r in strict["reject_reasons"]] == ["vlm_quality"]


def test_one_vlm_actor_serves_the_enhancer_and_the_judge_in_a_run_and_the_rescoring_judges_again(
        lerobot_run, tmp_path):
    from chronoedit_sim.dataset.inspect import summarize
    from chronoedit_sim.runtime.rescore import rescore

    _, out = lerobot_run
    rows = pq.read_table(out / "data").to_pylist()
    assert len(rows) == 10 and all(r["error"] is None for r in rows)
    assert all(r["prompt"] != r["prompt_original"] and r["enhancer"] == r["judge"] for r in rows)
    assert all(0 <= r["scores"][name] <= 10 for r in rows for name in ("vlm_consistency", "vlm_quality"))
    record = json.loads((out / "run.json").read_text())["runs"][-1]["vlm"]
    # one actor, one load: one rewrite per episode (the edit is consistent across it), and every edit judged
    assert record["actors"] == 1 and record["calls"] == {"enhance": 2, "judge": 10}
    assert record["identity"]["random_weights"] is True and json.loads(rows[0]["judge"]) == record["identity"]
    assert any("RANDOM-WEIGHT VLM" in line for line in summarize(out))

    again = tmp_path / "rescored"
    assert rescore(str(out), str(again), ["filter.vlm_consistency_max=0"], quiet=True, echo=lambda *_: None) == 0
    rescored = pq.read_table(again / "data").to_pylist() + pq.read_table(again / "rejected").to_pylist()
    assert len(rescored) == 10 and all(r["judge"] == rows[0]["judge"] for r in rescored)
    assert all([x["score"] for x in r["reject_reasons"]] == ["vlm_consistency"] for r in rescored)


def test_actors_asking_for_more_gpus_than_the_cluster_has_are_refused(tiny_overrides, kitti, one_edit_scenario):
    from chronoedit_sim.config import ConfigLoader
    from chronoedit_sim.runtime.plan import make_plan

    plan = make_plan(ConfigLoader([*tiny_overrides, "judge.enabled=true", f"input.path={kitti}"]),
                     [str(one_edit_scenario)])
    ctx = BuildContext(plan, "r", Cluster(cpus=16, gpus=1), vlm=VlmClient(plan.cfg.vlm, actors=[]))
    with pytest.raises(ConfigError, match=r"ask for 2 GPUs \(edit 0.75, score 0.25, vlm 1\) and the cluster has 1"):
        build_stages(ctx)
    ok = BuildContext(plan, "r", Cluster(cpus=16, gpus=2), vlm=ctx.vlm)
    assert [s.resources.gpus * s.resources.actors for s in build_stages(ok) if s.resources.gpus] == [0.75, 0.25]


def test_the_enhancer_needs_the_editors_text_encoder(tiny_overrides):
    with pytest.raises(ConfigError, match="enhance.enabled: needs the editor's text encoder"):
        load_config([*tiny_overrides, "enhance.enabled=true", "model.offload_text_encoder=true"])


def test_a_vlm_actor_given_a_gpu_torch_cannot_see_refuses_to_run_on_the_cpu(tiny_vlm_dir):
    from chronoedit_sim.config import VlmConfig
    from chronoedit_sim.runtime.vlm_service import VlmServer

    with pytest.raises(RuntimeError, match="given 1 GPU"):
        VlmServer(VlmConfig(path=str(tiny_vlm_dir), dtype="float32"), gpus=1)
