"""CUDA check of the edit engine on the tiny checkpoint: mixed dtypes, determinism, capture, timings.

Run on a GPU machine: python bench/gpu_check.py (`--smoke`: one check, the tiny CLIP on 2 rows, on the CPU
where there is no GPU). Prints one JSON line per check. The tiny
model has RANDOM weights: this checks the plumbing on CUDA (bf16 transformer and text encoder,
fp32 VAE and image encoder), not edit quality or real-model speed.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from chronoedit_sim.config import load_config
from chronoedit_sim.engine.editor import Editor
from chronoedit_sim.engine.tiny import write_tiny_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one check, on the CPU where there is no GPU")
    smoke = parser.parse_args().smoke
    cuda = torch.cuda.is_available() or not smoke
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model_dir = write_tiny_model(tempfile.mkdtemp() + "/tiny")
    frame = (np.random.RandomState(0).rand(360, 640, 3) * 255).astype(np.uint8)
    cfg = load_config(["model=tiny", f"model.path={model_dir}", f"model.device={'cuda' if cuda else 'cpu'}",
                       "generation.max_area=65536"])
    editor = Editor(cfg.model)
    pipe = editor.pipe
    dtypes = {n: str(getattr(pipe, n).dtype) for n in ("transformer", "text_encoder", "vae", "image_encoder")}
    print(json.dumps({"device": torch.cuda.get_device_name(0) if cuda else "cpu", "dtypes": dtypes}))
    checks = {
        "no_reasoning": cfg.generation,
        "partial_reasoning": dataclasses.replace(cfg.generation, temporal_reasoning=True, reasoning_steps=2),
        "full_reasoning": dataclasses.replace(cfg.generation, temporal_reasoning=True, reasoning_steps=4),
    }
    for name, gen in list(checks.items())[:1 if smoke else None]:
        editor.edit(frame, "add a red car", seed=1, gen=gen)  # warm-up
        sync()
        t0 = time.perf_counter()
        a = editor.edit(frame, "add a red car", seed=1, gen=gen)
        sync()
        wall = time.perf_counter() - t0
        b = editor.edit(frame, "add a red car", seed=1, gen=gen)
        frames = 0 if a.reasoning_frames is None else len(a.reasoning_frames)
        print(json.dumps({"check": name, "edited_shape": list(a.edited.shape), "reasoning_frames": frames,
                          "kind": a.reasoning_kind, "deterministic": bool(np.array_equal(a.edited, b.edited)),
                          "finite": bool(np.isfinite(a.edited).all()), "wall_ms": round(wall * 1000, 1),
                          "timings_ms": a.timings_ms}))
    if cuda:
        print(json.dumps({"max_memory_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}))
    score_check("cuda" if cuda else "cpu", smoke)
    return 0


def score_check(device: str, smoke: bool) -> None:
    """The ScoreStage on CUDA: tiny CLIP and a real-size ViT-B-32 (both random weights)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from score_throughput import measure, vit_b32_random

    from chronoedit_sim.scoring.clip import write_tiny_clip

    tmp = tempfile.mkdtemp()
    if smoke:
        measure("tiny (random)", write_tiny_clip(tmp + "/tiny"), 2, device=device)
        return
    for name, folder in (("tiny (random)", write_tiny_clip(tmp + "/tiny")),
                         ("ViT-B-32 (random init)", vit_b32_random(Path(tmp) / "vitb32"))):
        measure(name, folder, 50, device=device)


if __name__ == "__main__":
    sys.exit(main())
