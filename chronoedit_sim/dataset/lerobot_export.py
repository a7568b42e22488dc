"""`chronoedit-sim export DIR --format lerobot --output AUG`: the edits of a LeRobot run as a LeRobot v3.0 dataset.

Each (source episode, scenario, edit, sample) whose frames were all kept becomes one episode of AUG: the source
episode's data rows (frame indices, timestamps, task, action, state and every other column) with a new
episode index, each edited camera stream replaced by the edited frames (resized to the camera's resolution,
so the features stay the source's), every other camera copied from the source. `--fill-rejected source`
exports incomplete episodes too, with the source frame wherever the edit was rejected or failed, and says
which in the provenance file. Written as lerobot writes a dataset: meta/info.json, meta/tasks.parquet,
meta/episodes/chunk-000/file-000.parquet (with per-episode stats), meta/stats.json, data/ and videos/ (AV1
with libsvtav1, yuv420p, a key frame every 2 frames, CRF 30, BT.601 untagged: lerobot's encoder settings; a
camera no edit touches is the source episode's own packets, copied without decoding where the episode starts
at a key frame, as lerobot's do, and encoded again otherwise, with the cost in the provenance file), plus
meta/chronoedit_provenance.json (source dataset, scenario, edit, sample, prompt and run per episode).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import UserError
from ..scoring.metrics import resize_to
from .encode import decode_rgb
from .manifest import read_manifest
from .sink import readable_shards
from .video import copy_packets, decode_video, encode_video

FILL = ("none", "source")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
_CRF, _GOP = 30, 2
# lerobot writes its videos with PyAV's default RGB -> YUV conversion (BT.601) and no colour tags, and
# decodes every file so: an edited camera encoded any other way shifts in colour when lerobot reads it
LEROBOT_COLOUR = "bt601-untagged"
_LIGHT = ["job_id", "run_id", "scenario", "edit_id", "sample_index", "keep", "error", "episode", "source_meta", "prompt"]


def _stats(values: np.ndarray, image: bool = False) -> dict:
    """lerobot's feature statistics: min, max, mean, std, count and quantiles per dimension (per channel, as
    (3, 1, 1) and in [0, 1], for images: as lerobot, over frames shrunk to about 150 px)."""
    if image:
        step = max(1, max(values.shape[1:3]) // 150)
        values = values[:, ::step, ::step].reshape(-1, 3).astype(np.float64) / 255.0
    values = values.reshape(len(values), -1).astype(np.float64)
    out = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
           "count": np.array([len(values)])}
    out.update({f"q{int(q * 100):02d}": np.quantile(values, q, axis=0) for q in QUANTILES})
    if image:
        out = {k: v.reshape(3, 1, 1) if k != "count" else v for k, v in out.items()}
    return {k: v.tolist() for k, v in out.items()}


class _Source:
    """The source LeRobot dataset: info, tasks, episode records and each episode's data rows."""

    def __init__(self, root: Path):
        from ..sources.lerobot import DEFAULT_DATA_PATH, _load_info

        self.root = root
        self.info = _load_info(root)
        if self.info is None or not str(self.info.get("codebase_version", "")).startswith("v3."):
            raise UserError(f"{root}: the run's input is not a LeRobot v3.0 dataset: --format lerobot exports the "
                            "edits of a LeRobot input")
        self.fps = float(self.info["fps"])
        self.cameras = sorted(k for k, f in self.info["features"].items() if f.get("dtype") == "video")
        self.data_tpl = self.info.get("data_path") or DEFAULT_DATA_PATH
        self.episodes = {}
        for f in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
            for row in pq.read_table(f).to_pylist():
                self.episodes[int(row["episode_index"])] = row

    def data(self, ep: int) -> pa.Table:
        e = self.episodes[ep]
        path = self.root / self.data_tpl.format(chunk_index=e["data/chunk_index"], file_index=e["data/file_index"])
        table = pq.read_table(path, filters=pc.field("episode_index") == ep)
        return table.take(pc.sort_indices(table, [("frame_index", "ascending")]))

    def frames(self, ep: int, cam: str) -> list[np.ndarray]:
        """The camera's frames of the episode, decoded as the run's read stage decodes them."""
        from ..config import InputConfig
        from ..sources.dispatch import list_input, read_input

        refs = list_input(InputConfig(path=str(self.root), type="lerobot", episodes=[ep], cameras=[cam]))
        out = read_input(refs, max_pixels=10**9, min_side=1)
        bad = [str(r) for r in out if not hasattr(r, "rgb")]
        if bad:
            raise UserError(f"episode {ep} camera {cam}: cannot decode the source: {bad[0]}")
        return [r.rgb for r in out]


