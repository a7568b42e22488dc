"""Sequences (#13): temporal flicker of the tiny model's edits against the fake editors', and the throughput of
`export --format lerobot` and `export --format video`.

A LeRobot v3.0 dataset (tests/helpers.make_dataset: E episodes, 2 cameras at 640x480, 10 fps) goes through
`chronoedit-sim run` with a lighting change consistent across each episode, on one camera (the tiny RANDOM-
WEIGHT model at its 160x96; no CLIP), then is exported. The fake editors (tests/scoring/test_temporal.py) edit a
panning texture: one the same colour grade on every frame, one a random change per frame.
  flicker: mean and worst temporal_flicker per edited sequence.
  export: frames per second written (every frame of every episode and camera: edited ones resized to 640x480
  and both streams AV1-encoded as lerobot encodes, for lerobot; one H.264 clip per sequence, for video).

Run: python bench/sequences.py [--quick | --smoke]     -> table + bench/results/sequences.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.ROOT / "tests"))
sys.path.insert(0, str(common.ROOT / "tests" / "scoring"))

SCENARIO = ("name: light\ndomain: robotics\ndescription: bench\nannotations: keep\nconsistent_across: sequence\n"
            "edits:\n  - id: relight\n    prompt: 'Relight the workspace with {colour} light.'\n"
            "    vars: {colour: [warm, cold]}\n    target_caption: a lit table\n    source_caption: a table\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = common.parse_args(parser, quick="2 episodes of 6 frames instead of 4 of 20")
    import numpy as np
    import pyarrow.parquet as pq

    import helpers
    from test_temporal import flickering, flickers, steady

    from chronoedit_sim.dataset.lerobot_export import export_lerobot
    from chronoedit_sim.dataset.sequence_video import export_video
    from chronoedit_sim.runtime.run import run

    helpers.W, helpers.H = 640, 480
    episodes = [(2, 0, 0, 0), (2, 1, 0, 0)] if args.smoke else [(6, 0, 0, 0), (6, 1, 0, 0)] if args.quick else [(20, i % 2, 0, 0) for i in range(4)]
    root = Path(tempfile.mkdtemp(prefix="cesim-bench-sequences-"))
    source = helpers.make_dataset(root / "source", episodes)
    scenario = root / "light.yaml"
    scenario.write_text(SCENARIO)
    out = root / "out"
    t0 = time.perf_counter()
    assert run([str(scenario)], str(source), str(out), [*common.tiny_models(root), *common.NO_BOUNDS,
               "scoring.clip.enabled=false", "report.enabled=false", f"input.cameras=[{helpers.CAMS[0]}]"],
               quiet=True, echo=lambda *_: None) == 0
    run_s = time.perf_counter() - t0
    temporal = json.loads((out / "run.json").read_text())["temporal"]
    rows = pq.read_table(out / "data", columns=["scores"]).to_pylist()
    tiny = [r["scores"]["temporal_flicker"] for r in rows if r["scores"]["temporal_flicker"] is not None]
    calm, wild = flickers(steady), flickers(flickering)
    frames = sum(e[0] for e in episodes) * len(helpers.CAMS)
    t0 = time.perf_counter()
    export_lerobot(out, root / "aug", echo=lambda *_: None)
    lerobot_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    clips = export_video(out, root / "clips", echo=lambda *_: None)
    video_s = time.perf_counter() - t0
    edited_frames = sum(e[0] for e in episodes)
    table = [
        {"measure": "flicker, tiny model (mean / worst)", "value": f"{np.mean(tiny):.4f} / {max(tiny):.4f}"},
        {"measure": "flicker, fake steady editor (mean / worst)", "value": f"{np.mean(calm):.4f} / {max(calm):.4f}"},
        {"measure": "flicker, fake flickering editor (mean / worst)", "value": f"{np.mean(wild):.4f} / {max(wild):.4f}"},
        {"measure": f"export lerobot: {frames} frames (2 cameras, 640x480, AV1)", "value": f"{frames / lerobot_s:.1f} frames/s"},
        {"measure": f"export video: {clips} clips, {edited_frames} frames", "value": f"{edited_frames / video_s:.1f} frames/s"},
        {"measure": f"the run ({edited_frames} edits, Ray start included)", "value": f"{run_s:.1f} s"},
    ]
    common.print_table(table, ["measure", "value"])
    common.write_result("sequences", {"quick": args.quick, "machine": common.machine(), "episodes": episodes,
                                      "camera": "640x480, 10 fps", "temporal": temporal,
                                      "flicker": {"tiny": tiny, "steady": calm, "flickering": wild},
                                      "export_lerobot_s": round(lerobot_s, 2), "export_video_s": round(video_s, 2),
                                      "frames": frames, "edited_frames": edited_frames, "run_s": round(run_s, 1),
                                      "table": table})


if __name__ == "__main__":
    main()
