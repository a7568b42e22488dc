"""enhance: the VLM rewrites each job's instruction for its frame before the edit (enhance.enabled).

Each (frame, instruction) is rewritten once: a frame's jobs arrive together (`group_by`), the distinct
instructions of a batch go to the model in one call, and every rewrite is kept in OUT/_state/enhance (one
small file each, written atomically) so a resumed run, or a later sample of the same frame, reads it back
instead of asking again. The row keeps the scenario's text in `prompt_original` and the enhancer's
identity in `enhancer`. Sketch edits keep their prompt: it is the PaintBrush LoRA's trigger text.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..config import EnhanceConfig
from ..dataset.sink import atomic_write_bytes
from .base import Resources, Stage

CACHE = "enhance"


class EnhanceStage(Stage):
    name = "enhance"
    group_by = "source_id"

    def __init__(self, vlm, cfg: EnhanceConfig, state_dir: str, resources: Resources):
        # vlm: a runtime VlmClient (the run's VLM actors, or a model loaded here)
        self.vlm, self.cfg = vlm, cfg
        self.cache = Path(state_dir) / CACHE
        self.resources, self.batch_size = resources, cfg.batch_size

    def setup(self) -> None:
        self.vlm.connect()

    def _path(self, row: dict) -> Path:
        key = json.dumps([self.vlm.identity, self.cfg.max_new_tokens, row["source_id"], row["prompt"]])
        return self.cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def process_batch(self, rows: list[dict]) -> list[dict]:
        live = [r for r in rows if not r["error"] and not r["sketch"]]
        todo: dict[Path, list[dict]] = {}
        done: dict[Path, str] = {}
        for row in live:
            path = self._path(row)
            if path not in done and path not in todo and path.is_file():
                done[path] = json.loads(path.read_text())["prompt"]
            if path not in done:
                todo.setdefault(path, []).append(row)
        if todo:
            self.guard([r for group in todo.values() for r in group], lambda _: self._enhance(todo, done))
        for row in live:
            path = self._path(row)
            if path in done and not row["error"]:
                row["prompt"], row["enhancer"] = done[path], self.vlm.identity
                row["timings_ms"] = {**(row["timings_ms"] or {}), "enhance_ms": row.pop("_enhance_ms", 0.0)}
        return rows

    def _enhance(self, todo: dict[Path, list[dict]], done: dict[Path, str]) -> None:
        t0 = time.perf_counter()
        groups = list(todo.values())
        texts = self.vlm.enhance(groups[0][0]["source_id"], [(g[0]["_source_rgb"], g[0]["prompt"]) for g in groups],
                                 self.cfg.max_new_tokens)
        share = (time.perf_counter() - t0) * 1000 / len(groups)
        self.cache.mkdir(parents=True, exist_ok=True)
        for (path, group), text in zip(todo.items(), texts):
            atomic_write_bytes(path, json.dumps({"enhancer": self.vlm.identity, "source_id": group[0]["source_id"],
                                                 "instruction": group[0]["prompt"], "prompt": text}).encode())
            done[path] = text
            group[0]["_enhance_ms"] = share  # the call's time goes to the job that asked
