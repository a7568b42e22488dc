"""Parquet inputs: one frame per row of an image column (Hugging Face Image struct or raw bytes).

Listing reads only the id/caption columns (never the image bytes); read_parquet reads the
image column of just the row groups it needs. A bad row is a FrameError, never a crash or gap.
"""
from __future__ import annotations

import bisect
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from chronoedit_sim import storage
from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.decode import DecodedImage, FrameError, decode_image
from chronoedit_sim.sources.base import FrameRef, InputError, walk


def _columns_ok(pf: pq.ParquetFile, rel: str, cfg: InputConfig) -> None:
    schema = pf.schema_arrow
    names = schema.names
    for key in ("image_column", "id_column", "caption_column"):
        col = getattr(cfg, key)
        if col and col not in names:
            raise InputError(f"input.{key}: {rel} has no column '{col}' (columns: {', '.join(names)})")
    for col in cfg.keep_columns:
        if col not in names:
            raise InputError(f"input.keep_columns: {rel} has no column '{col}' (columns: {', '.join(names)})")
    t = schema.field(cfg.image_column).type
    ok = pa.types.is_binary(t) or pa.types.is_large_binary(t)
    ok = ok or (pa.types.is_struct(t) and t.get_field_index("bytes") >= 0)
    if not ok:
        raise InputError(
            f"input.image_column: '{cfg.image_column}' in {rel} has type {t}; "
            "expected binary or a struct<bytes, path> (Hugging Face Image)"
        )


def _plain(v):
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def list_parquet(cfg: InputConfig, root: Path) -> list[FrameRef]:
    return list(iter_parquet(cfg, root))


def iter_parquet(cfg: InputConfig, root: Path) -> Iterator[FrameRef]:
    """The input's rows in order, lazily: one file's id and caption columns at a time."""
    root = storage.located(root)
    if cfg.stride < 1:
        raise InputError(f"input.stride: must be >= 1, got {cfg.stride}")
    if root.is_dir():
        files = walk(str(root), (".parquet",))
    elif root.is_file():
        files = iter([(str(root), root.name)])
    else:
        raise InputError(f"input.path: {root} does not exist")
    n_files = n = 0
    want = [c for c in (cfg.id_column, cfg.caption_column if cfg.use_input_captions else "") if c]
    want += cfg.keep_columns
    for full, rel in files:
        n_files += 1
        try:
            pf = storage.parquet(full)
            _columns_ok(pf, rel, cfg)
            rows = pf.metadata.num_rows
            cols = pf.read(columns=list(dict.fromkeys(want))).to_pydict() if want else {}
        except InputError:
            raise
        except Exception as e:  # not Parquet, truncated footer, unreadable
            raise InputError(f"input.path: cannot read Parquet file {rel} ({type(e).__name__}: {e})") from None
        ids = cols.get(cfg.id_column) if cfg.id_column else None
        if ids is not None:
            seen: dict[str, int] = {}
            for i, v in enumerate(ids):
                if v is None:
                    raise InputError(f"input.id_column: {rel} row {i}: '{cfg.id_column}' is null")
                if str(v) in seen:
                    raise InputError(f"input.id_column: {rel}: '{cfg.id_column}' value {str(v)!r} repeats "
                                     f"(rows {seen[str(v)]} and {i}); source ids must be unique")
                seen[str(v)] = i
        captions = cols.get(cfg.caption_column) if cfg.caption_column and cfg.use_input_captions else None
        for i in range(0, rows, cfg.stride):
            meta = {"row": i, "file": rel, "image_column": cfg.image_column}
            if ids is not None:
                meta["id"] = _plain(ids[i])
            cap = captions[i] if captions is not None else None
            sid = f"{rel}#{ids[i]}" if ids is not None else f"{rel}#{i:08d}"
            cap = None if cap is None or cap == "" else str(cap)
            kept = {c: cols[c][i] for c in cfg.keep_columns} if cfg.keep_columns else None
            yield FrameRef(sid, f"{full}#row={i}", full, i, None, kind="parquet", meta=meta, caption=cap,
                           columns=kept)
            n += 1
            if n == cfg.max_frames:
                return  # no need to open the remaining files
    if not n_files:
        raise InputError(f"input.path: {root}: no Parquet files (*.parquet) found")
    if not n:
        raise InputError(f"input.path: {root}: the Parquet input has no rows")


