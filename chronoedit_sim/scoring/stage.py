"""The score stage: CLIP and weight-free scores per row, then keep/reject with reasons.

One ClipEmbedder per actor (loaded once in setup). Rows arrive with the decoded frames in
transient fields (`_source_rgb`, `_edited_rgb`, `_reasoning_rgb`), from the edit stage or from
`chronoedit-sim score` re-reading a dataset, so nothing is decoded twice.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict

from ..config import SCORES, ClipConfig
from ..runtime.plan import settings_key
from ..runtime.stage import Resources, Stage
from ..runtime.stages import finish_row
from . import metrics
from .filter import apply_filter

NO_CLIP = json.dumps({"model": None, "clip": "disabled"})
_SOURCE_CACHE = 64


def compute_scores(row: dict, embedder) -> tuple[dict, dict]:
    """(scores, notes) for one edited row; notes say why a score is undefined."""
    edited = row["_edited_rgb"]
    source = metrics.resize_to(row["_source_rgb"], edited.shape[:2])  # compare at the edited resolution
    reasoning = row.get("_reasoning_rgb")
    has_reasoning = reasoning is not None and len(reasoning) > 1
    scores = dict.fromkeys(SCORES)
    notes = {}
    scores["ssim"] = metrics.ssim(source, edited)
    scores["psnr"] = metrics.psnr(source, edited)
    if has_reasoning:
        scores["flow_warp_error"] = metrics.flow_warp_error(reasoning)
    if embedder is not None:
        src_emb = embedder.source(row["source_id"], source)
        frames = [edited, *(reasoning if has_reasoning else [])]
        embs = embedder.images(frames)
        edit_emb = embs[0]
        tgt_txt, src_txt = embedder.captions([row["target_caption"], row["source_caption"]])
        scores["clip_text"] = metrics.cosine(edit_emb, tgt_txt)
        scores["clip_text_source"] = metrics.cosine(src_emb, src_txt)
        scores["clip_image"] = metrics.cosine(src_emb, edit_emb)
        scores["clip_direction"], why = metrics.directional_similarity(src_emb, edit_emb, src_txt, tgt_txt)
        if why:
            notes["clip_direction"] = why
        if has_reasoning:
            scores.update(metrics.trajectory_scores(embs[1:], edit_emb))
    return scores, notes


class CachedEmbedder:
    """ClipEmbedder plus a per-actor cache of source-frame embeddings (one per frame, not per job)."""

    def __init__(self, clip):
        self.clip = clip
        self._sources: OrderedDict = OrderedDict()
        self.source_encodes = 0

    def source(self, source_id: str, frame):
        key = (source_id, frame.shape)
        if key not in self._sources:
            self._sources[key] = self.clip.images([frame])[0]
            self.source_encodes += 1
            if len(self._sources) > _SOURCE_CACHE:
                self._sources.popitem(last=False)
        return self._sources[key]

    def images(self, frames):
        return self.clip.images(frames)

    def captions(self, texts):
        return self.clip.captions(texts)


class ScoreStage(Stage):
    name = "score"

    def __init__(self, settings: dict, clip_cfg: ClipConfig, resources: Resources, batch_size: int = 1):
        self.settings, self.clip_cfg = settings, clip_cfg
        self.resources, self.batch_size = resources, batch_size
        self.embedder = None

    def setup(self) -> None:
        if self.clip_cfg.enabled:
            from .clip import ClipEmbedder

            self.embedder = CachedEmbedder(ClipEmbedder(self.clip_cfg))

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self._score(row) for row in rows]

    def _score(self, row: dict) -> dict:
        row["scorer"] = self.embedder.clip.identity if self.embedder else NO_CLIP
        row["reject_reasons"] = []
        if row["error"]:
            row["scores"], row["keep"] = None, False
            return finish_row(row)
        t0 = time.perf_counter()
        try:
            scores, notes = compute_scores(row, self.embedder)
        except Exception as exc:  # a scoring failure is a row, never a crashed run
            row.update(scores=None, keep=False, error=f"score: {type(exc).__name__}: {exc}")
            return finish_row(row)
        row["timings_ms"] = {**(row["timings_ms"] or {}), "score_ms": (time.perf_counter() - t0) * 1000}
        bounds = self.settings[settings_key(row["scenario"], row["edit_id"])].filter
        row["scores"] = scores
        row["keep"], row["reject_reasons"] = apply_filter(scores, bounds, notes)
        return finish_row(row)
