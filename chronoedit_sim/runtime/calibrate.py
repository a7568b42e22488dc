"""`chronoedit-sim calibrate-cache`: MagCache's per-step ratios for this checkpoint and preset, measured
on the user's own frames and scenarios (the ratios are checkpoint- and scheduler-dependent, so no
shipped table fits a ChronoEdit checkpoint). In-process, one editor, no Ray: a handful of edits."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import ConfigLoader
from ..engine import speed
from ..engine.editor import Editor
from ..scenario import expand_edit, load_scenario
from ..sources.decode import decode_image


def calibrate_cache(scenario_files: list[str], images: list[str], output: str, overrides: list[str],
                    config_files: list[str] = (), edits: int = 4) -> dict:
    """Calibrate on the first `edits` jobs of the scenarios over `images`; write the JSON that
    model.step_cache_calibration reads (to a temporary name, then renamed)."""
    loader = ConfigLoader(overrides, list(config_files))
    cfg = loader.build()
    jobs = []
    for image in images:
        rgb = decode_image(Path(image).read_bytes(), uri=image, max_pixels=cfg.input.max_pixels).rgb
        for file in scenario_files:
            scenario = load_scenario(file)
            for edit in scenario.edits:
                jobs += [(rgb, job.prompt, job.seed) for job in expand_edit(scenario, edit, Path(image).name, cfg.seed)]
    # one job per edit and image first, then the rest: a few edits should span the scenarios' prompts
    jobs = jobs[:edits]
    editor = Editor(cfg.model)
    doc = speed.calibrate_magcache(editor, jobs, cfg.generation)
    doc["scenarios"], doc["images"] = list(scenario_files), [Path(i).name for i in images]
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    return doc
