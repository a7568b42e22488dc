"""report.gallery and report.charts on small fake datasets, without Ray or models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chronoedit_sim.config import ReportConfig
from chronoedit_sim.dataset.encode import decode_rgb, encode_image, make_thumbnails
from chronoedit_sim.dataset.schema import fail_row
from chronoedit_sim.dataset.sink import DatasetWriter
from chronoedit_sim.config import OutputConfig
from chronoedit_sim.report.charts import write_charts
from chronoedit_sim.report.gallery import image_extension, thumbnails_of, write_gallery
from verify_helpers import fake_row


def data_call(path, name):
    """The JSON argument of a data script file (`window.CE_REPORT.<name>(...)`)."""
    text = path.read_text()
    prefix = f"window.CE_REPORT.{name}("
    assert text.startswith(prefix) and text.endswith(");\n")
    body = text[len(prefix):-3]
    return json.loads(body.split(", ", 1)[1] if name == "chunk" else body)


def frames(n=3, h=16, w=24):
    return np.stack([np.full((h, w, 3), 40 * i, np.uint8) for i in range(n)])


@pytest.fixture
def dataset(tmp_path):
    """7 rows in 2 shards of row groups of 2: kept (stored thumbnails), rejected (none: made from its images),
    failed in read (no images at all), failed in edit (a source, no edit), and 3 more kept rows."""
    writer = DatasetWriter(tmp_path, OutputConfig(shard_max_rows=4, row_group_rows=2))
    rows = [fake_row(i) for i in range(7)]
    rows[0]["thumbnails"] = make_thumbnails(frames()[0], frames()[1], frames(), 8)
    rows[0]["scores"] = {"ssim": 0.5, "psnr": float("nan")}
    rows[1].update(keep=False, prompt="<b>bold</b>", reject_reasons=[{"score": "ssim", "bound": "min", "value": 0.1,
                                                                       "limit": 0.5, "text": "ssim 0.10 < 0.50"}],
                   reasoning_frames=[{"bytes": encode_image(f), "path": None} for f in frames()])
    fail_row(rows[2], "read", "not a recognised image")
    rows[2].update(source_image=None, edited_image=None)
    fail_row(rows[3], "edit", "out of memory")
    rows[3].update(edited_image=None)
    for row in rows:
        writer.add(row, write_rejected=True)
    writer.flush()
    return tmp_path


def test_cards_index_thumbnails_and_full_images_in_one_streaming_pass(dataset, tmp_path):
    from chronoedit_sim.dataset.sink import readable_shards

    root = tmp_path / "report"
    gallery = write_gallery(root, readable_shards(dataset), ReportConfig(thumbnail_side=12))
    assert gallery.rows == 7 and gallery.tally.counts == {"written": 7, "kept": 4, "rejected": 1, "failed": 2}
    assert gallery.thumbnails_made == 5  # all but the one with stored thumbnails and the one without images
    index = data_call(root / "cards" / "index.js", "index")
    assert index["edits"] == ["s/e"] and index["outcome"] == [0, 1, 2, 2, 0, 0, 0]
    assert index["scores"]["ssim"][:2] == [0.5, None] and index["scores"]["psnr"][0] is None  # NaN: missing
    cards = data_call(root / "cards" / "c00000.js", "chunk")
    kept, rejected, failed, failed_in_edit = cards[:4]
    assert kept["thumbs"] == {"source": "t/000/0-s.webp", "edited": "t/000/0-e.webp",
                              "trajectory": "t/000/0-t.webp", "frames": 3}
    assert decode_rgb((root / kept["thumbs"]["trajectory"]).read_bytes()).shape == (5, 3 * 8, 3)  # as stored
    assert decode_rgb((root / rejected["thumbs"]["trajectory"]).read_bytes()).shape == (8, 3 * 12, 3)  # made
    assert rejected["reasons"] == ["ssim 0.10 < 0.50"] and rejected["prompt"] == "<b>bold</b>"
    assert (root / kept["full"]["source"]).read_bytes()[:4] == b"\x89PNG" and kept["full"]["source"].endswith(".png")
    assert failed["thumbs"] == {} and failed["full"] == {} and failed["error"] == "read: not a recognised image"
    # a row that failed after its source was read: a source thumbnail from the full-size copy's bytes
    assert list(failed_in_edit["thumbs"]) == ["source"] and failed_in_edit["stage"] == "edit"
    assert [f["stage"] for f in gallery.failures] == ["read", "edit"] and gallery.failures[0] == {
        "row": 2, "source": "f2.png", "edit": "s/e", "stage": "read", "error": "read: not a recognised image"}
    # no full-size copies when switched off, and no images read for failed rows then
    lean = write_gallery(tmp_path / "lean", readable_shards(dataset), ReportConfig(full_images=False))
    assert lean.rows == 7 and not (tmp_path / "lean" / "f").exists() and lean.thumbnails_made == 4


def test_thumbnails_of_a_row_and_image_extensions():
    stored = make_thumbnails(frames()[0], None, None, 8)
    assert thumbnails_of({"thumbnails": stored}, 8) is stored
    assert thumbnails_of({"thumbnails": None, "source_image": None, "edited_image": None}, 8) is None
    made = thumbnails_of({"thumbnails": None, "source_image": {"bytes": encode_image(frames()[0])},
                          "edited_image": None, "reasoning_frames": []}, 8)
    assert made["source"] and made["edited"] is None and made["trajectory"] is None
    assert [image_extension(encode_image(frames()[0], f)) for f in ("png", "webp", "jpeg")] == ["png", "webp", "jpg"]
    assert image_extension(b"GIF89a") == "bin"


def test_charts_on_a_small_table(tmp_path):
    values = {"s/a": {"ssim": [0.2, 0.4, 0.9]}, "s/b": {"ssim": [0.5], "psnr": [20.0, 30.0]}}
    per_edit = {"s/a": {"rejected_by": {"ssim_min": 2}}, "s/b": {"rejected_by": {}}}
    charts = write_charts(tmp_path, values, {"s/a": {"ssim_min": 0.45}}, per_edit,
                          {"read_ms": [1.0, 2.0], "total_ms": [100.0], "score_ms": []})
    assert [c.file for c in charts] == ["score-ssim.png", "score-psnr.png", "rejections.png", "timings.png"]
    assert all((tmp_path / c.file).read_bytes()[:4] == b"\x89PNG" for c in charts)
    assert charts[0].caption.endswith("bounds drawn: s/a min 0.45") and "none active" in charts[1].caption
    assert charts[2].caption == "s/a: ssim_min 2" and charts[3].caption == "read median 2 ms; edit (total) median 100 ms"
    # nothing rejected and no timings: those charts are left out, not drawn empty
    assert [c.file for c in write_charts(tmp_path / "quiet", values, {}, {"s/a": {"rejected_by": {}}}, {})] == [
        "score-ssim.png", "score-psnr.png"]


def test_shards_without_a_thumbnails_column_get_them_made(dataset, tmp_path):
    """Datasets written before schema 3 have no thumbnails column at all (not just null values)."""
    import pyarrow.parquet as pq

    from chronoedit_sim.dataset.sink import readable_shards

    for shard in readable_shards(dataset):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["thumbnails"]), shard)
    assert "thumbnails" not in pq.read_schema(readable_shards(dataset)[0]).names
    gallery = write_gallery(tmp_path / "old", readable_shards(dataset), ReportConfig(thumbnail_side=12))
    assert gallery.rows == 7 and gallery.thumbnails_made == 6  # every row with images, the formerly stored one too
    cards = data_call(tmp_path / "old" / "cards" / "c00000.js", "chunk")
    assert set(cards[0]["thumbs"]) >= {"source", "edited"} and cards[2]["thumbs"] == {}


@pytest.mark.parametrize("store", ["disk", "s3"])
def test_a_report_is_switched_whole_by_its_page_and_a_failed_build_leaves_the_previous_one(dataset, store, request,
                                                                                           monkeypatch):
    """A build writes a folder of its own, then the page that names it (one rename, or one PUT on a store, which
    has no rename), then removes the earlier build: the page always names a whole build, nothing is copied."""
    import re

    from chronoedit_sim import storage
    from chronoedit_sim.report import build
    from verify_helpers import finish

    finish(dataset)
    where = storage.path(dataset)
    if store == "s3":
        where = storage.path(request.getfixturevalue("s3"))
        where.fs.put(str(dataset), where.path, recursive=True)
    report = where / "report"

    def current():
        page = (report / "index.html").read_text()
        assets = json.loads(re.search(r'id="report-meta">(.*?)</script>', page).group(1))["assets"]
        return page, assets.rstrip("/")

    def names(build_folder):  # the lock file stays on disk (flock's, emptied at release); on a store it is deleted
        return sorted([build.MARKER, "index.html", build_folder] + ([build.LOCK] if store == "disk" else []))

    build.build_report(where, cfg=ReportConfig())
    page, first = current()
    assert sorted(name for name, _ in storage.scandir(report)) == names(first)
    cards = data_call(report / first / "cards" / "c00000.js", "chunk")
    assert cards[0]["thumbs"]["source"].startswith(f"{first}/t/") and (report / cards[0]["thumbs"]["source"]).exists()
    assert f'src="{first}/cards/index.js"' in page and f'src="{first}/charts/' in page

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "write_charts", broken)
    with pytest.raises(OSError):
        build.build_report(where, cfg=ReportConfig())
    assert current() == (page, first) and sorted(name for name, _ in storage.scandir(report)) == names(
        first)  # the half-made build is gone, the previous report is whole
    monkeypatch.undo()
    build.build_report(where, cfg=ReportConfig())
    second = current()[1]
    assert second != first and sorted(name for name, _ in storage.scandir(report)) == names(second)

    # a second build started while one runs is refused: its cleanup would remove the folder the first one's
    # page names (here it would start right after the first's page is written, before its cleanup)
    from chronoedit_sim.dataset.lock import OutputLocked

    switch, refused = build.atomic_write_bytes, []

    def then_another_build(path, data):
        switch(path, data)
        monkeypatch.setattr(build, "atomic_write_bytes", switch)
        with pytest.raises(OutputLocked, match=r"report: another writer is using this output \(pid \d+ on"):
            build.build_report(where, cfg=ReportConfig())
        refused.append(path)

    monkeypatch.setattr(build, "atomic_write_bytes", then_another_build)
    build.build_report(where, cfg=ReportConfig())
    third = current()[1]
    assert refused and sorted(name for name, _ in storage.scandir(report)) == names(third)
    assert (report / third / "cards" / "index.js").exists()
