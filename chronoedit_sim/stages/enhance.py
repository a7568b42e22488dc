"""enhance: the VLM rewrites each job's instruction for its frame before the edit (enhance.enabled).

Each (frame, instruction) is rewritten once: a frame's jobs arrive together (`group_by`), the distinct
instructions of a batch go to the model in one call, and every rewrite is kept in OUT/_state/enhance (one
small file each, written atomically) so a resumed run, or a later sample of the same frame, reads it back
instead of asking again. An edit consistent across a sequence or an instant gets one rewrite per (group,
instruction), made from the group's first frame, alone in its call and on the group's actor, and stored
first-come (a second task that made it too takes the stored text), so every frame of the group is edited
with the same prompt. An empty rewrite keeps the instruction. The row keeps the
scenario's text in `prompt_original` and the enhancer's identity in `enhancer`. Sketch edits keep their
prompt: it is the PaintBrush LoRA's trigger text.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .. import storage
from ..config import EnhanceConfig
from ..engine.backends import runs_on_cpu
from .base import Resources, Stage

CACHE = "enhance"


class EnhanceStage(Stage):
    name = "enhance"
    group_by = "source_id"

    def __init__(self, vlm, cfg: EnhanceConfig, state_dir: str, resources: Resources, max_pixels: int = 10**9,
                 min_side: int = 1):
        # vlm: a runtime VlmClient (the run's VLM actors, or a model loaded here); a row's group's first frame
        # (`_anchor`, from the plan) is read with the input's limits (max_pixels, min_side)
        self.vlm, self.cfg = vlm, cfg
        self.max_pixels, self.min_side = max_pixels, min_side
        self.cache = storage.path(state_dir) / CACHE
        self.resources, self.batch_size = resources, cfg.batch_size

    def setup(self) -> None:
        self.vlm.connect()

    def _path(self, row: dict) -> Path:
        key = json.dumps([self.vlm.identity, self.cfg.max_new_tokens, row.get("_group") or row["source_id"],
                          row["prompt"]])
        return self.cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def _frame(self, row: dict):
        """What the rewrite looks at: the row's frame, or its group's first frame."""
        anchor = row.get("_anchor")
        if anchor is None or anchor.source_id == row["source_id"]:
            return row["_source_rgb"]
        from ..sources.dispatch import read_input

        (decoded,) = read_input([anchor], max_pixels=self.max_pixels, min_side=self.min_side)
        if not hasattr(decoded, "rgb"):
            raise ValueError(f"the first frame of {row['_group']} ({anchor.source_id}) cannot be read: {decoded}")
        return decoded.rgb

    def process_batch(self, rows: list[dict]) -> list[dict]:
        # a sketch edit's prompt is the PaintBrush trigger, a weight-free backend's its spec: neither is rewritten
        live = [r for r in rows if not r["error"] and not r["sketch"] and not runs_on_cpu(r["backend"])]
        todo: dict[Path, list[dict]] = {}
        done: dict[Path, str] = {}
        for row in live:
            path = self._path(row)
            if path not in done and path not in todo and path.is_file():
                done[path] = json.loads(path.read_text())["prompt"]
            if path not in done:
                todo.setdefault(path, []).append(row)
        asks = list(todo.items())
        # a frame's own rewrites share one call; a consistency group's is made alone and kept first-come (every
        # frame of the group then reads the one stored text). Each call fails only its own rows
        own = [a for a in asks if not a[1][0].get("_group")]
        for call in ([own] if own else []) + [[a] for a in asks if a[1][0].get("_group")]:
            self.guard([r for _, ask in call for r in ask], lambda _, call=call: self._enhance(call, done))
        for row in live:
            path = self._path(row)
            if path in done and not row["error"]:
                row["prompt"], row["enhancer"] = done[path], self.vlm.identity
                row["timings_ms"] = {**(row["timings_ms"] or {}), "enhance_ms": row.pop("_enhance_ms", 0.0)}
        return rows

    def _enhance(self, call: list[tuple[Path, list[dict]]], done: dict[Path, str]) -> list[dict]:
        t0 = time.perf_counter()
        first = call[0][1][0]
        made = self.vlm.enhance(first.get("_group") or first["source_id"],  # a group's calls go to one actor
                                [(self._frame(ask[0]), ask[0]["prompt"]) for _, ask in call], self.cfg.max_new_tokens)
        share = (time.perf_counter() - t0) * 1000 / len(call)
        self.cache.mkdir(parents=True, exist_ok=True)
        for (path, ask), text in zip(call, made):
            # an empty rewrite would edit with an empty prompt: the instruction stays
            entry = {"enhancer": self.vlm.identity, "source_id": ask[0]["source_id"], "group": ask[0].get("_group"),
                     "instruction": ask[0]["prompt"], "prompt": text or ask[0]["prompt"]}
            done[path] = _store(path, entry)
            ask[0]["_enhance_ms"] = share  # the call's time goes to the job that asked
        return []


def _store(path: Path, entry: dict) -> str:
    """Keep the first rewrite made for `path` (create-exclusive) and return the prompt that is kept."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(entry))
    try:
        os.link(tmp, path)  # fails when another task stored it first
    except FileExistsError:
        return json.loads(path.read_text())["prompt"]
    finally:
        tmp.unlink()
    return entry["prompt"]
