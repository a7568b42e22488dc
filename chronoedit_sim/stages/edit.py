"""edit: ChronoEdit on each row, one loaded Editor per actor, and nothing else.

The actor returns raw frames in transient fields (`_edited_rgb`, `_reasoning_rgb`,
`_previews`); encoding them is the encode stage's work on other cores, so the GPU starts
its next job at once.
"""

from __future__ import annotations

import os

from ..config import ModelConfig
from ..dataset.schema import generation_struct
from ..scenario import EditSettings, settings_key
from .base import Resources, Stage


class EditStage(Stage):
    name = "edit"

    def __init__(self, model_cfg: ModelConfig, settings: dict[str, EditSettings], resources: Resources,
                 batch_size: int = 1):
        self.model_cfg, self.settings = model_cfg, settings
        self.resources, self.batch_size = resources, batch_size
        self.editor = None

    def setup(self) -> None:
        import torch

        from ..engine.editor import Editor

        if self.resources.gpus and not torch.cuda.is_available():
            # Ray granted a GPU but torch cannot use it (CPU build, driver mismatch): fail loudly
            # instead of letting model.device=auto quietly edit on the CPU
            raise RuntimeError(f"edit actor was given {self.resources.gpus} GPU(s) but torch sees no CUDA device "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        self.editor = Editor(self.model_cfg)

    def process_row(self, row: dict) -> dict:
        identity = self.editor.identity
        row.update(model_id=identity.model_id, model_hash=identity.model_hash, random_weights=identity.random_weights)
        s = self.settings[settings_key(row["scenario"], row["edit_id"])]
        result = self.editor.edit(row["_source_rgb"], row["prompt"], seed=row["seed"], gen=s.generation,
                                  negative_prompt=row["negative_prompt"])
        row.update(
            reasoning_kind=result.reasoning_kind,
            reasoning_step=result.reasoning_step,
            reasoning_sigma=result.reasoning_sigma,
            generation=generation_struct(result.settings),
            _edited_rgb=result.edited,
            _reasoning_rgb=result.reasoning_frames,
            _previews=result.previews,
        )
        row["timings_ms"] = {**(row["timings_ms"] or {}), **result.timings_ms}
        return row
