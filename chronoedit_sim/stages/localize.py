"""localize: the edit's ground truth. The source's boxes scaled to the edited image, and as the scenario's
annotation policy says, the inserted object's box found in the change mask (or the removed object's),
plus the weight-free change scores the score stage filters on (perception/localize.py does the math).

CPU only, between encode and score: Ray Data runs it in the same tasks as its neighbours.
"""

from __future__ import annotations

import json
import time

from ..config import LocalizeConfig
from ..perception.labels import carried, record
from ..perception.sketch import box_px
from ..perception.localize import LocalizeParams, localize
from ..scenario import EditSettings, settings_key
from .base import Resources, Stage


class LocalizeStage(Stage):
    name = "localize"

    def __init__(self, settings: dict[str, EditSettings], cfg: LocalizeConfig, resources: Resources,
                 batch_size: int = 1):
        self.settings, self.cfg = settings, cfg
        self.params = LocalizeParams(threshold=cfg.threshold, blur_sigma=cfg.blur_sigma, min_area=cfg.min_area)
        self.resources, self.batch_size = resources, batch_size

    def process_row(self, row: dict) -> dict:
        t0 = time.perf_counter()
        edit = self.settings[settings_key(row["scenario"], row["edit_id"])]
        source, edited = row["_source_rgb"], row["_edited_rgb"]
        truth = row.get("_source_annotations") or []
        sketch = json.loads(row["sketch"]) if row["sketch"] else None
        labels = json.loads(row["labels"])
        h, w = edited.shape[:2]
        drawn = box_px(sketch, w, h) if sketch else None
        # a sketch edit's object belongs in the box it was drawn in: that box is the region checked
        region = [drawn[0] / w, drawn[1] / h, drawn[2] / w, drawn[3] / h] if sketch else edit.region
        if self.cfg.enabled:
            anns, scores = localize(source, edited, row.get("_reasoning_rgb"), truth, edit.annotations, labels,
                                    region, self.params)
            row["scores"] = scores
        else:
            size = (source.shape[1], source.shape[0]), (edited.shape[1], edited.shape[0])
            anns = [] if edit.annotations == "drop" else carried(truth, *size)
        if sketch:
            # the object's box is where it was drawn (known, not estimated); its confidence is the share of
            # the change the localiser found inside it
            anns = [a for a in anns if not a["synthetic"]]
            inside = (row["scores"] or {}).get("inserted_in_region") if self.cfg.enabled else None
            anns.append(record(labels.get("inserted", sketch["shape"]), drawn, None,
                               synthetic=True, confidence=inside, attributes={"edit": "inserted", "from": "sketch"}))
        row["annotations"] = anns
        row["timings_ms"] = {**(row["timings_ms"] or {}), "localize_ms": (time.perf_counter() - t0) * 1000}
        return row