def _image_bytes(value, uri: str, col: str, folder: str) -> bytes:
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path:
            try:
                return (storage.path(folder) / path).read_bytes()
            except OSError as e:
                raise FrameError(f"{uri}: image column '{col}' has no bytes and path {path} cannot be read: "
                                 f"{e.strerror or e}") from None
        value = data
    if value is None:
        raise FrameError(f"{uri}: image column '{col}' is null")
    return value


def _decode(value, ref: FrameRef, col: str, max_pixels: int, min_side: int) -> DecodedImage | FrameError:
    uri = ref.source_uri
    try:
        data = _image_bytes(value, uri, col, os.path.dirname(ref.path))
        return decode_image(data, uri=uri, max_pixels=max_pixels, min_side=min_side)
    except FrameError as e:
        return e
    except MemoryError:
        raise  # a worker resource problem, not a property of this frame
    except Exception as e:  # one frame must never stop the run
        return FrameError(f"{uri}: unexpected decode failure ({type(e).__name__}: {e})")


def _read_file(path: str, refs: list[FrameRef], positions: list[int], out: list, max_pixels: int, min_side: int):
    try:
        pf = storage.parquet(path)
        md = pf.metadata
        starts = [0]
        for g in range(md.num_row_groups):
            starts.append(starts[-1] + md.row_group(g).num_rows)
    except Exception as e:  # moved, replaced or corrupt since listing
        for p in positions:
            out[p] = FrameError(f"{refs[p].source_uri}: cannot open Parquet file ({type(e).__name__}: {e})")
        return
    by_group: dict[int, list[int]] = defaultdict(list)
    for p in positions:
        row = refs[p].frame_index
        if not 0 <= row < starts[-1]:
            out[p] = FrameError(f"{refs[p].source_uri}: row {row} is out of range (file has {starts[-1]} rows)")
        else:
            by_group[bisect.bisect_right(starts, row) - 1].append(p)
    for g, ps in sorted(by_group.items()):
        col = refs[ps[0]].meta.get("image_column", "image")
        try:
            column = pf.read_row_group(g, columns=[col]).column(col)
            local = pa.array([refs[p].frame_index - starts[g] for p in ps], type=pa.int64())
            values = column.take(local).to_pylist()
        except MemoryError:
            raise
        except Exception as e:  # corrupt row group, column gone
            for p in ps:
                out[p] = FrameError(f"{refs[p].source_uri}: cannot read image column '{col}' "
                                    f"(row group {g}: {type(e).__name__}: {e})")
            continue
        for p, v in zip(ps, values):
            out[p] = _decode(v, refs[p], col, max_pixels, min_side)


def read_parquet(refs: list[FrameRef], *, max_pixels: int, min_side: int) -> list[DecodedImage | FrameError]:
    """One DecodedImage or FrameError per ref, in the order of refs; per-row problems never raise."""
    out: list[DecodedImage | FrameError | None] = [None] * len(refs)
    by_file: dict[str, list[int]] = defaultdict(list)
    for p, ref in enumerate(refs):
        if ref.kind != "parquet":
            raise ValueError(f"read_parquet: FrameRef.kind is {ref.kind!r}, not 'parquet'")
        by_file[ref.path].append(p)
    for path, positions in by_file.items():
        _read_file(path, refs, positions, out, max_pixels, min_side)
    return out  # type: ignore[return-value]  # every slot is filled above
