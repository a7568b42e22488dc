"""The prompt enhancer's and the VLM judge's extra cost per job, on CPU, with the tiny RANDOM Qwen-VL.

The tiny model (2 layers, hidden 32) says nothing about a real Qwen3-VL-30B's speed: what this measures is
the plumbing's cost around the model (image preparation, the processor, batching, generation's loop) and the
per-job arithmetic: one rewrite per (frame, instruction), shared by that frame's samples; two short rating
generations per edit. The text it writes is noise.
  enhance: F frames x I instructions in one call per frame, max_new_tokens 8 and 64; ms per rewrite and per
  job (S samples share one rewrite).
  judge: ms per edited pair (consistency on both images + quality on the edit), one pair per call as the
  score stage asks.

Run: python bench/vlm.py [--quick | --smoke]     -> table + bench/results/vlm.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = common.parse_args(parser, quick="3 frames instead of 12")
    import numpy as np
    import torch

    from chronoedit_sim.config import VlmConfig
    from chronoedit_sim.engine.tiny_vlm import write_tiny_vlm
    from chronoedit_sim.engine.vlm import VisionLanguageModel

    torch.set_num_threads(1)  # as Ray gives an actor on this machine
    frames_n, instructions, samples = (1 if args.smoke else 3 if args.quick else 12), ["Add a red car.", "Make it rain heavily."], 3
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 832, 3), dtype=np.uint8) for _ in range(frames_n)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = VisionLanguageModel(VlmConfig(path=str(write_tiny_vlm(Path(tmp) / "vlm")), dtype="float32"))
        load_s = time.perf_counter() - t0
        rows = []
        for tokens in (8,) if args.smoke else (8, 64):
            model.enhance([(frames[0], instructions[0])], tokens)  # warm-up
            t0 = time.perf_counter()
            for frame in frames:
                model.enhance([(frame, text) for text in instructions], tokens)
            per_rewrite = (time.perf_counter() - t0) * 1000 / (frames_n * len(instructions))
            rows.append({"option": f"enhance, {tokens} new tokens", "ms_per_call_item": round(per_rewrite, 1),
                         "ms_per_job": round(per_rewrite / samples, 1)})
        edited = [rng.integers(0, 255, (96, 160, 3), dtype=np.uint8) for _ in frames]
        model.judge([(edited[0], edited[0], instructions[0])])
        t0 = time.perf_counter()
        for frame, edit in zip(frames, edited):
            model.judge([(np.ascontiguousarray(frame[::5, ::5][:96, :160]), edit, instructions[0])])
        per_pair = (time.perf_counter() - t0) * 1000 / frames_n
        rows.append({"option": "judge (2 ratings)", "ms_per_call_item": round(per_pair, 1),
                     "ms_per_job": round(per_pair, 1)})
    common.print_table(rows, ["option", "ms_per_call_item", "ms_per_job"])
    print(f"tiny VLM load: {load_s:.2f} s; {samples} samples per (frame, instruction) share a rewrite")
    common.write_result("vlm", {"machine": common.machine(), "frames": frames_n, "instructions": instructions,
                                "samples_per_instruction": samples, "load_s": round(load_s, 2), "rows": rows,
                                "note": "tiny RANDOM-WEIGHT Qwen3-VL-MoE (2 layers): plumbing cost, not a real VLM's"})


if __name__ == "__main__":
    main()
