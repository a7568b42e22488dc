"""The report: build time, size on disk and time to first paint, for a synthetic dataset (no model runs).

Rows are written shard-wise by the dataset's own writer (dataset.sink.DatasetWriter) and run.json by
the manifest code, as a run writes them: images of 160x96 (the tiny model's edit size) drawn from a
pool of 32 structured variants, 9 reasoning frames (webp) per row, 2% of rows failed in `read`, one of
two edits under a bound that rejects about half its rows. The same rows go to two datasets: one
with the `thumbnails` column filled (as the encode stage fills it), one without (the report then
makes them in a streaming pass over the shards). Each report is built in a fresh process (the
time excludes Python's imports; matplotlib's is inside, as a run pays it), with its peak RSS.
Time to first paint: headless Chromium (the system's, through Playwright) opens the report from
disk; first-contentful-paint and the moment the first page of cards is on screen (the page's
`ce-cards` mark), median of 3 fresh pages.

Run: python bench/report.py [--quick | --smoke]   (quick: 5,000 rows; default: 5,000 and 50,000; smoke: 50)
Prints a table and writes bench/results/report.json.
"""

from __future__ import annotations

import common  # noqa: F401  (puts this checkout's package first on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from chronoedit_sim.config import load_config  # noqa: E402
from chronoedit_sim.dataset.encode import encode_image, make_thumbnails  # noqa: E402
from chronoedit_sim.dataset.manifest import finish_manifest, start_manifest  # noqa: E402
from chronoedit_sim.dataset.schema import base_row, fail_row, finish_row, image_struct  # noqa: E402
from chronoedit_sim.dataset.sink import DatasetWriter  # noqa: E402
from chronoedit_sim.dataset.stats import RunCounts  # noqa: E402
from chronoedit_sim.scenario import EditSettings  # noqa: E402
from chronoedit_sim.scoring.filter import apply_filter  # noqa: E402

H, W, FRAMES, VARIANTS = 96, 160, 9, 32
EDITS = ("add_car", "strict")
# in a fresh process: import, then time the build alone; print seconds and peak RSS as JSON
BUILD = """
import json, sys, time
from pathlib import Path
from chronoedit_sim.report.build import build_report
t0 = time.perf_counter()
build_report(Path(sys.argv[1]))
print(json.dumps({"build_s": time.perf_counter() - t0,
                  "peak_rss_mib": peak_rss_mib()}))
"""


