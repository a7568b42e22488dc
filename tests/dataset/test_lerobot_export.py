"""#13 end to end on a LeRobot input (conftest's lerobot_run): a lighting change consistent across each episode
through Ray (tiny RANDOM-WEIGHT models: the pixels and prompts are noise; what is checked is where they go),
its temporal flicker, and the
run exported as an augmented LeRobot v3.0 dataset (read back by our own LeRobot source: frame count, actions,
edited pixels within codec tolerance, the unedited camera still the source's) and as one MP4 per sequence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import CAMS, TASKS

from chronoedit_sim.config import InputConfig
from chronoedit_sim.dataset.encode import decode_rgb
from chronoedit_sim.dataset.lerobot_export import export_lerobot
from chronoedit_sim.dataset.sequence_video import export_video
from chronoedit_sim.errors import UserError
from chronoedit_sim.scoring.metrics import resize_to
from chronoedit_sim.sources.dispatch import list_input, read_input

EDITED, COPIED = CAMS[0], CAMS[1]
# mean grey levels between an edited frame and what a reader decodes of the export: AV1 at CRF 30 on the tiny
# model's noise (measured 3.9 per frame through a BT.601 decode); a colour-convention shift is
# tests/dataset/test_video.py's to catch, on a saturated colour, where it is not hidden in the noise
EDITED_TOLERANCE = 5


def _rows(out):
    return sorted(pq.read_table(out / "data").to_pylist(), key=lambda r: (r["sequence_id"], r["episode"]["frame_index"]))


def test_each_episode_gets_one_lighting_change_and_its_flicker(lerobot_run):
    _, out = lerobot_run
    rows = _rows(out)
    assert len(rows) == 10 and all(r["keep"] for r in rows)
    by_episode = {}
    for r in rows:
        by_episode.setdefault(r["sequence_id"], set()).add((r["prompt"], r["seed"]))
    assert {k: len(v) for k, v in by_episode.items()} == {"episode_000000": 1, "episode_000001": 1}
    first = [r for r in rows if r["episode"]["frame_index"] == 0]
    assert [r["scores"]["temporal_flicker"] for r in first] == [0.0, 0.0]
    assert all(r["scores"]["temporal_flicker"] is not None for r in rows)
    temporal = json.loads((out / "run.json").read_text())["temporal"]
    assert sorted(temporal) == ["episode_000000 | light/relight #0", "episode_000001 | light/relight #0"]
    assert [v["frames"] for v in temporal.values()] == [6, 4]


def test_the_export_is_a_lerobot_dataset_our_reader_reads_back(lerobot_run, tmp_path):
    source, out = lerobot_run
    aug = tmp_path / "aug"
    provenance = export_lerobot(out, aug)
    assert [(e["source_episode"], e["edited_cameras"], e["copied_cameras"]) for e in provenance["episodes"]] == [
        (0, [EDITED], [COPIED]), (1, [EDITED], [COPIED])]
    info = json.loads((aug / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2 and info["total_frames"] == 10
    assert info["features"][EDITED]["info"]["video.codec"] == "av1"
    assert all(e["copied_cameras_reencoded"] == {} for e in provenance["episodes"])  # lerobot's keyframes: copied
    refs = list_input(InputConfig(path=str(aug)))
    assert len(refs) == 20 and {r.meta["task"] for r in refs} <= set(TASKS)
    original = {r.source_id: r for r in list_input(InputConfig(path=str(source)))}
    for ref in refs:  # same frames, timestamps, actions and states
        assert ref.episode == original[ref.source_id].episode
    frames = dict(zip([r.source_id for r in refs], read_input(refs, max_pixels=10**8, min_side=1)))
    rows = {f"{EDITED}/episode_{r['episode']['episode_index']:06d}/frame_{r['episode']['frame_index']:06d}": r
            for r in _rows(out)}
    for sid, decoded in frames.items():
        if sid.startswith(COPIED):  # the unedited camera is the source's packets: the same pixels exactly
            assert np.array_equal(decoded.rgb, read_input([original[sid]], max_pixels=10**8, min_side=1)[0].rgb)
        else:  # our reader decodes an untagged stream as BT.601, as lerobot's does
            edit = resize_to(decode_rgb(rows[sid]["edited_image"]["bytes"]), decoded.rgb.shape[:2])
            assert np.abs(decoded.rgb.astype(int) - edit).mean() < EDITED_TOLERANCE
    stats = json.loads((aug / "meta" / "stats.json").read_text())
    assert np.array(stats[EDITED]["mean"]).shape == (3, 1, 1) and stats["action"]["count"] == [10]
    with pytest.raises(UserError, match="exists and is not empty"):
        export_lerobot(out, aug)


def test_incomplete_episodes_are_left_out_or_filled_from_the_source(lerobot_run, tmp_path):
    from chronoedit_sim.runtime.rescore import rescore

    _, out = lerobot_run
    ssim = sorted(r["scores"]["ssim"] for r in _rows(out))
    # rejects the 2 frames least like their source, whichever episodes they are in (a bound between the 2nd and
    # 3rd: the stored scores are float32, the rescored float64)
    strict = tmp_path / "strict"
    assert rescore(str(out), str(strict), [f"filter.ssim_min={(ssim[1] + ssim[2]) / 2}"], quiet=True,
                   echo=lambda *_: None) == 0
    import pyarrow.dataset as pads

    rescored = pads.dataset(str(strict), format="parquet", exclude_invalid_files=True).to_table(
        columns=["keep", "episode"]).to_pylist()
    incomplete = {r["episode"]["episode_index"] for r in rescored if not r["keep"]}
    if incomplete == {0, 1}:
        with pytest.raises(UserError, match="no episode has every frame kept"):
            export_lerobot(strict, tmp_path / "none")
    else:
        partial = export_lerobot(strict, tmp_path / "none")
        assert [e["source_episode"] for e in partial["skipped"]] == sorted(incomplete)
        assert [e["source_episode"] for e in partial["episodes"]] == sorted({0, 1} - incomplete)
    filled = export_lerobot(strict, tmp_path / "filled", fill_rejected="source")
    holes = {e["source_episode"]: e["filled_from_source"] for e in filled["episodes"]}
    assert sum(len(v.get(EDITED, [])) for v in holes.values()) == 2 and filled["skipped"] == []


def test_one_clip_per_sequence_at_the_source_rate(lerobot_run, tmp_path):
    import av

    _, out = lerobot_run
    assert export_video(out, tmp_path / "clips", side_by_side=True, echo=lambda *_: None) == 2
    lengths = {}
    for clip in sorted((tmp_path / "clips").glob("*.mp4")):
        with av.open(str(clip)) as c:
            stream = c.streams.video[0]
            lengths[clip.name] = (sum(1 for _ in c.decode(video=0)), int(stream.average_rate), stream.width)
    edited_w = decode_rgb(_rows(out)[0]["edited_image"]["bytes"]).shape[1]
    assert sorted(lengths.values()) == [(4, 10, 2 * edited_w), (6, 10, 2 * edited_w)]


LEROBOT_PYTHON = os.environ.get("LEROBOT_PYTHON")


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="set LEROBOT_PYTHON to a separate venv's python with lerobot 0.4.4 "
                                               "(it pins torch < 2.11, so never in the project's venv)")
def test_lerobots_own_loader_reads_the_export(lerobot_run, tmp_path):
    import subprocess

    source, out = lerobot_run
    export_lerobot(out, tmp_path / "aug", echo=lambda *_: None)
    seen, pixels = {}, {}
    for name, root in (("aug", tmp_path / "aug"), ("source", source)):
        done = subprocess.run([LEROBOT_PYTHON, str(Path(__file__).with_name("lerobot_load.py")), str(root),
                               str(tmp_path / f"{name}.npz")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        seen[name] = json.loads(done.stdout.strip().splitlines()[-1])
        pixels[name] = dict(np.load(tmp_path / f"{name}.npz"))
    seen = seen["aug"]
    assert seen["frames"] == 10 and seen["episodes"] == 2 and seen["episode_index"] == [0] * 6 + [1] * 4
    assert seen["shapes"] == {cam: [3, 48, 64] for cam in CAMS} and seen["tasks"] == sorted(TASKS)
    assert seen["actions"][:2] == [[0.0, -0.0], [pytest.approx(0.1), pytest.approx(-0.1)]]
    # the copied camera, through lerobot's loader, is the source's pixel for pixel (its packets were copied)
    assert np.array_equal(pixels["aug"][COPIED], pixels["source"][COPIED])
    # the edited camera is its rows' edits within AV1's loss at CRF 30
    edits = np.stack([resize_to(decode_rgb(r["edited_image"]["bytes"]), (48, 64)) for r in _rows(out)])
    assert np.abs(pixels["aug"][EDITED].astype(int) - edits).mean() < EDITED_TOLERANCE
