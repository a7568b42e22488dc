"""The `chronoedit-sim` command: parse, load config, call one function per subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import UserError

log = logging.getLogger("chronoedit_sim")
TRAJECTORY_FORMATS = ("mp4", "gif", "webp", "png-strip")
# export's formats: robustness benchmarks, and a LoRA training set for DiffSynth-Studio
EXPORT_FORMATS = ("coco", "yolo", "kitti", "diffsynth", "lerobot", "video")
WHERE_HELP = ("only rows where column=value (also !=, <, <=, >, >=), e.g. keep=true, scenario=rain, "
              "outcome=rejected, scores.ssim>0.5; repeat it or separate with commas to AND them")
EXIT_CODES = """exit codes:
  0  done (verify: the dataset is whole; reproduce: bit-exact)
  1  verify: the dataset is not whole; reproduce: the edit differs; anything else with a traceback is a bug
  2  a problem with what was asked: config, input, weights, an output in use by another writer
  3  run/score finished, but more rows failed than runtime.max_failed_fraction allows;
     evaluate finished, but images failed or had their detections refused (left out of the numbers)
  4  writing the output failed (full disk, I/O error): complete shards are safe; rerun the same
     command to resume once there is room"""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # diffusers/transformers load reports are noise for a CLI user. Said through the environment,
        # which they read when imported (here or in a Ray worker this process starts): importing them
        # only to silence them costs every command, `inspect` included, seconds on a small machine
        for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
            os.environ.setdefault(name, "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _no_progress_bars(args) -> None:
    """For the commands that load or write models in this process: their per-file progress bars."""
    if args.verbose:
        return
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def cmd_make_tiny_model(args) -> int:
    _no_progress_bars(args)
    from .engine.tiny import write_tiny_model
    from .engine.tiny_editors import write_tiny_editor
    from .engine.tiny_vlm import write_tiny_vlm
    from .engine.weights import CHECKPOINTS
    from .scoring.clip import write_tiny_clip

    ckpt = CHECKPOINTS[args.backend]
    path = (write_tiny_model(args.dir, seed=args.seed) if args.backend == "chronoedit"
            else write_tiny_editor(args.backend, args.dir, seed=args.seed))
    clip = write_tiny_clip(args.clip_dir or f"{str(path).rstrip('/')}-clip", seed=args.seed)
    vlm = write_tiny_vlm(args.vlm_dir or f"{str(path).rstrip('/')}-vlm", seed=args.seed)
    for what, folder in ((f"{ckpt.title} checkpoint", path), ("open_clip model", clip),
                         ("Qwen-VL (its text is noise)", vlm)):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"wrote a tiny RANDOM-WEIGHT {what} to {folder} ({size / 1024:.0f} KiB)")
    print(f"they prove the plumbing, not edit or score quality; use them with: model={ckpt.tiny_preset} "
          f"model.path={path} scoring.clip.model=local-dir:{clip} vlm.path={vlm}")
    return 0


def cmd_validate(args) -> int:
    from .config import ConfigLoader
    from .scenario import expand_edit, load_scenario

    loader = ConfigLoader(args.overrides, args.config)
    run_seed = loader.build().seed
    failed = 0
    for file in args.files:
        try:
            scenario = load_scenario(file)
            for edit in scenario.edits:
                loader.build(scenario.config_layers(edit))
        except UserError as exc:
            print(f"ERROR {exc}")
            failed += 1
            continue
        print(f"OK {file}: scenario {scenario.name} ({scenario.domain}), {len(scenario.edits)} edit(s)")
        for edit in scenario.edits:
            for job in expand_edit(scenario, edit, args.source_id, run_seed):
                print(f"  {job.edit_id} sample {job.sample_index} seed {job.seed} job {job.job_id}")
                print(f"    prompt: {job.prompt}")
    return 1 if failed else 0


def cmd_edit(args) -> int:
    from .config import load_config
    from .dataset.encode import encode_image, frame_strip
    from .dataset.trajectories import encode_trajectory
    from .engine.editor import Editor
    from .engine.lora import check_loras
    from .engine.weights import resolve_model_root
    from .sources.decode import decode_image

    _no_progress_bars(args)
    cfg = load_config(args.overrides, config_files=args.config)
    image = decode_image(Path(args.image).read_bytes(), uri=args.image).rgb
    # a LoRA that is no LoRA of this transformer: one line, before the model loads
    check_loras(cfg.model, resolve_model_root(cfg.model.path, cfg.model.revision, cfg.model.allow_download))
    editor = Editor(cfg.model)
    result = editor.edit(image, args.prompt, seed=args.seed, gen=cfg.generation, negative_prompt=args.negative_prompt)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_image(result.edited, out.suffix.lstrip(".").lower().replace("jpg", "jpeg") or "png"))
    s = result.settings
    print(f"edited frame ({s['width']}x{s['height']}, {s['num_inference_steps']} steps) -> {out}")
    if result.reasoning_frames is not None:
        strip = out.with_name(out.stem + "_reasoning.png")
        strip.write_bytes(frame_strip(result.reasoning_frames))
        video = out.with_name(out.stem + "_reasoning.mp4")
        video.write_bytes(encode_trajectory(result.reasoning_frames, "mp4"))  # H.264, as export-trajectories
        print(f"{len(result.reasoning_frames)} reasoning frames ({result.reasoning_kind}) -> {strip}, {video}")
    print(f"model {result.identity.model_id} hash {result.identity.model_hash}; {result.timings_ms['total_ms']:.0f} ms")
    if result.identity.random_weights:
        print("NOTE: this checkpoint has RANDOM weights; the output is noise, not an edit.")
    return 0


def cmd_calibrate_cache(args) -> int:
    from .runtime.calibrate import calibrate_cache

    _no_progress_bars(args)
    doc = calibrate_cache(args.scenarios, args.images, args.output, args.overrides, args.config, args.edits)
    print(f"MagCache ratios for {doc['num_inference_steps']} steps from {doc['edits']} edit(s) -> {args.output}; "
          f"use it with model.step_cache=magcache model.step_cache_calibration={args.output}")
    if doc["random_weights"]:
        print("NOTE: this checkpoint has RANDOM weights; its ratios say nothing about a real checkpoint.")
    return 0


def cmd_run(args) -> int:
    from .runtime.run import run

    return run(args.scenarios, args.input, args.output, args.overrides, config_files=args.config,
               dry_run=args.dry_run, overwrite=args.overwrite, quiet=args.quiet, verbose=args.verbose)


def cmd_score(args) -> int:
    from .runtime.rescore import rescore

    return rescore(args.dir, args.output, args.overrides, config_files=args.config, overwrite=args.overwrite,
                   quiet=args.quiet)


def cmd_reproduce(args) -> int:
    from .runtime.reproduce import reproduce

    _no_progress_bars(args)
    return reproduce(args.dir, args.job_id, device=args.device)


def cmd_inspect(args) -> int:
    from .dataset.inspect import summarize

    for line in summarize(Path(args.dir)):
        print(line)
    return 0


def cmd_verify(args) -> int:
    from .dataset.verify import verify

    verdict = verify(Path(args.dir), images=args.images)
    for line in verdict.lines():
        print(line)
    return 0 if verdict.whole else 1


def cmd_report(args) -> int:
    from .report.build import build_report

    path = build_report(Path(args.dir), Path(args.output) if args.output else None, args.overrides,
                        config_files=args.config)
    print(f"report: {path}")
    return 0


def cmd_export_trajectories(args) -> int:
    from .dataset.trajectories import export_trajectories

    export_trajectories(Path(args.dir), Path(args.output), args.format, args.where, fps=args.fps)
    return 0


def cmd_export(args) -> int:
    if args.format == "diffsynth":
        from .dataset.diffsynth import export_diffsynth

        export_diffsynth(Path(args.dir), Path(args.output), args.where)
        return 0
    if args.format == "lerobot":
        from .dataset.lerobot_export import export_lerobot

        export_lerobot(Path(args.dir), Path(args.output), args.fill_rejected)
        return 0
    if args.format == "video":
        from .dataset.sequence_video import export_video

        export_video(Path(args.dir), Path(args.output), args.where, args.side_by_side, args.fps)
        return 0
    from .perception.export import export_benchmark

    export_benchmark(Path(args.dir), Path(args.output), args.format, args.where, args.severity_ladder)
    return 0


def cmd_evaluate(args) -> int:
    from .runtime.evaluate import evaluate

    _, code = evaluate(Path(args.dir), args.detector, where=args.where, batch_size=args.batch_size,
                       device=args.device, gpus=args.gpus, actors=args.actors, address=args.address,
                       verbose=args.verbose, bootstrap=args.bootstrap, seed=args.seed,
                       warn=lambda line: print(line, file=sys.stderr))
    return code


def build_parser() -> argparse.ArgumentParser:
    from .engine.weights import CHECKPOINTS  # a light module: no torch

    p = argparse.ArgumentParser(prog="chronoedit-sim", description=__doc__, epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="show library logs and progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    def with_overrides(sp):
        # key=value overrides (model=tiny seed=3 ...) are collected from the leftover arguments in main()
        sp.add_argument("--config", action="append", default=[], help="extra config YAML merged after the preset")

    sp = sub.add_parser("make-tiny-model", help="write a tiny random-weight editor checkpoint (tests, demo)")
    sp.add_argument("dir")
    sp.add_argument("--clip-dir", default="", help="where the tiny open_clip model goes (default: DIR-clip)")
    sp.add_argument("--vlm-dir", default="", help="where the tiny Qwen-VL goes (default: DIR-vlm)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--backend", default="chronoedit", choices=list(CHECKPOINTS),
                    help="whose checkpoint DIR gets, in that model's diffusers layout (default: chronoedit)")
    sp.set_defaults(func=cmd_make_tiny_model)

    sp = sub.add_parser("validate", help="check scenario files and print their expanded jobs for a sample frame")
    sp.add_argument("files", nargs="+", metavar="FILE")
    sp.add_argument("--source-id", default="sample/frame_000000.png", help="frame id used for the expansion")
    with_overrides(sp)
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("edit", help="edit one frame: the smallest way to try a checkpoint")
    sp.add_argument("image")
    sp.add_argument("--prompt", required=True)
    sp.add_argument("--negative-prompt", default="")
    sp.add_argument("--output", required=True, help="edited frame (.png, .webp or .jpg)")
    sp.add_argument("--seed", type=int, default=0)
    with_overrides(sp)
    sp.set_defaults(func=cmd_edit)
    sp = sub.add_parser("calibrate-cache", help="MagCache's per-step ratios for model.step_cache=magcache, "
                        "measured on a few of your frames with your scenarios' prompts")
    sp.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    sp.add_argument("--images", nargs="+", required=True, help="a few frames of the corpus to calibrate on")
    sp.add_argument("--output", required=True, help="the calibration JSON (model.step_cache_calibration)")
    sp.add_argument("--edits", type=int, default=4, help="edits to average over")
    with_overrides(sp)
    sp.set_defaults(func=cmd_calibrate_cache)

    sp = sub.add_parser("run", help="scenario(s) x frames -> Parquet dataset, on Ray (resumable)", epilog=EXIT_CODES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    sp.add_argument("--input", required=True, help="image folder (recursive) or video file")
    sp.add_argument("--output", required=True, help="dataset directory (data/*.parquet + run.json)")
    sp.add_argument("--dry-run", action="store_true", help="print jobs and resources without loading a model")
    sp.add_argument("--overwrite", action="store_true", help="delete OUTPUT first instead of resuming")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the summary")
    with_overrides(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("score", help="rescore an existing dataset into a new one (new thresholds or CLIP)")
    sp.add_argument("dir")
    sp.add_argument("--output", required=True, help="the new dataset directory")
    sp.add_argument("--overwrite", action="store_true", help="delete OUTPUT first instead of resuming")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the summary")
    with_overrides(sp)
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("reproduce", help="edit one row's job again with the recorded config, seed and weights: exit 0 "
                                          "when the edit equals the stored one bit for bit, 1 with how much and why not")
    sp.add_argument("dir")
    sp.add_argument("job_id")
    sp.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: the run's model.device")
    sp.set_defaults(func=cmd_reproduce)

    sp = sub.add_parser("inspect", help="summarise a dataset directory")
    sp.add_argument("dir")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("report", help="write a dataset's static HTML report (opens from disk, no server)")
    sp.add_argument("dir")
    sp.add_argument("--output", default="", help="the report folder (default: DIR/report)")
    with_overrides(sp)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("export-trajectories", help="one file per row's reasoning trajectory, named by job_id")
    sp.add_argument("dir")
    sp.add_argument("--output", required=True, help="folder for the files")
    # dataset.trajectories.FORMATS, not imported: it would cost every command its numpy and pyarrow
    sp.add_argument("--format", choices=TRAJECTORY_FORMATS, default="mp4")
    sp.add_argument("--where", action="append", default=[], metavar="EXPR", help=WHERE_HELP)
    sp.add_argument("--fps", type=int, default=8, help="frames per second of mp4, gif and webp")
    sp.set_defaults(func=cmd_export_trajectories)

    sp = sub.add_parser("export", help="a dataset as a robustness benchmark (coco, yolo, kitti: one split per "
                                       "scenario, edit and severity, plus clean), a DiffSynth-Studio training set, "
                                       "an augmented LeRobot v3.0 dataset, or one MP4 per sequence and edit")
    sp.add_argument("dir")
    sp.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    sp.add_argument("--output", required=True, help="folder for the benchmark")
    sp.add_argument("--where", action="append", default=[], metavar="EXPR",
                    help=WHERE_HELP + " (default: outcome=kept)")
    sp.add_argument("--severity-ladder", type=int, default=0, metavar="N",
                    help="also N evenly spaced reasoning frames as severities 1..N, where SSIM to the source "
                         "falls along them")
    sp.add_argument("--fill-rejected", choices=("none", "source"), default="none",
                    help="lerobot: episodes with rejected or failed frames are left out (none) or exported with the "
                         "source frames in their place (source; the provenance file lists them)")
    sp.add_argument("--side-by-side", action="store_true", help="video: each edited frame beside its source frame")
    sp.add_argument("--fps", type=float, default=10.0,
                    help="video: the frame rate where the frames have no timestamps (KITTI raw is 10 Hz)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("evaluate", help="a detector's AP on the clean and edited images: mPC, rPC, drops, "
                                         "inserted-object recall, 95%% intervals (DIR/eval.json)", epilog=EXIT_CODES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("dir")
    sp.add_argument("--detector", required=True, metavar="MODULE:CALLABLE",
                    help="module:callable or file.py:callable; called with a list of PIL images, it returns per "
                         "image a list of {box: [x0, y0, x1, y1], label, score} (a class is built once per actor)")
    sp.add_argument("--batch-size", type=int, default=8, help="images per detector call")
    sp.add_argument("--device", default="auto", help="passed to a detector class that takes device=")
    sp.add_argument("--gpus", type=float, default=None, help="GPUs per detector actor (default: 1 for a cuda "
                                                              "device, else 0)")
    sp.add_argument("--actors", type=int, default=1, help="detector actors")
    sp.add_argument("--address", default="", help="Ray cluster to join (default: a private local instance)")
    sp.add_argument("--where", action="append", default=[], metavar="EXPR",
                    help=WHERE_HELP + " (default: outcome=kept)")
    sp.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                    help="resamples of the source frames for the 95%% intervals of AP, mPC and rPC (0 = none)")
    sp.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("verify", help="check that a dataset is whole: exit 0 when it is, 1 with a summary if not")
    sp.add_argument("dir")
    sp.add_argument("--images", action="store_true", help="also decode every image and video")
    sp.set_defaults(func=cmd_verify)
    return p


def _is_override(arg: str) -> bool:
    key = arg.split("=", 1)[0]
    return "=" in arg and key.replace(".", "").replace("_", "").replace("-", "").isalnum()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may sit anywhere; a nargs="+" positional can swallow them, so pull them back out
    positional_name = "files" if hasattr(args, "files") else "scenarios"
    positional = getattr(args, positional_name, None) or []
    args.overrides = [a for a in [*positional, *extra] if _is_override(a)]
    if positional:
        setattr(args, positional_name, [a for a in positional if not _is_override(a)])
    unknown = [a for a in extra if not _is_override(a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
