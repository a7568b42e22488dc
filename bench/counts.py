"""Never twice: each model component's calls in a run against the reference CLI's per-edit calls.

F frames x E edits x S samples over P distinct prompt texts, on the tiny RANDOM-WEIGHT checkpoint
(4 steps, guidance 5, so a negative prompt too), through `chronoedit-sim run` with 1 and 2 edit
actors, and with runtime.batch_samples. The counts come from run.json (`counts.component_calls`,
summed from each row's `component_calls`). Naive = what the reference CLI does per edit: the text
encoder on the prompt and the negative prompt, the image encoder and the VAE encode once, the
transformer twice per step, one VAE decode. Targets: text encoder = P per actor, image encoder = F,
VAE encode = distinct (frame, resolution, num_frames).

Run: python bench/counts.py [--quick | --smoke]     -> table + bench/results/counts.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import common

SCENARIO = """name: counts
domain: driving
description: component-call benchmark
edits:
  - id: add_car
    prompt: 'Add a {colour} car. Keep the camera unchanged.'
    vars: {colour: [red, blue, white]}
    samples: %(samples)d
    target_caption: a street with a car
    source_caption: a street
  - id: rain
    prompt: Make it rain. Keep the camera unchanged.
    samples: %(samples)d
    target_caption: a rainy street
    source_caption: a street
"""


def run(root: Path, frames: Path, scenario: Path, name: str, overrides: list[str]) -> dict:
    import pyarrow.parquet as pq

    out = root / name
    cmd = [sys.executable, "-m", "chronoedit_sim.cli", "run", str(scenario), "--input", str(frames), "--output",
           str(out), "-q", "--overwrite", *overrides]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={"RAY_AUTH_MODE": "disabled", **os.environ})
    calls = json.loads((out / "run.json").read_text())["counts"]["component_calls"]
    rows = pq.ParquetDataset(str(out / "data")).read(columns=["source_id", "prompt", "negative_prompt",
                                                               "generation"]).to_pylist()
    return {"calls": calls, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = common.parse_args(parser, quick="2 frames x 2 edits x 2 samples instead of 6 x 2 x 3")
    f, s = (1, 1) if args.smoke else (2, 2) if args.quick else (6, 3)
    root = Path(tempfile.mkdtemp(prefix="cesim-bench-counts-"))
    models = common.tiny_models(root)
    frames = common.write_frames(root / "frames", f)
    scenario = root / "counts.yaml"
    scenario.write_text(SCENARIO % {"samples": s})
    base = [*models, *common.NO_BOUNDS, "scoring.clip.enabled=false", "report.enabled=false",
            "generation.temporal_reasoning=false"]
    results = []
    setups = (("1 actor", 1, []), ("2 actors", 2, ["runtime.cpus_per_actor=0.5"]),
              ("1 actor, batch_samples", 1, ["runtime.batch_samples=true"]))
    for label, actors, extra in setups[:1] if args.smoke else setups:
        got = run(root, frames, scenario, label.replace(" ", "_").replace(",", ""),
                  [*base, f"runtime.num_actors={actors}", *extra])
        rows, calls = got["rows"], got["calls"]
        n = len(rows)
        g = rows[0]["generation"]
        texts = {t for r in rows for t in (r["prompt"], r["negative_prompt"])}
        conditioning = {(r["source_id"], r["generation"]["height"], r["generation"]["width"],
                         r["generation"]["num_frames"]) for r in rows}
        naive = {"text_encoder_calls": 2 * n, "image_encoder_calls": n, "vae_encode_calls": n,
                 "transformer_forwards": 2 * g["steps"] * n, "vae_decode_calls": n}
        target = {"text_encoder_calls": f"<= {len(texts)} x {actors}", "image_encoder_calls": f,
                  "vae_encode_calls": len(conditioning)}
        met = (calls["text_encoder_calls"] <= len(texts) * actors and calls["image_encoder_calls"] == f
               and calls["vae_encode_calls"] == len(conditioning))
        results.append({"run": label, "jobs": n, "frames": f, "prompt_texts": len(texts), "calls": calls,
                        "naive": naive, "target": target, "target_met": met})
        print(json.dumps(results[-1]), flush=True)
    table = [{"run": r["run"], "component": k.replace("_calls", "").replace("_forwards", ""), "calls": v,
              "naive": r["naive"][k], "target": r["target"].get(k, "-"), "met": r["target_met"]}
             for r in results for k, v in r["calls"].items()]
    common.print_table(table, ["run", "component", "calls", "naive", "target", "met"])
    common.write_result("counts", {"quick": args.quick, "machine": common.machine(),
                                   "model": "tiny RANDOM-WEIGHT checkpoint, 4 steps, guidance 5, 160x96",
                                   "frames": f, "edits": 2, "samples": s, "results": results})


if __name__ == "__main__":
    main()
