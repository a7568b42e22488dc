"""sketch: the black pencil sketch of a sketch edit's object, drawn on its frame before the edit.

CPU work beside the reader (Ray Data runs it in the same tasks); in a run's pipeline only when a scenario
has sketch edits. The drawn frame goes to the editor in `_edit_input_rgb`; the source stays the source.
"""

from __future__ import annotations

import json

from ..perception.sketch import box_px, draw, load_shape
from .base import Resources, Stage


class SketchStage(Stage):
    name = "sketch"

    def __init__(self, resources: Resources, batch_size: int = 1):
        self.resources, self.batch_size = resources, batch_size
        self.shapes: dict[str, list] = {}

    def process_row(self, row: dict) -> dict:
        if row["sketch"]:
            sketch = json.loads(row["sketch"])
            if sketch["shape"] not in self.shapes:  # each drawing read once per worker
                self.shapes[sketch["shape"]] = load_shape(sketch["shape"])
            strokes = self.shapes[sketch["shape"]]
            h, w = row["_source_rgb"].shape[:2]
            row["_edit_input_rgb"] = draw(row["_source_rgb"], strokes, box_px(sketch, w, h))
        return row
