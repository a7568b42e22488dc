"""enhance: the VLM rewrites each job's instruction for its frame before the edit (enhance.enabled).

Each (frame, instruction) is rewritten once: a frame's jobs arrive together (`group_by`), the distinct
instructions of a batch go to the model in one call, and every rewrite is kept in OUT/_state/enhance (one
small file each, written atomically) so a resumed run, or a later sample of the same frame, reads it back
instead of asking again. An edit consistent across a sequence or an instant gets one rewrite per (group,
instruction), made from the group's first frame and alone in its call (so every task that makes it makes
the same text), so that every frame of the group is edited with the same prompt. The row keeps the
scenario's text in `prompt_original` and the enhancer's identity in `enhancer`. Sketch edits keep their
prompt: it is the PaintBrush LoRA's trigger text.
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

    def __init__(self, vlm, cfg: EnhanceConfig, state_dir: str, resources: Resources, anchors: dict | None = None):
        # vlm: a runtime VlmClient (the run's VLM actors, or a model loaded here); anchors: RunPlan.anchors
        self.vlm, self.cfg, self.anchors = vlm, cfg, anchors or {}
        self.cache = Path(state_dir) / CACHE
        self.resources, self.batch_size = resources, cfg.batch_size

    def setup(self) -> None:
        self.vlm.connect()

    def _path(self, row: dict) -> Path:
        key = json.dumps([self.vlm.identity, self.cfg.max_new_tokens, row.get("_group") or row["source_id"],
                          row["prompt"]])
        return self.cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def _frame(self, row: dict):
        """What the rewrite looks at: the row's frame, or its group's first frame."""
        anchor = self.anchors.get(row.get("_group"))
        if anchor is None or anchor.source_id == row["source_id"]:
            return row["_source_rgb"]
        from ..sources.dispatch import read_input

        (decoded,) = read_input([anchor], max_pixels=10**9, min_side=1)
        if not hasattr(decoded, "rgb"):
            raise ValueError(f"the first frame of {row['_group']} ({anchor.source_id}) cannot be read: {decoded}")
        return decoded.rgb

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
            self.guard([r for ask in todo.values() for r in ask], lambda _: self._enhance(todo, done))
        for row in live:
            path = self._path(row)
            if path in done and not row["error"]:
                row["prompt"], row["enhancer"] = done[path], self.vlm.identity
                row["timings_ms"] = {**(row["timings_ms"] or {}), "enhance_ms": row.pop("_enhance_ms", 0.0)}
        return rows

    def _enhance(self, todo: dict[Path, list[dict]], done: dict[Path, str]) -> None:
        t0 = time.perf_counter()
        asks = list(todo.values())  # the rows of each rewrite
        # a frame's own rewrites share one call; a consistency group's is made alone (the same text whichever
        # task makes it: batch padding may move a GPU's last bits)
        own = [a for a in asks if not a[0].get("_group")]
        calls = ([own] if own else []) + [[a] for a in asks if a[0].get("_group")]
        texts = {}
        for call in calls:
            made = self.vlm.enhance(call[0][0]["source_id"], [(self._frame(a[0]), a[0]["prompt"]) for a in call],
                                    self.cfg.max_new_tokens)
            texts.update({id(a): text for a, text in zip(call, made)})
        share = (time.perf_counter() - t0) * 1000 / len(asks)
        self.cache.mkdir(parents=True, exist_ok=True)
        for path, ask in todo.items():
            text = texts[id(ask)]
            atomic_write_bytes(path, json.dumps({"enhancer": self.vlm.identity, "source_id": ask[0]["source_id"],
                                                 "group": ask[0].get("_group"), "instruction": ask[0]["prompt"],
                                                 "prompt": text}).encode())
            done[path] = text
            ask[0]["_enhance_ms"] = share  # the call's time goes to the job that asked
