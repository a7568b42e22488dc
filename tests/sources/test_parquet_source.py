"""Tests for chronoedit_sim.sources.parquet; every Parquet file is generated in tmp_path."""
from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.decode import DecodedImage, FrameError
from chronoedit_sim.sources.base import InputError
from chronoedit_sim.sources.parquet import list_parquet, read_parquet

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def color(i: int) -> tuple[int, int, int]:
    return (i * 20 % 256, 255 - i * 10, (i * 37) % 256)


def png(i: int, size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color(i)).save(buf, "PNG")
    return buf.getvalue()


def write(path: Path, images, *, struct=True, ids=None, captions=None, row_group_size=2) -> Path:
    cols = {"image": pa.array(images, type=IMAGE_STRUCT if struct else pa.binary())}
    if ids is not None:
        cols["key"] = pa.array(ids)
    if captions is not None:
        cols["text"] = pa.array(captions, type=pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


def hf_rows(n: int):
    return [{"bytes": png(i), "path": f"img{i}.png"} for i in range(n)]


def cfg(**kw) -> InputConfig:
    return InputConfig(**kw)


def read(refs):
    return read_parquet(refs, max_pixels=50_000_000, min_side=1)


def assert_color(r, i):
    assert isinstance(r, DecodedImage), r
    assert r.rgb.shape == (24, 32, 3)
    assert tuple(int(x) for x in r.rgb[5, 5]) == color(i)


def test_struct_column_ids_captions_and_meta(tmp_path):
    f = write(tmp_path / "train.parquet", hf_rows(5), ids=[f"k{i}" for i in range(5)],
              captions=[f"cap {i}" for i in range(4)] + [None])
    refs = list_parquet(cfg(id_column="key", caption_column="text"), f)
    assert [r.source_id for r in refs] == [f"train.parquet#k{i}" for i in range(5)]
    r = refs[2]
    assert r.kind == "parquet" and r.path == str(f) and r.frame_index == 2 and r.timestamp_s is None
    assert r.source_uri == f"{f}#row=2"
    assert {k: r.meta[k] for k in ("row", "file", "id")} == {"row": 2, "file": "train.parquet", "id": "k2"}
    assert [x.caption for x in refs] == ["cap 0", "cap 1", "cap 2", "cap 3", None]
    off = list_parquet(cfg(id_column="key", caption_column="text", use_input_captions=False), f)
    assert all(x.caption is None for x in off)
    for i, res in enumerate(read(refs)):
        assert_color(res, i)


def test_raw_binary_row_index_ids_stride_max_frames(tmp_path):
    f = write(tmp_path / "raw.parquet", [png(i) for i in range(7)], struct=False)
    refs = list_parquet(cfg(), f)
    assert [r.source_id for r in refs] == [f"raw.parquet#{i:08d}" for i in range(7)]
    assert "id" not in refs[0].meta and refs[0].caption is None
    refs = list_parquet(cfg(stride=3), f)
    assert [r.frame_index for r in refs] == [0, 3, 6]
    refs = list_parquet(cfg(stride=2, max_frames=3), f)
    assert [r.source_id for r in refs] == ["raw.parquet#00000000", "raw.parquet#00000002", "raw.parquet#00000004"]
    for r, res in zip(refs, read(refs)):
        assert_color(res, r.frame_index)


def test_integer_ids(tmp_path):
    f = write(tmp_path / "a.parquet", hf_rows(3), ids=[10, 20, 30])
    refs = list_parquet(cfg(id_column="key"), f)
    assert [r.source_id for r in refs] == ["a.parquet#10", "a.parquet#20", "a.parquet#30"]
    assert refs[1].meta["id"] == 20


def test_read_across_row_groups_in_shuffled_order(tmp_path):
    f = write(tmp_path / "g.parquet", [png(i) for i in range(11)], struct=False, row_group_size=2)
    assert pq.ParquetFile(f).metadata.num_row_groups == 6
    refs = list_parquet(cfg(), f)
    shuffled = refs[:]
    random.Random(0).shuffle(shuffled)
    shuffled.append(shuffled[0])  # a repeated ref gets its own result
    out = read(shuffled)
    assert len(out) == len(shuffled)
    for r, res in zip(shuffled, out):
        assert_color(res, r.frame_index)
    assert out[0].rgb is not out[-1].rgb


def test_null_and_corrupt_values_are_frame_errors(tmp_path):
    rows = hf_rows(5)
    rows[1] = None
    rows[2] = {"bytes": None, "path": None}
    rows[3] = {"bytes": b"\x89PNG\r\n\x1a\n" + png(3)[8:40], "path": None}  # truncated PNG
    f = write(tmp_path / "bad.parquet", rows)
    raw = write(tmp_path / "raw" / "bad.parquet", [png(0), None, b"garbage bytes"], struct=False)
    out = read(list_parquet(cfg(), f))
    assert_color(out[0], 0)
    assert_color(out[4], 4)
    assert isinstance(out[1], FrameError)
    assert str(out[1]) == f"{f}#row=1: image column 'image' is null"
    assert str(out[2]) == f"{f}#row=2: image column 'image' is null"
    assert isinstance(out[3], FrameError) and str(out[3]).startswith(f"{f}#row=3: ")
    assert "corrupt or truncated" in str(out[3]) or "not a recognised image" in str(out[3])
    out = read(list_parquet(cfg(), raw))
    assert_color(out[0], 0)
    assert str(out[1]) == f"{raw}#row=1: image column 'image' is null"
    assert str(out[2]) == f"{raw}#row=2: not a recognised image (13 bytes)"


def test_struct_path_fallback_relative_to_parquet_folder(tmp_path):
    (tmp_path / "d" / "imgs").mkdir(parents=True)
    (tmp_path / "d" / "imgs" / "x.png").write_bytes(png(6))
    f = write(tmp_path / "d" / "p.parquet",
              [{"bytes": None, "path": "imgs/x.png"}, {"bytes": None, "path": "imgs/missing.png"}])
    out = read(list_parquet(cfg(), f))
    assert_color(out[0], 6)
    assert isinstance(out[1], FrameError) and "imgs/missing.png" in str(out[1])


def test_missing_columns_and_bad_type_are_input_errors(tmp_path):
    f = write(tmp_path / "a.parquet", hf_rows(2), ids=["a", "b"])
    with pytest.raises(InputError, match=r"a\.parquet has no column 'picture' \(columns: image, key\)"):
        list_parquet(cfg(image_column="picture"), f)
    with pytest.raises(InputError, match=r"input\.id_column: a\.parquet has no column 'uid' \(columns: image, key\)"):
        list_parquet(cfg(id_column="uid"), f)
    with pytest.raises(InputError, match=r"input\.caption_column: .*'txt'"):
        list_parquet(cfg(caption_column="txt"), f)
    with pytest.raises(InputError, match=r"'key' in a\.parquet has type string"):
        list_parquet(cfg(image_column="key"), f)


def test_duplicate_ids_empty_and_missing_inputs(tmp_path):
    f = write(tmp_path / "dup.parquet", hf_rows(3), ids=["a", "b", "a"])
    with pytest.raises(InputError, match=r"'a' repeats \(rows 0 and 2\); source ids must be unique"):
        list_parquet(cfg(id_column="key"), f)
    empty = write(tmp_path / "e" / "empty.parquet", [])
    with pytest.raises(InputError, match="has no rows"):
        list_parquet(cfg(), empty)
    with pytest.raises(InputError, match="no Parquet files"):
        (tmp_path / "none").mkdir()
        list_parquet(cfg(), tmp_path / "none")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read Parquet file junk.parquet"):
        list_parquet(cfg(), tmp_path / "junk.parquet")


def write_hf_dataset(ds: Path) -> Path:
    """A Hugging Face dataset on disk: two Parquet files under data/ keyed by `key`, its card, a hidden cache."""
    write(ds / "data" / "train-00000-of-00002.parquet", hf_rows(3), ids=["a", "b", "c"])
    write(ds / "data" / "train-00001-of-00002.parquet", hf_rows(2), ids=["a", "d"])  # same id, other file: ok
    write(ds / ".cache" / "hidden.parquet", hf_rows(1), ids=["z"])
    (ds / "README.md").write_text("card")
    return ds


def test_folder_of_files_ids_relative_and_stable_when_copied(tmp_path):
    ds = write_hf_dataset(tmp_path / "ds")
    refs = list_parquet(cfg(id_column="key"), ds)
    ids = [r.source_id for r in refs]
    assert ids == ["data/train-00000-of-00002.parquet#a", "data/train-00000-of-00002.parquet#b",
                   "data/train-00000-of-00002.parquet#c", "data/train-00001-of-00002.parquet#a",
                   "data/train-00001-of-00002.parquet#d"]
    assert refs[3].meta["file"] == "data/train-00001-of-00002.parquet"
    assert [r.source_id for r in list_parquet(cfg(id_column="key", max_frames=4), ds)] == ids[:4]
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(ds, copy)
    copied = list_parquet(cfg(id_column="key"), copy)
    assert [r.source_id for r in copied] == ids
    assert copied[0].path == str(copy / "data" / "train-00000-of-00002.parquet")
    out = read(list(reversed(copied)))
    assert [tuple(int(x) for x in r.rgb[0, 0]) for r in out] == [color(i) for i in (1, 0, 2, 1, 0)]


def test_file_changed_after_listing(tmp_path):
    f = write(tmp_path / "c.parquet", hf_rows(4))
    refs = list_parquet(cfg(), f)
    write(f, hf_rows(2))  # shrunk
    out = read(refs)
    assert_color(out[1], 1)
    assert isinstance(out[3], FrameError) and "row 3 is out of range (file has 2 rows)" in str(out[3])
    f.unlink()
    out = read(refs)
    assert all(isinstance(r, FrameError) and "cannot open Parquet file" in str(r) for r in out)