def _variants(dataset: Path) -> dict[tuple, dict]:
    """(scenario, edit, sample, source episode) -> {camera: {frame_index: (job_id, kept)}} and the prompt."""
    import pyarrow.dataset as pads

    shards = readable_shards(dataset)
    if not shards:
        raise UserError(f"{dataset}: no complete shards: nothing to export")
    table = pads.dataset([str(s) for s in shards], format="parquet").to_table(columns=_LIGHT)
    out: dict[tuple, dict] = {}
    for row in table.to_pylist():
        if row["episode"] is None:
            continue
        key = (row["scenario"], row["edit_id"], row["sample_index"], row["episode"]["episode_index"])
        entry = out.setdefault(key, {"cameras": defaultdict(dict), "prompts": set(), "runs": set()})
        cam = json.loads(row["source_meta"])["camera"]
        entry["cameras"][cam][row["episode"]["frame_index"]] = (row["job_id"], bool(row["keep"] and not row["error"]))
        entry["prompts"].add(row["prompt"])
        entry["runs"].add(row["run_id"])
    if not out:
        raise UserError(f"{dataset}: no rows from a LeRobot input (no `episode` column values): nothing to export")
    return out


def _edited_frames(dataset: Path, job_ids: list[str]) -> dict[str, np.ndarray]:
    import pyarrow.dataset as pads

    data = pads.dataset([str(s) for s in readable_shards(dataset)], format="parquet")
    table = data.to_table(columns=["job_id", "edited_image"], filter=pc.field("job_id").isin(pa.array(job_ids, pa.string())))
    return {r["job_id"]: decode_rgb(r["edited_image"]["bytes"]) for r in table.to_pylist() if r["edited_image"]}


def export_lerobot(dataset: Path, output: Path, fill_rejected: str = "none", echo=print) -> dict:
    """Write AUG; returns its provenance (episodes exported and skipped)."""
    if fill_rejected not in FILL:
        raise UserError(f"--fill-rejected: {fill_rejected!r} is not one of {', '.join(FILL)}")
    manifest = read_manifest(dataset)
    if manifest is None:
        raise UserError(f"{dataset}: no run.json: not a chronoedit-sim dataset")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"{output}: exists and is not empty; export a LeRobot dataset into a new folder")
    src = _Source(Path(manifest.get("input_path") or manifest["config"]["input"]["path"]).expanduser())
    os.environ.setdefault("SVT_LOG", "1")  # libsvtav1's banner on every file, otherwise
    tmp = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    try:
        provenance = _write(dataset, src, tmp, fill_rejected, manifest)
        if output.exists():
            output.rmdir()
        tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n, skipped = len(provenance["episodes"]), len(provenance["skipped"])
    echo(f"{n} episode(s), {provenance['total_frames']} frames (LeRobot v3.0) in {output}"
         + (f"; {skipped} skipped (not every frame kept: --fill-rejected source exports them)" if skipped else ""))
    again = [(e["episode_index"], cam, off) for e in provenance["episodes"] for cam, off in e["copied_cameras_reencoded"].items()]
    if again:
        echo(f"{len(again)} unedited camera stream(s) encoded again, not copied (the source episode does not start "
             f"at a key frame): mean difference from the source {max(off for *_, off in again):.2f} grey levels at "
             "most; meta/chronoedit_provenance.json lists them")
    return provenance


