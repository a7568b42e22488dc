"""Every score of one edited row: CLIP (through a per-actor cache of source embeddings) and weight-free.

Rows carry decoded frames in transient fields (`_source_rgb`, `_edited_rgb`, `_reasoning_rgb`),
from the edit and encode stages or from a rescoring that decodes a dataset's images once.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from ..config import JUDGE_SCORES, LOCALIZE_SCORES, SCORES, SEQUENCE_SCORES
from . import metrics

NO_CLIP = json.dumps({"model": None, "clip": "disabled"})
_SOURCE_CACHE = 64


def source_at_edit_size(row: dict):
    """The source frame at the edited frame's size, resized once per row (every score compares there)."""
    shape = row["_edited_rgb"].shape[:2]
    cached = row.get("_source_at_edit")
    if cached is None or cached.shape[:2] != shape:
        cached = row["_source_at_edit"] = metrics.resize_to(row["_source_rgb"], shape)
    return cached


def compute_scores(row: dict, embedder, flow_max_side: int = 0) -> tuple[dict, dict]:
    """(scores, notes) for one edited row; notes say why a score is undefined."""
    edited = row["_edited_rgb"]
    source = source_at_edit_size(row)
    reasoning = row.get("_reasoning_rgb")
    has_reasoning = reasoning is not None and len(reasoning) > 1
    scores = dict.fromkeys(SCORES)
    # the localize stage's, and a sequence's (a rescoring keeps them as the dataset has them)
    scores.update({k: (row.get("scores") or {}).get(k) for k in LOCALIZE_SCORES + SEQUENCE_SCORES})
    notes = {}
    scores["ssim"] = metrics.ssim(source, edited)
    scores["psnr"] = metrics.psnr(source, edited)
    if has_reasoning:
        scores["flow_warp_error"] = metrics.flow_warp_error(reasoning, flow_max_side)
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


def judge_scores(row: dict, judge) -> dict:
    """vlm_consistency and vlm_quality of one edited row from `judge` (a VlmClient), against the instruction
    the scenario gave (not the enhancer's rewrite of it), the source seen at the edit's resolution."""
    [(consistency, quality)] = judge.judge(row["source_id"], [(source_at_edit_size(row), row["_edited_rgb"],
                                                               row["prompt_original"] or row["prompt"])])
    return dict(zip(JUDGE_SCORES, (consistency, quality)))


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
