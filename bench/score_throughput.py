"""Scoring throughput on this machine's CPU: rows/s of the ScoreStage (CLIP + weight-free scores).

Two CLIPs, both with RANDOM weights and both through the real `local-dir:` loading path: the tiny
test model, and a real-size ViT-B-32 architecture (random init, ~600 MB written to a temp dir).
Rows are 160x96 edits with 9 reasoning frames, like the tiny ChronoEdit's partial reasoning.
Run: python bench/score_throughput.py [ROWS] [--smoke]   (smoke: the tiny CLIP on 2 rows)
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from chronoedit_sim.config import ClipConfig, load_config
from chronoedit_sim.dataset.schema import base_row
from chronoedit_sim.engine.tiny import TINY_MARKER
from chronoedit_sim.scenario import EditSettings
from chronoedit_sim.scoring.clip import write_tiny_clip
from chronoedit_sim.stages.base import Resources
from chronoedit_sim.stages.score import ScoreStage


def vit_b32_random(folder: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config("ViT-B-32")}))
    (folder / TINY_MARKER).write_text('{"random_weights": true}')
    return folder


def rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        src = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
        edited = np.clip(src.astype(int) + rng.integers(-30, 30, src.shape), 0, 255).astype(np.uint8)
        frames = np.stack([(src * (1 - t) + edited * t).astype(np.uint8) for t in np.linspace(0, 1, 9)])
        job = {"job_id": f"j{i}", "scenario": "s", "edit_id": "e", "sample_index": 0, "seed": i,
               "source_id": f"f{i // 2}.png", "source_uri": "", "prompt": "", "negative_prompt": "",
               "target_caption": f"a street with a car {i % 3}", "source_caption": "a street",
               "labels": {}, "choices": {}}
        row = base_row(job, "bench")
        row.update(_source_rgb=src, _edited_rgb=edited, _reasoning_rgb=frames, timings_ms={})
        out.append(row)
    return out


def measure(name: str, clip_dir: Path, n: int, device: str = "cpu") -> None:
    cfg = load_config(["model=tiny", "model.path=/unused"])
    stage = ScoreStage({"s/e": EditSettings(cfg.generation, cfg.trajectory, cfg.filter)},
                       ClipConfig(model=f"local-dir:{clip_dir}", device=device), Resources())
    t_load = time.perf_counter()
    stage.setup()
    t0 = time.perf_counter()
    stage.process_batch(rows(n))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    print(json.dumps({"clip": name, "device": device, "rows": n, "rows_per_s": round(n / wall, 2), "load_s": round(t0 - t_load, 2),
                      "caption_encodes": stage.embedder.clip.text_encodes,
                      "source_encodes": stage.embedder.source_encodes}))


if __name__ == "__main__":
    import torch

    # as in the Ray score actor, which Ray gives OMP_NUM_THREADS=1 for its 0.5 CPU; two threads on
    # this 2-core machine made the tiny CLIP 4x slower (thread hand-off dominates tiny matmuls)
    torch.set_num_threads(1)
    smoke = "--smoke" in sys.argv
    numbers = [a for a in sys.argv[1:] if a != "--smoke"]
    n = 2 if smoke else int(numbers[0]) if numbers else 20
    tmp = Path(tempfile.mkdtemp())
    measure("tiny (random)", write_tiny_clip(tmp / "tiny"), n)
    if not smoke:
        measure("ViT-B-32 (random init)", vit_b32_random(tmp / "vitb32"), n)
