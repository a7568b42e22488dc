"""score: CLIP and weight-free scores per row, then keep/reject with structured reasons.

One ClipEmbedder per actor, loaded once in setup. The same stage serves a run and a
rescoring (`chronoedit-sim score`), so both score and filter alike.
"""

from __future__ import annotations

import time

from ..config import SCORES, ClipConfig
from ..scenario import EditSettings, settings_key
from ..scoring.filter import apply_filter
from ..scoring.scores import NO_CLIP, CachedEmbedder, compute_scores, judge_scores
from .base import Resources, Stage


class ScoreStage(Stage):
    name = "score"

    def __init__(self, settings: dict[str, EditSettings], clip_cfg: ClipConfig, resources: Resources,
                 batch_size: int = 1, flow_max_side: int = 0, judge=None, deferred: tuple[str, ...] = ()):
        self.settings, self.clip_cfg, self.flow_max_side = settings, clip_cfg, flow_max_side
        # judge.enabled: a runtime VlmClient that rates each pair (vlm_consistency, vlm_quality)
        self.judge = judge
        # scores computed after this stage (a run's sequence scores): their bounds are applied there
        self.bounded = tuple(name for name in SCORES if name not in deferred)
        self.resources, self.batch_size = resources, batch_size
        self.embedder = None

    def setup(self) -> None:
        if self.clip_cfg.enabled:
            from ..scoring.clip import ClipEmbedder

            self.embedder = CachedEmbedder(ClipEmbedder(self.clip_cfg))
        if self.judge is not None:
            self.judge.connect()

    def process_row(self, row: dict) -> dict:
        t0 = time.perf_counter()
        row["scorer"] = self.embedder.clip.identity if self.embedder else NO_CLIP
        scores, notes = compute_scores(row, self.embedder, self.flow_max_side)
        timings = {}
        if self.judge:
            t1 = time.perf_counter()
            scores.update(judge_scores(row, self.judge))
            row["judge"], timings["judge_ms"] = self.judge.identity, (time.perf_counter() - t1) * 1000
        row["timings_ms"] = {**(row["timings_ms"] or {}), "score_ms": (time.perf_counter() - t0) * 1000, **timings}
        bounds = self.settings[settings_key(row["scenario"], row["edit_id"])].filter
        row["scores"] = scores
        row["keep"], row["reject_reasons"] = apply_filter(scores, bounds, notes, self.bounded)
        return row
