"""`chronoedit-sim reproduce OUT JOB_ID [--device cpu|cuda]`: edit one row's job again and compare.

The job is rebuilt from what the dataset recorded: run.json's config, command line and scenario texts (the
edit's settings through the same layers as the run), the row's prompt, negative prompt and seed, and its
source frame (the stored one where it is lossless, else read again from the input). The weights at the
recorded paths must be the recorded ones (run.json's `weights`), or nothing runs. The job goes through the
run's own stages (sketch, edit) in this process, with no Ray, and its edit is compared with the stored one
in the stored format: bit-exact on the same device and software (without runtime.batch_samples), or the
largest difference and the reasons it may differ.
"""

from __future__ import annotations

import time

import numpy as np

from .. import storage
from ..config import ConfigLoader
from ..dataset.encode import decode_rgb, encode_image
from ..dataset.manifest import package_versions, read_manifest
from ..dataset.schema import SCHEMA_VERSION
from ..dataset.where import scan
from ..errors import UserError
from ..scenario import edit_settings, parse_scenario, settings_key
from ..stages.base import Resources
from ..stages.edit import EditStage
from ..stages.sketch import SketchStage
from . import output
from .run import weights_identity

# what the job needs from its row
COLUMNS = ["job_id", "scenario", "edit_id", "seed", "source_id", "source_uri", "prompt", "negative_prompt", "sketch",
           "error", "source_image", "edited_image", "model_hash", "timings_ms"]


def reproduce(dataset: str, job_id: str, device: str | None = None, echo=print) -> int:
    """0: the new edit equals the stored one bit for bit; 1: it differs (how much and why are printed)."""
    t0 = time.perf_counter()
    src = storage.path(dataset)
    recorded = read_manifest(src)
    if recorded is None:
        raise UserError(f"{src}: no run.json: not a chronoedit-sim dataset")
    if recorded.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{src}: dataset schema {recorded.get('schema_version')}; this version reproduces schema "
                        f"{SCHEMA_VERSION}")
    rows = [r for batch in scan(src, [f"job_id={job_id}"], COLUMNS, 1, echo=lambda *_: None) for r in batch]
    if not rows:
        raise UserError(f"{src}: no row with job_id {job_id} in data/ (rows kept out of it have no images)")
    row = rows[0]
    if row["error"] is not None:
        raise UserError(f"{src}: job {job_id} failed in its run ({row['error'][:200]}): there is no edit to reproduce")
    loader = ConfigLoader([*recorded.get("overrides", []), *([f"model.device={device}"] if device else [])],
                          layers=[(f"{src / 'run.json'}", recorded["config"])])
    cfg = loader.build()
    scenarios = [parse_scenario(s["text"], s["path"]) for s in recorded["scenarios"]]
    settings = edit_settings(loader, scenarios)
    if not recorded.get("weights"):
        raise UserError(f"{src}: run.json records no weights identity (a cluster run, or an older version): "
                        "nothing to check the weights against")
    output.check_weights(src, recorded, weights_identity(cfg))
    row["_source_rgb"] = _source(row, cfg)
    row["timings_ms"] = {}
    if row["sketch"]:
        SketchStage(Resources()).process_row(row)
    stage = EditStage(cfg.model, settings, Resources(), upscale=cfg.upscale)
    stage.setup()
    stage.process_row(row)
    fmt = settings[settings_key(row["scenario"], row["edit_id"])].trajectory.edited_format
    new = decode_rgb(encode_image(row["_edited_rgb"], fmt))  # as the encode stage stores it
    old = decode_rgb(row["edited_image"]["bytes"])
    seconds = time.perf_counter() - t0
    if new.shape == old.shape and np.array_equal(new, old):
        echo(f"job {job_id}: bit-exact: the new edit equals the stored one ({new.shape[1]}x{new.shape[0]} {fmt}, "
             f"model hash {row['model_hash']}, {stage.editor.device}); {seconds:.1f} s")
        return 0
    if new.shape != old.shape:
        echo(f"job {job_id}: differs: the new edit is {new.shape[1]}x{new.shape[0]}, the stored one "
             f"{old.shape[1]}x{old.shape[0]}; {seconds:.1f} s")
    else:
        diff = np.abs(new.astype(int) - old.astype(int))
        echo(f"job {job_id}: differs: max {diff.max()} grey levels, mean {diff.mean():.3f}, on "
             f"{(diff.max(-1) > 0).mean():.2%} of the pixels; {seconds:.1f} s")
    for reason in _why(recorded, cfg, stage.editor.device, fmt):
        echo(f"  {reason}")
    return 1


def _source(row: dict, cfg) -> np.ndarray:
    """The frame the run edited: the stored source where it is stored losslessly, else the input read again."""
    if cfg.output.source_format == "png":
        return decode_rgb(row["source_image"]["bytes"])
    from ..sources.dispatch import list_input, read_input

    refs = [ref for ref in list_input(cfg.input) if ref.source_id == row["source_id"]]
    if not refs:
        raise UserError(f"{row['source_id']}: not in the input {cfg.input.path} any more, and the stored source is "
                        f"{cfg.output.source_format} (lossy): the frame the run edited is gone")
    (frame,) = read_input(refs, max_pixels=cfg.input.max_pixels, min_side=cfg.input.min_side)
    if isinstance(frame, Exception):
        raise UserError(f"{row['source_id']}: cannot be read again: {frame}")
    return frame.rgb


def _why(recorded: dict, cfg, device: str, fmt: str) -> list[str]:
    """What can make a rerun differ, as far as the dataset recorded it."""
    reasons = []
    then = recorded.get("packages") or {}
    now = package_versions()
    for name in ("torch", "diffusers", "transformers"):
        if then.get(name) != now.get(name):
            reasons.append(f"{name} {then.get(name)} then, {now.get(name)} now")
    recorded_device = (recorded.get("config") or {}).get("model", {}).get("device")
    if recorded_device not in (None, "auto") and not device.startswith(recorded_device):
        reasons.append(f"the run edited on model.device={recorded_device}, this on {device}")
    if not device.startswith("cpu"):
        reasons.append("GPU kernels are not bit-deterministic across cards, drivers and libraries")
    if cfg.runtime.batch_samples:
        reasons.append("runtime.batch_samples=true: a sample's result depends on the samples of its call")
    if fmt != "png":
        reasons.append(f"the edit is stored as lossy {fmt}: a difference below a grey level can grow in the codec")
    return reasons or ["nothing recorded explains it: same software, device and settings (a bug; please report)"]
