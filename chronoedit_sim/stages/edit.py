"""edit: one editor backend (engine/backends) on each of its rows, one loaded backend per actor or task.

The run's generative editor (ChronoEdit by default) runs as the GPU actor stage `edit`; a weight-free
backend (the corruptions) runs as CPU tasks in a stage of its own, `corrupt`, before it. Each instance edits
the rows of its backend and passes the others through untouched.

The actor returns raw frames in transient fields (`_edited_rgb`, `_reasoning_rgb`,
`_previews`); encoding them is the encode stage's work on other cores, so the GPU starts
its next job at once. A frame's jobs arrive together (`group_by`), so its image embedding
and VAE conditioning are computed once; with `batch_samples` the samples of one (frame, edit,
prompt) share one pipeline call.
"""

from __future__ import annotations

import os

from ..config import ModelConfig, UpscaleConfig
from ..engine.backends import backend_class
from ..dataset.schema import generation_struct
from ..scenario import EditSettings, settings_key
from .base import Resources, Stage


class EditStage(Stage):
    name = "edit"
    group_by = "source_id"

    def __init__(self, model_cfg: ModelConfig, settings: dict[str, EditSettings], resources: Resources,
                 batch_size: int = 1, batch_samples: bool = False,
                 prompt_texts: list[str] | None = None, upscale: UpscaleConfig | None = None,
                 backend: str = "chronoedit", name: str = "edit"):
        self.model_cfg, self.settings = model_cfg, settings
        # the rows this instance edits; the stage's name says where a failure happened ("edit", "corrupt")
        self.backend, self.name = backend, name
        # the super-resolution pass after each edit (None or disabled: none)
        self.upscale = upscale if upscale is not None and upscale.enabled else None
        self.resources, self.batch_size = resources, batch_size
        self.batch_samples = batch_samples
        # every text the jobs encode, encoded at setup when the text encoder is offloaded
        self.prompt_texts = prompt_texts
        self.editor = None

    def setup(self) -> None:
        if self.resources.gpus and not _cuda():
            # Ray granted a GPU but torch cannot use it (CPU build, driver mismatch): fail loudly
            # instead of letting model.device=auto quietly edit on the CPU
            raise RuntimeError(f"edit actor was given {self.resources.gpus} GPU(s) but torch sees no CUDA device "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        self.editor = backend_class(self.backend)(self.model_cfg)
        if self.upscale:
            self.editor.add_upscaler(self.upscale)
        if self.model_cfg.offload_text_encoder:
            if self.prompt_texts is None:  # never a text encoder gone with nothing encoded
                raise ValueError("model.offload_text_encoder needs the run's prompt texts (runtime.pipeline)")
            self.editor.offload_text_encoder(self.prompt_texts)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [row for part in self.iter_batch(rows) for row in part]

    def iter_batch(self, rows: list[dict]):
        """Each call's rows as soon as they are edited (a batch holds a whole frame's jobs)."""
        others = [row for row in rows if row["backend"] != self.backend]
        if others:  # another backend's, edited by its own stage
            yield others
        rows = [row for row in rows if row["backend"] == self.backend]
        if not self.batch_samples:
            for row in rows:
                yield [self._guarded(row)]
            return
        failed = [row for row in rows if row["error"]]
        if failed:
            yield failed
        # the samples of one (frame, edit, prompt): a fixed function of the jobs, so of the plan
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            if not row["error"]:
                # a sketch edit's samples differ in their input (each its own drawing)
                key = (row["source_id"], row["scenario"], row["edit_id"], row["prompt"], row["negative_prompt"],
                       row["sketch"])
                groups.setdefault(key, []).append(row)
        for group in groups.values():
            yield self.guard(group, self._edit_group)

    def process_row(self, row: dict) -> dict:
        return self._edit_group([row])[0]

    def _edit_group(self, rows: list[dict]) -> list[dict]:
        identity = self.editor.identity
        for row in rows:  # recorded even when the edit fails
            row.update(model_id=identity.model_id, model_hash=identity.model_hash,
                       random_weights=identity.random_weights)
        first = rows[0]
        s = self.settings[settings_key(first["scenario"], first["edit_id"])]
        frame = first.get("_edit_input_rgb", first["_source_rgb"])  # a sketch edit edits the drawn frame
        results = self.editor.edit_samples(frame, first["prompt"], seeds=[r["seed"] for r in rows],
                                           gen=s.generation, negative_prompt=first["negative_prompt"])
        for row, result in zip(rows, results):
            row.update(
                reasoning_kind=result.reasoning_kind,
                reasoning_step=result.reasoning_step,
                reasoning_sigma=result.reasoning_sigma,
                generation=generation_struct(result.settings),
                component_calls=result.calls,
                _edited_rgb=result.edited,
                _reasoning_rgb=result.reasoning_frames,
                _previews=result.previews,
            )
            row["timings_ms"] = {**(row["timings_ms"] or {}), **result.timings_ms}
            if self.upscale:
                self._upscale(row, s)
        return rows

    def _upscale(self, row: dict, s: EditSettings) -> None:
        """The stored edit becomes the Upscaler pass's output; the model-resolution edit stays beside it."""
        from ..engine.editor import fit_resolution

        base = row["_edited_rgb"]
        src_h, src_w = row["_source_rgb"].shape[:2]
        size = (src_w, src_h) if self.upscale.to_source_size else fit_resolution(base.shape[1], base.shape[0],
                                                                                  self.upscale.max_area)
        up = self.editor.upscale(base, size, seed=row["seed"], gen=s.generation)
        row["_edited_base_rgb"], row["_edited_rgb"] = base, up.edited
        row["timings_ms"]["upscale_ms"] = up.timings_ms["total_ms"]
        row["component_calls"] = {k: v + up.calls.get(k, 0) for k, v in row["component_calls"].items()}


def _cuda() -> bool:
    import torch  # here, not at setup's top: a CPU backend's tasks never import it

    return torch.cuda.is_available()