def _camera(src: _Source, cam: str, order: list[int], edits: dict, pixels: dict, sources: dict):
    """(video bytes, stats, frames sampled for stats.json) of one camera of one episode: the kept edits, resized
    to the camera's resolution, and the source frames elsewhere."""
    h, w = src.info["features"][cam]["shape"][:2]
    stream = []
    for fi in order:
        job, ok = edits.get(fi, (None, False))
        stream.append(resize_to(pixels[job], (h, w)) if ok and job in pixels else sources[fi])
    return _encode(src, stream), *_sampled_stats(stream)


def _encode(src: _Source, stream: list[np.ndarray]) -> bytes:
    return encode_video(np.stack(stream), crf=_CRF, fps=round(src.fps), codec="libsvtav1", gop=_GOP,
                        colour=LEROBOT_COLOUR)


def _sampled_stats(stream: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
    sampled = stream[::max(1, len(stream) // 8)]
    return _stats(np.stack(sampled), True), sampled


def _copied(src: _Source, cam: str, ep: int, order: list[int], frames: dict, video_tpl: str):
    """(video bytes, stats, sampled frames, None or how far a re-encode is from the source) of a camera no edit
    touches: the source episode's own packets where it starts at a key frame (lerobot's episodes do), else
    encoded again, with the mean absolute difference that costs (grey levels, as lerobot decodes it)."""
    e = src.episodes[ep]
    path = src.root / video_tpl.format(video_key=cam, chunk_index=e[f"videos/{cam}/chunk_index"],
                                       file_index=e[f"videos/{cam}/file_index"])
    stream = [frames[fi] for fi in order]
    stats, sampled = _sampled_stats(stream)
    packets = copy_packets(str(path), float(e[f"videos/{cam}/from_timestamp"]), float(e[f"videos/{cam}/to_timestamp"]),
                           len(order))
    if packets is not None:
        return packets, stats, sampled, None
    video = _encode(src, stream)
    return video, stats, sampled, float(np.abs(decode_video(video, LEROBOT_COLOUR).astype(int) - np.stack(stream)).mean())


def _write(dataset: Path, src: _Source, out: Path, fill: str, manifest: dict) -> dict:
    info = json.loads(json.dumps(src.info))
    chunks = int(info.get("chunks_size") or 1000)
    data_tables, ep_rows, episodes, skipped = [], [], [], []
    frames_by_cam: dict[str, list[np.ndarray]] = defaultdict(list)  # sampled for stats.json
    tasks = pq.read_table(src.root / "meta" / "tasks.parquet").to_pandas()
    numeric = [k for k, f in src.info["features"].items() if f.get("dtype") not in ("video", "image", "string")]
    video_tpl = src.info.get("video_path") or "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    by_episode: dict[int, list] = defaultdict(list)
    for (scenario, edit, sample, ep), entry in sorted(_variants(dataset).items()):
        by_episode[ep].append(({"source_episode": ep, "scenario": scenario, "edit": edit, "sample": sample}, entry))
    start = 0
    for ep, variants in sorted(by_episode.items()):
        # once per source episode, whatever its number of variants: its rows, the edits' pixels (one scan),
        # each camera's source frames (decoded when a variant needs them) and a copied camera's video and stats
        table = src.data(ep)
        order = table.column("frame_index").to_pylist()
        pixels = _edited_frames(dataset, [job for _, e in variants for v in e["cameras"].values()
                                          for job, ok in v.values() if ok])
        sources: dict[str, dict] = {}
        copied: dict[str, tuple] = {}
        reencoded: dict[str, float] = {}  # copied camera -> mean difference from the source after re-encoding
        for what, entry in variants:
            edited = {cam: v for cam, v in entry["cameras"].items() if cam in src.cameras}
            missing = {cam: [fi for fi in order if not v.get(fi, (None, False))[1]] for cam, v in edited.items()}
            if any(missing.values()) and fill == "none":
                skipped.append({**what, "frames_not_kept": {c: len(m) for c, m in missing.items() if m}})
                continue
            new = len(episodes)
            chunk, file = divmod(new, chunks)
            row = {"episode_index": new, "tasks": None, "length": len(order), "data/chunk_index": 0,
                   "data/file_index": 0, "dataset_from_index": start, "dataset_to_index": start + len(order)}
            for cam in src.cameras:
                if (cam not in edited or missing.get(cam)) and cam not in sources:
                    sources[cam] = dict(zip(order, src.frames(ep, cam)))
                if cam in edited:
                    made = _camera(src, cam, order, edited[cam], pixels, sources.get(cam, {}))
                else:  # a copied camera is the same video in every variant of the episode
                    if cam not in copied:
                        *made, off = _copied(src, cam, ep, order, sources[cam], video_tpl)
                        copied[cam] = made
                        if off is not None:
                            reencoded[cam] = round(off, 3)
                    made = copied[cam]
                video, cam_stats, sampled = made
                dest = out / video_tpl.format(video_key=cam, chunk_index=chunk, file_index=file)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(video)
                row |= {f"videos/{cam}/chunk_index": chunk, f"videos/{cam}/file_index": file,
                        f"videos/{cam}/from_timestamp": 0.0, f"videos/{cam}/to_timestamp": len(order) / src.fps}
                row |= {f"stats/{cam}/{k}": v for k, v in cam_stats.items()}
                frames_by_cam[cam] += sampled
            ep_table = table.set_column(table.schema.get_field_index("episode_index"), "episode_index",
                                        pa.array([new] * len(order), pa.int64()))
            ep_table = ep_table.set_column(table.schema.get_field_index("index"), "index",
                                           pa.array(range(start, start + len(order)), pa.int64()))
            for name in (n for n in numeric if n in ep_table.column_names):
                row |= {f"stats/{name}/{k}": v for k, v in _stats(np.asarray(ep_table.column(name).to_pylist())).items()}
            data_tables.append(ep_table)
            row["tasks"] = sorted({tasks.index[tasks["task_index"] == t][0] for t in table.column("task_index").to_pylist()})
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            ep_rows.append(row)
            start += len(order)
            episodes.append({"episode_index": new, **what, "prompt": sorted(entry["prompts"]),
                             "runs": sorted(entry["runs"]), "edited_cameras": sorted(edited),
                             "copied_cameras": sorted(set(src.cameras) - set(edited)),
                             "copied_cameras_reencoded": dict(reencoded),
                             "filled_from_source": {c: m for c, m in missing.items() if m}})
    if not episodes:
        raise UserError(f"{dataset}: no episode has every frame kept ({len(skipped)} incomplete); "
                        "--fill-rejected source exports them with the source frames in place of the rejected ones")
    data = pa.concat_tables(data_tables)
    (out / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(data, out / "data" / "chunk-000" / "file-000.parquet")
    (out / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    shutil.copyfile(src.root / "meta" / "tasks.parquet", out / "meta" / "tasks.parquet")
    stats = {cam: _stats(np.stack(frames), True) for cam, frames in frames_by_cam.items()}
    for name in (n for n in numeric if n in data.column_names):
        stats[name] = _stats(np.asarray(data.column(name).to_pylist()))
    (out / "meta" / "stats.json").write_text(json.dumps(stats, indent=4))
    for cam in src.cameras:
        h, w = src.info["features"][cam]["shape"][:2]
        if all(cam in e["copied_cameras"] and cam not in e["copied_cameras_reencoded"] for e in episodes):
            continue  # the source's own packets in every episode: its info stands
        info["features"][cam]["info"] = {"video.height": h, "video.width": w, "video.codec": "av1",
                                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                         "video.fps": round(src.fps), "video.channels": 3, "has_audio": False}
    info.update(total_episodes=len(episodes), total_frames=data.num_rows, splits={"train": f"0:{len(episodes)}"},
                data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet")
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    provenance = {"source_dataset": str(src.root), "chronoedit_sim_dataset": str(Path(dataset).resolve()),
                  "config_hash": manifest.get("config_hash"), "fill_rejected": fill, "total_frames": data.num_rows,
                  "episodes": episodes, "skipped": skipped}
    (out / "meta" / "chronoedit_provenance.json").write_text(json.dumps(provenance, indent=2))
    return provenance
