"""The one dataset schema: column names, Arrow types, and the Hugging Face features metadata.

This is the only module that names columns. The Parquet schema carries the
`huggingface` metadata key that `datasets` reads, so
`load_dataset("parquet", data_files=...)` decodes the image columns to PIL
images without any code of ours. Lists are declared as `Sequence` features,
which every datasets release since 2.x reads (5.x maps them to `List`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa

from ..config import CALL_NAMES, SCORES
from . import video

# bump when a column changes meaning or type; written into run.json and the Parquet metadata.
# 2: `error_stage`; `reject_reasons` became structs (score, bound, value, limit, text); `reasoning_video`
#    (trajectory.storage=video); `nodes` (the Ray node of each actor stage)
# 3: `thumbnails` (small webp previews of the source, the edit and the trajectory, made by the encode stage
#    for the report)
# 4: `component_calls` (the model components each edit ran; cache hits run none)
# 5: `annotations` (ground truth after the edit), `severity`, `episode` (LeRobot), `source_columns`;
#    scores change_area, change_outside, inserted_in_region; `edited_base_image` (the edit before
#    upscale.enabled's super-resolution pass) and timings_ms.upscale_ms; `sketch` and `edit_input_image`
#    (sketch edits: what was drawn where, and the frame the model edited)
# 7: `backend` (the editor of the row: chronoedit, corruption, ...)
SCHEMA_VERSION = "7"
# columns added after datasets existed, with the value every row of an older dataset has: the readers that
# count and evaluate (inspect, the report, evaluate) fill them in; the rows of schema 6 were all ChronoEdit's
LATER_COLUMNS = {"backend": "chronoedit"}


def readable_columns(wanted, present) -> list[str]:
    """The wanted columns a dataset's shards have, the LATER_COLUMNS they lack left out (fill_later adds them)."""
    return [c for c in wanted if c in present or c not in LATER_COLUMNS]


def fill_later(rows: list[dict]) -> list[dict]:
    """Rows of an older dataset with the LATER_COLUMNS they lack, at the value those rows had."""
    for row in rows:
        for column, value in LATER_COLUMNS.items():
            row.setdefault(column, value)
    return rows

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
IMAGE_COLUMNS = ("source_image", "edited_image", "edited_base_image", "edit_input_image")
IMAGE_LIST_COLUMNS = ("reasoning_frames", "previews")
# columns emptied for rows kept only as a record (rejected/ when filter.write_rejected=false); the small
# thumbnails stay, so the report still shows what was rejected
BULKY_COLUMNS = (*IMAGE_COLUMNS, "reasoning_video")
# the `thumbnails` column: the reasoning frames are one image, `trajectory_frames` equal tiles side by side
THUMBNAILS = pa.struct([("source", IMAGE), ("edited", IMAGE), ("trajectory", IMAGE),
                        ("trajectory_frames", pa.int32())])
THUMBNAIL_IMAGES = ("source", "edited", "trajectory")

