"""The score stage. Until CLIP scoring lands it scores nothing and keeps every edit that succeeded."""

from __future__ import annotations

from ..runtime.stage import Resources, Stage
from ..runtime.stages import finish_row


class ScoreStage(Stage):
    name = "score"

    def __init__(self, settings: dict, resources: Resources, batch_size: int = 8):
        self.settings, self.resources, self.batch_size = settings, resources, batch_size

    def process_batch(self, rows: list[dict]) -> list[dict]:
        out = []
        for row in rows:
            row["scores"] = None
            row["reject_reasons"] = []
            row["keep"] = row["error"] is None
            out.append(finish_row(row))
        return out