def pool(n: int = VARIANTS) -> list[dict]:
    """n sets of (source, edit, 9 reasoning frames) bytes, and their thumbnails."""
    y, x = np.mgrid[0:H, 0:W]
    sets = []
    for i in range(n):
        src = np.stack([(x * 2 + 7 * i) % 256, (y * 3 + i) % 256, np.full_like(x, 40 + 5 * i)], -1).astype(np.uint8)
        frames = np.stack([src // 2 + np.uint8(12 * k) for k in range(FRAMES)])
        frames[:, 30:60, 40 + 4 * (i % 8):80] = (200, 40, 40)
        sets.append({"source": image_struct(encode_image(src), "source.png"),
                     "edited": image_struct(encode_image(frames[-1]), "edited.png"),
                     "frames": [image_struct(encode_image(f, "webp"), f"r{k:03d}.webp") for k, f in enumerate(frames)],
                     "thumbnails": make_thumbnails(src, frames[-1], frames, 160)})
    return sets


def write_datasets(root: Path, rows: int) -> dict[str, Path]:
    """The same rows into root/with (thumbnails) and root/without; returns both paths."""
    cfg = load_config(["model=tiny", "model.path=/bench/tiny"])
    lenient = EditSettings(cfg.generation, cfg.trajectory, load_config(
        ["model=tiny", "model.path=/b", "filter.clip_text_min=null", "filter.clip_image_min=null",
         "filter.clip_direction_min=null"]).filter)
    strict = EditSettings(cfg.generation, cfg.trajectory, load_config(
        ["model=tiny", "model.path=/b", "filter.clip_text_min=null", "filter.clip_image_min=null",
         "filter.clip_direction_min=null", "filter.ssim_min=0.5"]).filter)
    settings = {f"bench/{EDITS[0]}": lenient, f"bench/{EDITS[1]}": strict}
    images = pool()
    paths = {"with": root / "with", "without": root / "without"}
    for kind, out in paths.items():
        out.mkdir()
        manifest = start_manifest(out, None, cfg, "bench", [], "bench-run", settings)
        writer = DatasetWriter(out, cfg.output, {"run_id": "bench-run"})
        counts = RunCounts(planned=rows, planned_by_edit={f"bench/{e}": len(range(j, rows, 2))
                                                          for j, e in enumerate(EDITS)})
        rng = np.random.default_rng(0)  # the same rows in both datasets
        for i in range(rows):
            edit = EDITS[i % 2]
            job = {"job_id": f"{i:020x}", "scenario": "bench", "edit_id": edit, "sample_index": 0, "seed": i,
                   "source_id": f"frame_{i // 2:06d}.png", "source_uri": f"/bench/frame_{i // 2:06d}.png",
                   "prompt": f"Add a red car ({i}). Keep the camera unchanged.", "negative_prompt": "",
                   "target_caption": "a street with a red car", "source_caption": "a street", "labels": {},
                   "choices": {}}
            row, pick = base_row(job, "bench-run"), images[i % VARIANTS]
            scores = {"ssim": float(rng.uniform(0.2, 0.9)), "psnr": float(rng.uniform(10, 40)),
                      "clip_image": float(rng.uniform(0.5, 1.0)), "trajectory_monotonic": float(rng.uniform(0, 1))}
            if i % 50 == 7:
                fail_row(row, "read", "bench: a frame that does not decode")
            else:
                keep, reasons = apply_filter(scores, settings[f"bench/{edit}"].filter)
                row.update(source_image=pick["source"], edited_image=pick["edited"], reasoning_frames=pick["frames"],
                           reasoning_kind="decoded", scores=scores, keep=keep, reject_reasons=reasons,
                           model_id="/bench/tiny", model_hash="bench", random_weights=True,
                           scorer=json.dumps({"model": "local-dir:/bench/tiny-clip", "random_weights": True}),
                           thumbnails=pick["thumbnails"] if kind == "with" else None,
                           timings_ms={"read_ms": rng.uniform(1, 5), "total_ms": rng.uniform(300, 900),
                                       "encode_ms": rng.uniform(20, 60), "score_ms": rng.uniform(5, 30)})
            row = finish_row(row)
            writer.add(row, write_rejected=True)
            counts.add(row)
        writer.flush()
        finish_manifest(out, manifest, counts, 1.0, 1.0, lambda *_: None)
    return paths


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def first_paint(index: Path, repeats: int = 3) -> dict:
    """Median ms to first-contentful-paint and to the first page of cards, fresh page each time."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return {"skipped": "no chromium on PATH"}
    fcp, cards = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(index.as_uri())
            page.wait_for_selector("#cards[data-state=ready]", timeout=120_000)
            marks = page.evaluate("""() => ({
                fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
                cards: (performance.getEntriesByName('ce-cards')[0] || {}).startTime})""")
            fcp.append(marks["fcp"])
            cards.append(marks["cards"])
            page.close()
        browser.close()
    return {"first_contentful_paint_ms": round(statistics.median(fcp), 1),
            "first_page_of_cards_ms": round(statistics.median(cards), 1)}


def measure(rows: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="cesim-bench-report-") as tmp:
        t0 = time.perf_counter()
        paths = write_datasets(Path(tmp), rows)
        print(f"{rows:,} rows written twice in {time.perf_counter() - t0:.1f} s")
        for kind, out in paths.items():
            data_bytes, shards = folder_size(out / "data")
            done = subprocess.run([sys.executable, "-c", common.CHILD_PRELUDE + BUILD, str(out)], cwd=common.ROOT, check=True,
                                  capture_output=True, text=True)
            build = json.loads(done.stdout.strip().splitlines()[-1])
            size, files = folder_size(out / "report")
            thumbs, _ = folder_size(out / "report" / "t")
            full, _ = folder_size(out / "report" / "f")
            results.append({"rows": rows, "thumbnails": "in the dataset" if kind == "with" else "made from shards",
                            "build_s": round(build["build_s"], 2), "peak_rss_mib": round(build["peak_rss_mib"]),
                            "report_mib": round(size / 2**20, 1), "files": files,
                            "thumbs_mib": round(thumbs / 2**20, 1), "full_images_mib": round(full / 2**20, 1),
                            "dataset_mib": round(data_bytes / 2**20, 1), "shards": shards,
                            **first_paint(out / "report" / "index.html")})
            print(results[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = common.parse_args(parser, quick="5,000 rows only")
    sizes = [50] if args.smoke else [5_000] if args.quick else [5_000, 50_000]
    results = [r for n in sizes for r in measure(n)]
    common.print_table(results, ["rows", "thumbnails", "build_s", "peak_rss_mib", "report_mib", "files",
                                 "first_contentful_paint_ms", "first_page_of_cards_ms"])
    common.write_result("report", {"machine": common.machine(), "quick": args.quick, "image": f"{W}x{H}",
                                   "reasoning_frames": FRAMES, "results": results})


if __name__ == "__main__":
    main()