GENERATION = pa.struct(
    [
        ("steps", pa.int32()),
        ("guidance", pa.float32()),
        ("flow_shift", pa.float32()),
        ("reasoning", pa.bool_()),
        ("reasoning_steps", pa.int32()),
        ("num_frames", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("loras", pa.list_(pa.string())),
    ]
)
SCORES_TYPE = pa.struct([(name, pa.float32()) for name in SCORES])
# total_ms is the edit (prepare to the last decode); read_ms, encode_ms and score_ms are the other stages
TIMING_FIELDS = ("read_ms", "prepare_ms", "denoise_ms", "decode_ms", "reasoning_decode_ms", "preview_decode_ms",
                 "upscale_ms", "encode_ms", "total_ms", "localize_ms", "score_ms", "enhance_ms", "judge_ms")
TIMINGS = pa.struct([(name, pa.float32()) for name in TIMING_FIELDS])
# the model components' calls of one edit; a batched call's go to its first sample's row
CALL_FIELDS = CALL_NAMES
COMPONENT_CALLS = pa.struct([(name, pa.int32()) for name in CALL_FIELDS])
# one failed filter bound: bound is "min" or "max"; value is null when the score could not be computed
REJECTION = pa.struct([("score", pa.string()), ("bound", pa.string()), ("value", pa.float32()),
                       ("limit", pa.float32()), ("text", pa.string())])

# one object of the `annotations` column (see perception/labels.py): box in the edited image's pixels,
# source_box in the source frame's (null for an object the edit created); ignore: a region a detector is
# neither rewarded nor penalised for (KITTI DontCare, COCO crowd, a removed object); confidence: the
# change mask's for a localised box; occlusion: the share of a source box the inserted object covers;
# attributes: JSON (truncation, 3D box, visibility, "edit": "inserted" | "removed" ...)
BOX = pa.list_(pa.float32())
ANNOTATION = pa.struct([("label", pa.string()), ("box", BOX), ("source_box", BOX), ("synthetic", pa.bool_()),
                        ("ignore", pa.bool_()), ("confidence", pa.float32()), ("occlusion", pa.float32()),
                        ("attributes", pa.string())])
# a LeRobot frame's place in its episode and its robot vectors, to put edited frames back into episodes
EPISODE = pa.struct([("episode_index", pa.int64()), ("frame_index", pa.int64()), ("timestamp", pa.float64()),
                     ("task", pa.string()), ("action", pa.list_(pa.float32())),
                     ("state", pa.list_(pa.float32()))])

SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("run_id", pa.string()),
        ("scenario", pa.string()),
        ("edit_id", pa.string()),
        ("sample_index", pa.int32()),
        ("seed", pa.int64()),
        ("source_id", pa.string()),
        ("source_uri", pa.string()),
        # the source's sequence (video, LeRobot episode, KITTI raw drive, nuScenes scene) and moment (the cameras
        # of one frame or sample) this frame belongs to; null where the source has none
        ("sequence_id", pa.string()),
        ("instant_id", pa.string()),
        # JSON object: original size/mode, frame index, timestamp ... of the source frame
        ("source_meta", pa.string()),
        # what the editor was given: the scenario's instruction, or the enhancer's rewrite of it
        ("prompt", pa.string()),
        # the scenario's rendered instruction (equal to prompt unless the enhancer rewrote it)
        ("prompt_original", pa.string()),
        # JSON: the VLM that rewrote the prompt (model, hash, random_weights); null when not rewritten
        ("enhancer", pa.string()),
        ("negative_prompt", pa.string()),
        ("target_caption", pa.string()),
        ("source_caption", pa.string()),
        # JSON object of the scenario's free-form labels (e.g. {"inserted": "pedestrian"})
        ("labels", pa.string()),
        # JSON object of the template variable choices that rendered the prompt
        ("choices", pa.string()),
        # the severity level the scenario maps these choices to (1 = mildest); null when it declares none
        ("severity", pa.int32()),
        # sketch edits: JSON, where the drawing stood on the frame before the edit (shape, center_x, base and
        # height as fractions of the frame, aspect in pixels); the box itself is in `annotations`
        ("sketch", pa.string()),
        # the ground truth of the edited image: the source's boxes as the edit leaves them, plus what it inserted
        ("annotations", pa.list_(ANNOTATION)),
        # LeRobot sources: episode, frame, timestamp, task, action and state of the frame; null otherwise
        ("episode", EPISODE),
        # JSON object: the input's own columns named by input.keep_columns (Parquet sources)
        ("source_columns", pa.string()),
        ("source_image", IMAGE),
        ("edited_image", IMAGE),
        # upscale.enabled: the edit at the model's resolution, before the super-resolution pass (edited_image)
        ("edited_base_image", IMAGE),
        # sketch edits: the frame the model was given (the source with the sketch drawn on it)
        ("edit_input_image", IMAGE),
        ("reasoning_frames", pa.list_(IMAGE)),
        # trajectory.storage=video: the reasoning frames as one MP4 (decode: dataset.video.decode_video)
        ("reasoning_video", video.VIDEO),
        # "decoded" | "x0_at_step_k" | null (no reasoning)
        ("reasoning_kind", pa.string()),
        # for x0_at_step_k: steps run before the estimate, and its noise level
        ("reasoning_step", pa.int32()),
        ("reasoning_sigma", pa.float32()),
        ("previews", pa.list_(IMAGE)),
        # small previews for the report and quick looks (report.thumbnail_side); null when not made
        ("thumbnails", THUMBNAILS),
        ("generation", GENERATION),
        # the editor backend that made the edit (config.BACKENDS: chronoedit, corruption, ...)
        ("backend", pa.string()),
        ("model_id", pa.string()),
        ("model_hash", pa.string()),
        # true when the edit came from the tiny random-weight checkpoint
        ("random_weights", pa.bool_()),
        ("scores", SCORES_TYPE),
        # which CLIP produced the scores, and whether its weights were random
        ("scorer", pa.string()),
        # JSON: the VLM judge behind vlm_consistency / vlm_quality; null when judge.enabled is off
        ("judge", pa.string()),
        ("keep", pa.bool_()),
        ("reject_reasons", pa.list_(REJECTION)),
        # the stage that failed ("read", "edit", "encode", "score", ...) and its message
        ("error_stage", pa.string()),
        ("error", pa.string()),
        # JSON object: the Ray node id each actor stage ran on ({"edit": "...", "score": "..."})
        ("nodes", pa.string()),
        ("timings_ms", TIMINGS),
        ("component_calls", COMPONENT_CALLS),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def _feature(arrow_type: pa.DataType, name: str = "") -> dict:
    if name == "reasoning_video":
        # same Arrow type as an image, so named explicitly; not datasets' Video (see dataset/video.py)
        return video.HF_FEATURE
    if arrow_type == IMAGE:
        return {"_type": "Image"}
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "Sequence"}
    if pa.types.is_struct(arrow_type):
        return {f.name: _feature(f.type) for f in arrow_type}
    if pa.types.is_timestamp(arrow_type):
        return {"dtype": f"timestamp[{arrow_type.unit}, tz={arrow_type.tz}]", "_type": "Value"}
    names = {pa.float32(): "float32", pa.float64(): "float64", pa.string(): "string", pa.bool_(): "bool",
             pa.int32(): "int32", pa.int64(): "int64"}
    return {"dtype": names[arrow_type], "_type": "Value"}


