"""Known-answer material for the perception tests: synthetic scenes with objects at known boxes (written as
KITTI, COCO or nuScenes-style labels), fake editors for tests only, an in-process pipeline that runs the
real read / encode / localize / score stages around a fake editor into a real dataset, and two detectors
(an oracle and a colour-blob detector) written as files, the way a user hands one to `evaluate`."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 96, 64
# label -> colour of its object in the synthetic scenes (saturated, so the blob detector finds it)
COLOURS = {"Car": (30, 40, 220), "Pedestrian": (220, 30, 40)}
# frame -> [(label, box)] in pixels
SCENES = {
    "000000": [("Car", (8, 36, 40, 58)), ("Pedestrian", (60, 14, 70, 40))],
    "000001": [("Car", (50, 30, 90, 56))],
    "000002": [("Pedestrian", (20, 10, 32, 44)), ("Car", (56, 40, 86, 60))],
}
# where the fake inserting editor pastes its object (x0, y0, x1, y1), and its colour
PASTE_BOX, PASTE_COLOUR = (36, 8, 52, 40), (240, 200, 30)


def background(seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(seed)
    base = np.stack([60 + x, 70 + y, 90 + (x + y) // 3], -1)
    return np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)


def scene(name: str) -> np.ndarray:
    img = background(int(name))
    for label, (x0, y0, x1, y1) in SCENES[name]:
        img[y0:y1, x0:x1] = COLOURS[label]
    return img


def kitti_line(label: str, box) -> str:
    return f"{label} 0.00 0 -1.57 {box[0]:.2f} {box[1]:.2f} {box[2]:.2f} {box[3]:.2f} 1.50 1.60 3.90 1.00 1.60 12.00 0.10"


def write_kitti(root: Path, dontcare: bool = False) -> Path:
    """training/image_2 + label_2 of SCENES; frame 000001 also gets a DontCare region when asked."""
    for name, objects in SCENES.items():
        (root / "training" / "image_2").mkdir(parents=True, exist_ok=True)
        (root / "training" / "label_2").mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene(name)).save(root / "training" / "image_2" / f"{name}.png")
        lines = [kitti_line(label, box) for label, box in objects]
        if dontcare and name == "000001":
            lines.append("DontCare -1 -1 -10 0.00 0.00 10.00 10.00 -1 -1 -1 -1000 -1000 -1000 -10")
        (root / "training" / "label_2" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def quaternion_yaw(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def write_nuscenes(root: Path) -> dict[str, list[dict]]:
    """A nuScenes tree of one CAM_FRONT frame (1600x900, a gradient) and the JSON tables of its key frame;
    returns the tables."""
    # a camera at the ego origin looking along the ego's x axis (nuScenes' camera frame: z forward,
    # x right, y down), a car 10 m ahead, 2 m wide, 4 m long, 1.5 m high, centred on the optical axis
    img = root / "samples" / "CAM_FRONT" / "f.jpg"
    img.parent.mkdir(parents=True)
    y, x = np.mgrid[0:900, 0:1600]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(img)
    cam_rotation = [0.5, -0.5, 0.5, -0.5]  # ego x forward -> camera z forward
    tables = {
        "sample_data": [{"token": "sd", "sample_token": "s", "ego_pose_token": "e", "calibrated_sensor_token": "c",
                         "filename": "samples/CAM_FRONT/f.jpg", "width": 1600, "height": 900, "is_key_frame": True}],
        "calibrated_sensor": [{"token": "c", "translation": [0, 0, 0], "rotation": cam_rotation,
                               "camera_intrinsic": [[1000, 0, 800], [0, 1000, 450], [0, 0, 1]]}],
        "ego_pose": [{"token": "e", "translation": [100.0, 50.0, 0.0], "rotation": quaternion_yaw(0.0)}],
        "sample_annotation": [
            {"token": "a1", "sample_token": "s", "instance_token": "i1", "visibility_token": "4",
             "attribute_tokens": ["at"], "translation": [110.0, 50.0, 0.0], "size": [2.0, 4.0, 1.5],
             "rotation": quaternion_yaw(0.0)},
            {"token": "a2", "sample_token": "s", "instance_token": "i1", "visibility_token": "4",
             "attribute_tokens": [], "translation": [90.0, 50.0, 0.0], "size": [2.0, 4.0, 1.5],
             "rotation": quaternion_yaw(0.0)}],  # behind the camera: not in this image
        "instance": [{"token": "i1", "category_token": "k"}],
        "category": [{"token": "k", "name": "vehicle.car"}],
        "visibility": [{"token": "4", "level": "v80-100"}],
        "attribute": [{"token": "at", "name": "vehicle.parked"}],
    }
    (root / "v1.0-mini").mkdir()
    for name, rows in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(rows))
    return tables


# --- fake editors (tests only): each maps a source frame to (edited frame, reasoning frames)


def fake_insert(src: np.ndarray) -> np.ndarray:
    out = src.copy()
    x0, y0, x1, y1 = PASTE_BOX
    out[y0:y1, x0:x1] = PASTE_COLOUR
    return out


def fake_darken(src: np.ndarray) -> np.ndarray:
    return (src.astype(np.float32) * 0.45).astype(np.uint8)


def fake_erase(src: np.ndarray, box, seed: int = 0) -> np.ndarray:
    """The object at `box` painted over with the background behind it."""
    out = src.copy()
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = background(seed)[y0:y1, x0:x1]
    return out


def ramp(src: np.ndarray, edited: np.ndarray, n: int = 5) -> np.ndarray:
    """A trajectory (F, H, W, 3) from the source to the edit, blended linearly (the first frame is the source)."""
    return np.stack([(src * (1 - t) + edited * t).astype(np.uint8) for t in np.linspace(0, 1, n)])


def fake_dataset(scenarios: list[Path], input_path: Path, out: Path, overrides: list[str], edit_fn, reasoning: bool = False):
    """A real dataset of the plan's jobs, the edit done by `edit_fn(source_rgb, row)` in this process: the
    read, encode, localize and score stages and the sink are the run's own."""
    from chronoedit_sim.config import ConfigLoader
    from chronoedit_sim.dataset.schema import finish_row, generation_struct
    from chronoedit_sim.dataset.sink import DatasetWriter
    from chronoedit_sim.runtime.pipeline import BuildContext, Cluster, encode_stage, localize_stage, score_stage
    from chronoedit_sim.runtime.plan import make_plan
    from chronoedit_sim.stages.base import Resources
    from chronoedit_sim.stages.read import ReadStage

    plan = make_plan(ConfigLoader([*overrides, f"input.path={input_path}"]), [str(s) for s in scenarios])
    ctx = BuildContext(plan, "fake-run", Cluster(cpus=2, gpus=0))
    rows = ReadStage(plan.cfg.input, plan.cfg.output, "fake-run", Resources()).process_batch(list(plan.frame_tasks()))
    for row in rows:
        if row["error"]:
            continue
        edited = edit_fn(row["_source_rgb"], row)
        h, w = edited.shape[:2]
        row["_edited_rgb"] = edited
        row["_reasoning_rgb"] = ramp(row["_source_rgb"], edited) if reasoning else None
        row["reasoning_kind"] = "decoded" if reasoning else None
        row["generation"] = generation_struct({
            "num_inference_steps": 1, "guidance_scale": 1.0, "flow_shift": 1.0, "temporal_reasoning": reasoning,
            "reasoning_steps": 0, "num_frames": 5 if reasoning else 1, "height": h, "width": w, "loras": []})
        row["model_id"], row["random_weights"] = "fake-editor (tests only)", True
    for make in (encode_stage, localize_stage, score_stage):
        stage = make(ctx)
        stage.setup()
        rows = stage.process_batch(rows)
    writer = DatasetWriter(out, plan.cfg.output, {"run_id": "fake-run"})
    for row in rows:
        writer.add(finish_row(row), True)
    writer.flush()
    return out


