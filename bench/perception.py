"""Perception: localisation accuracy on a fake-editor corpus, and export and evaluate throughput.

A corpus of N synthetic driving-size frames (832x480, a textured background and 1-4 coloured objects at
random places, as a KITTI tree with labels) goes through the run's own read, encode, localize and score
stages with fake editors (tests only; no model): one pastes an object of random size and colour at a random
place, one darkens the whole frame (gamma and gain), one erases a random labelled object. An insertion whose colour
is close to what it covers (mean difference under localize.threshold) is counted apart: no change mask finds it. The edited frames are stored as
webp q90 (lossy, like a real run's trajectory frames), so localisation sees codec noise.
  localisation: IoU of the found inserted box with the pasted one (mean, median, share >= 0.7 / 0.5);
  share of darkened frames with (wrongly) an inserted box; share of erasures whose removed box is right.
  export: `export --format coco` images per second (edited + clean).
  evaluate: `evaluate` with the colour-blob detector of the tests (Ray, one CPU actor) images per second,
  start-up included.

Run: python bench/perception.py [--quick | --smoke]     -> table + bench/results/perception.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.ROOT / "tests"))  # the fake editors' in-process pipeline and the blob detector

W, H = 832, 480
SCENARIOS = {
    "insert": "name: insert\ndomain: driving\ndescription: paste\nlabels: {inserted: object}\n"
              "annotations: keep_and_insert\nedits:\n  - id: paste\n    prompt: Add an object.\n"
              "    target_caption: x\n    source_caption: y\n",
    "dark": "name: dark\ndomain: driving\ndescription: darken\nannotations: keep\nedits:\n  - id: night\n"
            "    prompt: Make it night.\n    target_caption: x\n    source_caption: y\n",
    "erase": "name: erase\ndomain: driving\ndescription: erase\nannotations: remove\nedits:\n  - id: one\n"
             "    prompt: Remove an object.\n    target_caption: x\n    source_caption: y\n",
}
COLOURS = {"Car": (30, 40, 220), "Pedestrian": (220, 30, 40)}


def corpus(root: Path, n: int, seed: int = 0) -> tuple[Path, dict]:
    """KITTI tree of n frames; returns it and {frame name: (background, objects)}."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    scenes = {}
    for i in range(n):
        y, x = np.mgrid[0:H, 0:W]
        bg = np.stack([60 + x // 8, 70 + y // 5, 90 + (x + y) // 12], -1) + rng.integers(-12, 13, (H, W, 3))
        bg = np.clip(bg, 0, 255).astype(np.uint8)
        img, objects = bg.copy(), []
        for _ in range(rng.integers(1, 5)):
            label = ("Car", "Pedestrian")[rng.integers(2)]
            w, h = (int(rng.integers(60, 200)), int(rng.integers(40, 120))) if label == "Car" else \
                (int(rng.integers(20, 50)), int(rng.integers(60, 160)))
            x0, y0 = int(rng.integers(0, W - w)), int(rng.integers(H // 3, H - h))
            img[y0:y0 + h, x0:x0 + w] = COLOURS[label]
            objects.append((label, (x0, y0, x0 + w, y0 + h)))
        name = f"{i:06d}"
        for sub in ("image_2", "label_2"):
            (root / "training" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "training" / "image_2" / f"{name}.png")
        from perception_helpers import kitti_line

        (root / "training" / "label_2" / f"{name}.txt").write_text("".join(kitti_line(lb, b) + "\n" for lb, b in objects))
        scenes[name] = (bg, objects)
    return root, scenes


def editor(scenes: dict, truth: dict):
    """The fake editors; each records what it did under the row's job_id."""
    import numpy as np

    def edit(src, row):
        rng = np.random.default_rng(int(row["job_id"][:8], 16))
        bg, objects = scenes[row["source_id"].split("/")[-1][:6]]
        out = src.copy()
        if row["scenario"] == "insert":
            w, h = int(rng.integers(24, 120)), int(rng.integers(40, 160))
            x0, y0 = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            out[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
            # how much the object differs from what it covers (mean absolute difference, 0-255)
            contrast = float(np.abs(out[y0:y0 + h, x0:x0 + w].astype(int) - src[y0:y0 + h, x0:x0 + w]).mean())
            truth[row["job_id"]] = (x0, y0, x0 + w, y0 + h)
            truth[row["job_id"] + ":contrast"] = contrast
        elif row["scenario"] == "dark":
            out = (255 * (src / 255.0) ** rng.uniform(1.2, 2.0) * rng.uniform(0.4, 0.7)).astype(np.uint8)
        else:
            k = int(rng.integers(len(objects)))
            x0, y0, x1, y1 = objects[k][1]
            out[y0:y1, x0:x1] = bg[y0:y1, x0:x1]
            truth[row["job_id"]] = objects[k][1]
        return out

    return edit


def main() -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from chronoedit_sim.runtime.evaluate import evaluate
    from chronoedit_sim.perception.export import export_benchmark
    from chronoedit_sim.perception.labels import iou
    from perception_helpers import BLOB_DETECTOR, fake_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=1, help="detector actors of evaluate")
    args = common.parse_args(parser, quick="20 frames instead of 200")
    n = 3 if args.smoke else 20 if args.quick else 200
    root = Path(tempfile.mkdtemp(prefix="cesim-bench-perception-"))
    kitti, scenes = corpus(root / "kitti", n)
    paths = []
    for name, text in SCENARIOS.items():
        (root / f"{name}.yaml").write_text(text)
        paths.append(root / f"{name}.yaml")
    truth: dict = {}
    overrides = ["model=tiny", "model.path=/unused", "scoring.clip.enabled=false", *common.NO_BOUNDS,
                 "trajectory.edited_format=webp"]
    t0 = time.perf_counter()
    dataset = fake_dataset(paths, kitti, root / "out", overrides, editor(scenes, truth))
    build_s = time.perf_counter() - t0
    rows = pq.ParquetDataset(str(dataset / "data")).read(columns=["job_id", "scenario", "annotations", "scores",
                                                                  "timings_ms", "error"]).to_pylist()
    ious, contrast, false_inserts, removed_right, localize_ms = [], [], 0, 0, []
    for r in rows:
        assert r["error"] is None, r["error"]
        localize_ms.append(r["timings_ms"]["localize_ms"])
        found = [a for a in r["annotations"] if a["synthetic"]]
        if r["scenario"] == "insert":
            ious.append(iou(found[0]["box"], truth[r["job_id"]]) if found else 0.0)
            contrast.append(truth[r["job_id"] + ":contrast"])
        elif r["scenario"] == "dark":
            false_inserts += r["scores"]["change_area"] > 0.01
        else:
            gone = [a for a in r["annotations"] if a["ignore"] and '"removed"' in a["attributes"]]
            removed_right += len(gone) == 1 and iou(gone[0]["box"], truth[r["job_id"]]) >= 0.9
    t0 = time.perf_counter()
    counts = export_benchmark(dataset, root / "coco", "coco", echo=lambda *_: None)
    export_s = time.perf_counter() - t0
    (root / "blobs.py").write_text(BLOB_DETECTOR)
    # with and without the bootstrap's intervals (1000 resamples of the source frames, the default)
    runs = {}
    for resamples in (0, 1000):
        t0 = time.perf_counter()
        result, _ = evaluate(dataset, f"{root / 'blobs.py'}:Blobs", actors=args.actors, bootstrap=resamples,
                             echo=lambda *_: None)
        runs[resamples] = (time.perf_counter() - t0, result["seconds"]["metrics"])
    eval_s = runs[1000][0]
    # the detector alone, in this process, on exported images (decode included): what evaluate adds is the rest
    from PIL import Image

    from chronoedit_sim.stages.detect import load_callable

    blobs = load_callable(f"{root / 'blobs.py'}:Blobs")()
    files = sorted((root / "coco" / "images").rglob("*.*"))[:50]
    t0 = time.perf_counter()
    for f in files:
        blobs([Image.open(f).convert("RGB")])
    detector_ms = (time.perf_counter() - t0) / len(files) * 1000
    images = sum(counts.values())
    doc = {
        "frames": n, "size": f"{W}x{H}", "rows": len(rows), "dataset_build_s": round(build_s, 1),
        "localization": {
            "inserts": len(ious), "iou_mean": float(np.mean(ious)), "iou_median": float(np.median(ious)),
            "share_iou_ge_0_7": float(np.mean(np.array(ious) >= 0.7)),
            "share_iou_ge_0_5": float(np.mean(np.array(ious) >= 0.5)),
            # insertions that differ from what they cover by at least localize.threshold (24) on average
            "visible_inserts": int(np.sum(np.array(contrast) >= 24)),
            "share_iou_ge_0_7_visible": float(np.mean(np.array(ious)[np.array(contrast) >= 24] >= 0.7)),
            "darkened_with_change_area_over_1pct": false_inserts / n, "erasures_found": removed_right / n,
            "localize_ms_median": float(np.median(localize_ms))},
        "export": {"images": images, "seconds": round(export_s, 2), "images_per_s": round(images / export_s, 1)},
        "evaluate": {"images": result["images"], "seconds": round(eval_s, 2), "actors": args.actors,
                     "detector_alone_ms_per_image": round(detector_ms, 1),
                     "images_per_s": round(result["images"] / eval_s, 1), "clean_ap": result["clean_ap"],
                     "mPC": result["mPC"], "rPC": result["rPC"], "mPC_ci": result["mPC_ci"],
                     **{f"bootstrap_{b}": {"s_per_image": round(t / result["images"], 4),
                                           "metrics_s_per_image": round(m / result["images"], 4)}
                        for b, (t, m) in runs.items()}},
    }
    table = [{"measure": k, "value": v} for k, v in doc["localization"].items()]
    table += [{"measure": f"{part} images/s", "value": doc[part]["images_per_s"]} for part in ("export", "evaluate")]
    common.print_table(table, ["measure", "value"])
    common.write_result("perception", {"quick": args.quick, "machine": common.machine(), **doc})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