def hf_features() -> dict:
    return {f.name: _feature(f.type, f.name) for f in SCHEMA}


def schema_with_metadata(extra: dict | None = None) -> pa.Schema:
    """SCHEMA plus the `huggingface` features key and our own version/provenance key."""
    meta = {
        b"huggingface": json.dumps({"info": {"features": hf_features()}}).encode(),
        b"chronoedit_sim": json.dumps({"schema_version": SCHEMA_VERSION, **(extra or {})}).encode(),
    }
    return SCHEMA.with_metadata(meta)


def image_struct(data: bytes | None, name: str | None = None) -> dict | None:
    return None if data is None else {"bytes": data, "path": name}


def base_row(task: dict, run_id: str) -> dict:
    """The row fields known before any model work, from a job task (see runtime.plan)."""
    return {
        "job_id": task["job_id"],
        "run_id": run_id,
        "scenario": task["scenario"],
        "edit_id": task["edit_id"],
        "sample_index": task["sample_index"],
        "seed": task["seed"],
        "source_id": task["source_id"],
        "source_uri": task["source_uri"],
        "sequence_id": task.get("sequence_id"),
        "instant_id": task.get("instant_id"),
        "source_meta": json.dumps(task.get("source_meta") or {}, sort_keys=True),
        "prompt": task["prompt"],
        "prompt_original": task["prompt"],
        "enhancer": None,
        "negative_prompt": task["negative_prompt"],
        "target_caption": task["target_caption"],
        "source_caption": task["source_caption"],
        "labels": json.dumps(task["labels"], sort_keys=True),
        "choices": json.dumps(task["choices"], sort_keys=True),
        "severity": task.get("severity"),
        "sketch": json.dumps(task["sketch"], sort_keys=True) if task.get("sketch") else None,
        "annotations": [],
        "episode": None,
        "source_columns": None,
        "source_image": None,
        "edited_image": None,
        "edited_base_image": None,
        "edit_input_image": None,
        "reasoning_frames": [],
        "reasoning_video": None,
        "reasoning_kind": None,
        "reasoning_step": None,
        "reasoning_sigma": None,
        "previews": [],
        "thumbnails": None,
        "generation": None,
        # rows a plan makes always name it; hand-built tasks (tests, tools) mean the default editor
        "backend": task.get("backend", "chronoedit"),
        "model_id": None,
        "model_hash": None,
        "random_weights": None,
        "scores": None,
        "scorer": None,
        "judge": None,
        "keep": False,
        "reject_reasons": [],
        "error_stage": None,
        "error": None,
        "nodes": None,
        "timings_ms": None,
        "component_calls": None,
        "created_at": None,
    }


def without_images(row: dict) -> dict:
    """The row with its image and video columns emptied (for rejected rows kept only as a record)."""
    return {**row, **dict.fromkeys(BULKY_COLUMNS), **{c: [] for c in IMAGE_LIST_COLUMNS}}


def fail_row(row: dict, stage: str, message: str) -> dict:
    """Mark the row failed in `stage`; later stages pass it through and the sink writes it."""
    row.update(error_stage=stage, error=f"{stage}: {message}", keep=False)
    return row


def finish_row(row: dict) -> dict:
    """Drop transient `_` fields (decoded frames travelling between stages) and stamp the row."""
    nodes = row.get("_nodes")
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    if nodes:
        row["nodes"] = json.dumps(nodes, sort_keys=True)
    if row["timings_ms"] is not None:
        row["timings_ms"] = timings_struct(row["timings_ms"])
    row["created_at"] = datetime.now(timezone.utc)
    if row["error"]:
        row["keep"] = False
    return row


def generation_struct(settings: dict) -> dict | None:
    """The pipeline settings an edit actually used, as the `generation` column (None: a backend without
    denoising steps, such as the corruptions, whose spec is the prompt). The other diffusers editors
    (engine/backends/) have no ChronoEdit-only setting (null) and Qwen's guidance is its true_cfg_scale."""
    if "num_inference_steps" not in settings:
        return None
    return {
        "steps": settings["num_inference_steps"],
        "guidance": settings.get("guidance_scale", settings.get("true_cfg_scale")),
        "flow_shift": settings.get("flow_shift"),
        "reasoning": settings.get("temporal_reasoning"),
        "reasoning_steps": settings.get("reasoning_steps"),
        "num_frames": settings.get("num_frames"),
        "height": settings["height"],
        "width": settings["width"],
        "loras": settings.get("loras", []),
    }


def timings_struct(timings: dict) -> dict:
    return {name: timings.get(name) for name in TIMING_FIELDS}