# --- detectors, as the files a user passes to `evaluate --detector file.py:callable`


def write_oracle(path: Path, dataset: Path) -> str:
    """An oracle: looks each image up by its pixels in the dataset's ground truth and returns it (score 1)."""
    import hashlib
    import io

    import pyarrow.parquet as pq

    from chronoedit_sim.perception.export import source_truth

    truth, by_source = {}, {}
    for shard in sorted((dataset / "data").glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            if row["edited_image"] is None:
                continue
            px = np.asarray(Image.open(io.BytesIO(row["edited_image"]["bytes"])).convert("RGB"))
            truth[hashlib.sha256(px.tobytes()).hexdigest()] = [a for a in row["annotations"] if not a["ignore"]]
            by_source.setdefault(row["source_id"], (row["source_image"]["bytes"], []))[1].append(row["annotations"])
    for data, all_anns in by_source.values():
        px = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        truth[hashlib.sha256(px.tobytes()).hexdigest()] = [a for a in source_truth(all_anns) if not a["ignore"]]
    table = {k: [{"box": a["box"], "label": a["label"], "score": 1.0} for a in v] for k, v in truth.items()}
    (path.parent / (path.stem + ".json")).write_text(json.dumps(table))
    path.write_text(textwrap.dedent(f'''
        import hashlib, json
        import numpy as np
        TRUTH = json.load(open({str(path.parent / (path.stem + ".json"))!r}))
        def detect(images):
            return [TRUTH.get(hashlib.sha256(np.asarray(im).tobytes()).hexdigest(), []) for im in images]
    '''))
    return f"{path}:detect"


BLOB_DETECTOR = '''
import cv2
import numpy as np

# colour -> label; a pixel belongs to a blob when it is near the colour in absolute terms, so a darkened
# object is missed (that is the point: AP must fall under the darkening edit)
COLOURS = {"Car": (30, 40, 220), "Pedestrian": (220, 30, 40)}

class Blobs:
    def __init__(self, device="cpu"):
        self.device = device

    def __call__(self, images):
        out = []
        for im in images:
            px = np.asarray(im).astype(int)
            dets = []
            for label, colour in COLOURS.items():
                mask = (np.abs(px - colour).max(-1) < 40).astype(np.uint8)
                n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
                for k in range(1, n):
                    x, y, w, h, area = (int(v) for v in stats[k])
                    if area >= 20:
                        dets.append({"box": [x, y, x + w, y + h], "label": label, "score": min(area / 400, 1.0)})
            out.append(dets)
        return out
'''


def write_jittered(path: Path, dataset: Path, seed: int = 0) -> str:
    """The oracle's boxes, each shifted by seeded noise that grows as the image darkens (a detector that
    degrades under a darkening edit); its labels are the ground truth's, so on a KITTI run it answers
    `Pedestrian` at an inserted pedestrian. Deterministic: the noise is seeded by (seed, the image's pixels)."""
    write_oracle(path, dataset)
    path.write_text(path.read_text() + textwrap.dedent(f'''
        def jittered(images):
            out = []
            for im, found in zip(images, detect(images)):
                px = np.asarray(im)
                rng = np.random.default_rng([{seed}, int.from_bytes(hashlib.sha256(px.tobytes()).digest()[:8], "big")])
                sigma = 0.5 + 12 * max(0.0, 1 - px.mean() / 110)  # pixels; the scenes' mean is ~110
                h, w = px.shape[:2]
                dets = []
                for d in found:  # the box shifted (never inverted), kept inside the image
                    dx, dy = rng.normal(0, sigma, 2)
                    x0, y0, x1, y1 = d["box"]
                    box = [min(max(x0 + dx, 0), w), min(max(y0 + dy, 0), h), min(max(x1 + dx, 0), w), min(max(y1 + dy, 0), h)]
                    dets.append({{**d, "box": box, "score": float(rng.uniform(0.2, 1.0))}})
                out.append(dets)
            return out
    '''))
    return f"{path}:jittered"


def pycocotools_ap(images, dets) -> tuple[float, float]:
    """AP and AP50 of `dets` as pycocotools computes them: the reference our numbers are checked against."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from chronoedit_sim.perception.ap import coco_inputs

    gt, results = coco_inputs(images, dets)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = gt
        truth.createIndex()
        ev = COCOeval(truth, truth.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1]
