"""The gallery's data: one streaming pass over the shards, a row group at a time.

For each row: its thumbnails written as files (copied from the `thumbnails` column, or made from
the row's images for a dataset without them), its source and edit copied as stored when
`report.full_images` is on, one entry in the index that the page filters and sorts, and its
details in a chunk file that the page loads only when one of its cards is shown. Memory holds
one row group and the index (a few numbers per row), whatever the dataset's size.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..config import SCORES, ReportConfig
from ..dataset.encode import decode_rgb, make_thumbnails, stored_trajectory
from ..dataset.schema import THUMBNAIL_IMAGES, fill_later
from ..dataset.stats import Tally, outcome
from .html import script_json

# what a card, the counts and the charts read; images are read only where needed
LIGHT = ("job_id", "scenario", "edit_id", "sample_index", "source_id", "prompt", "target_caption", "keep",
         "reject_reasons", "error_stage", "error", "scores", "timings_ms", "model_id", "model_hash",
         "random_weights", "scorer", "enhancer", "judge", "reasoning_kind", "sequence_id", "backend")
# what the thumbnails of a row without them are made from
IMAGES = ("source_image", "edited_image", "reasoning_frames", "reasoning_video")
OUTCOMES = ("kept", "rejected", "failed")
# rows per chunk file: a page of cards loads at most a page's worth of chunks
CHUNK_ROWS = 100
# files per folder of thumbnails and full-size images: folders of a few thousand entries stay fast
FILES_PER_FOLDER = 1000
# failed rows listed in the page itself (all of them are in the gallery's "failed" filter)
FAILURES_LISTED = 500
# a card's error text is cut here: a traceback belongs in the dataset, not in every card
ERROR_CHARS = 2000
_THUMB_SUFFIX = {"source": "s", "edited": "e", "trajectory": "t"}


def image_extension(data: bytes) -> str:
    """The file extension of encoded image bytes, from their magic number (browsers go by it from disk)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    return "bin"


def _has_thumbnails(row: dict) -> bool:
    return any((row.get("thumbnails") or {}).get(k) for k in THUMBNAIL_IMAGES)


def thumbnails_of(row: dict, side: int) -> dict | None:
    """The row's `thumbnails`, or ones made from its stored images when it has none (None without images)."""
    if _has_thumbnails(row):
        return row["thumbnails"]
    images = {k: row.get(k) for k in ("source_image", "edited_image")}
    if not any(images.values()):
        return None
    source, edited = (decode_rgb(images[k]["bytes"]) if images[k] else None for k in images)
    return make_thumbnails(source, edited, stored_trajectory(row), side)


@dataclass
class Gallery:
    """What the pass found: counts and values (a Tally), identities, and the failed rows to list."""

    rows: int = 0
    tally: Tally = field(default_factory=Tally)
    failures: list[dict] = field(default_factory=list)
    # (model_id, model_hash, random_weights) -> rows
    models: Counter = field(default_factory=Counter)
    # the scorer column's JSON -> rows
    scorers: Counter = field(default_factory=Counter)
    # rows whose thumbnails the report made (the dataset had none)
    thumbnails_made: int = 0
    # columns the page filters and sorts by: edit number (into "edits"), outcome number, each score
    index: dict = field(default_factory=lambda: {"edits": [], "edit": [], "outcome": [],
                                                 "scores": {name: [] for name in SCORES}})
    edit_numbers: dict[str, int] = field(default_factory=dict)

    @property
    def chunks(self) -> int:
        return -(-self.rows // CHUNK_ROWS)


class _Writer:
    """Files of the gallery under the report folder, named by row number, never by a value from the data."""

    def __init__(self, root: Path, link: str):
        self.root, self.link, self.made = root, link, set()

    def put(self, kind: str, i: int, suffix: str, data: bytes) -> str:
        folder = f"{kind}/{i // FILES_PER_FOLDER:03d}"
        if folder not in self.made:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            self.made.add(folder)
        rel = f"{folder}/{i}{suffix}"
        (self.root / rel).write_bytes(data)
        return self.link + rel


def _card(i: int, row: dict, kind: str, files: _Writer, thumbs: dict | None, full: bool) -> dict:
    card = {"job": row["job_id"], "source": row["source_id"], "sample": row["sample_index"], "prompt": row["prompt"],
            "caption": row["target_caption"], "reasons": [r["text"] for r in row["reject_reasons"] or []],
            "stage": row["error_stage"], "error": (row["error"] or "")[:ERROR_CHARS] or None,
            "kind": row["reasoning_kind"], "thumbs": {}, "full": {}}
    for name in THUMBNAIL_IMAGES:
        image = (thumbs or {}).get(name)
        if image and image.get("bytes"):
            card["thumbs"][name] = files.put("t", i, f"-{_THUMB_SUFFIX[name]}.webp", image["bytes"])
    if card["thumbs"].get("trajectory"):
        card["thumbs"]["frames"] = thumbs["trajectory_frames"]
    for name, column in (("source", "source_image"), ("edited", "edited_image")):
        image = row.get(column) if full else None
        if image and image.get("bytes"):
            card["full"][name] = files.put("f", i, f"-{_THUMB_SUFFIX[name]}.{image_extension(image['bytes'])}",
                                           image["bytes"])
    return card


def _add(gallery: Gallery, row: dict, kind: str) -> None:
    """The row's entry in the index, the identities and the failed list."""
    index, key = gallery.index, f"{row['scenario']}/{row['edit_id']}"
    if key not in gallery.edit_numbers:
        gallery.edit_numbers[key] = len(index["edits"])
        index["edits"].append(key)
    index["edit"].append(gallery.edit_numbers[key])
    index["outcome"].append(OUTCOMES.index(kind))
    scores = row["scores"] or {}
    for name in SCORES:
        value = scores.get(name)
        # NaN and infinity have no JSON: shown and sorted as missing
        index["scores"][name].append(round(float(value), 4) if value is not None and math.isfinite(value) else None)
    if row["model_id"] is not None:
        gallery.models[(row["model_id"], row["model_hash"], bool(row["random_weights"]))] += 1
    if row["scorer"] is not None:
        gallery.scorers[row["scorer"]] += 1
    for role in ("enhancer", "judge"):  # the VLM's identity, tagged with what it did
        if row[role] is not None:
            gallery.scorers[json.dumps({**json.loads(row[role]), "role": role}, sort_keys=True)] += 1
    if kind == "failed" and len(gallery.failures) < FAILURES_LISTED:
        gallery.failures.append({"row": gallery.rows, "source": row["source_id"], "edit": key,
                                 "stage": row["error_stage"], "error": (row["error"] or "")[:ERROR_CHARS]})


def write_gallery(root: Path, shards: list[Path], cfg: ReportConfig, link: str = "") -> Gallery:
    """Thumbnails, full-size images and card data under `root` (cards/index.js, cards/c<N>.js); the cards
    name their images by `link` + the path under `root` (the page's way to `root`)."""
    gallery, files, chunk = Gallery(), _Writer(root, link), []
    side = cfg.thumbnail_side or ReportConfig.thumbnail_side
    cards = root / "cards"
    cards.mkdir(parents=True, exist_ok=True)

    def flush() -> None:
        number = (gallery.rows - 1) // CHUNK_ROWS
        (cards / f"c{number:05d}.js").write_text(f"window.CE_REPORT.chunk({number}, {script_json(chunk)});\n")
        chunk.clear()

    for shard in shards:
        parquet = storage.parquet(shard)
        names = set(parquet.schema_arrow.names)
        light = [c for c in (*LIGHT, "thumbnails") if c in names]
        light += ["source_image", "edited_image"] if cfg.full_images else []
        for group in range(parquet.num_row_groups):
            rows = fill_later(parquet.read_row_group(group, columns=light).to_pylist())
            # edited rows without thumbnails (a dataset made without them): their images, this row group only;
            # a failed row gets its source thumbnail only where the full-size source was read anyway
            needed = [i for i, r in enumerate(rows) if not _has_thumbnails(r) and not r["error_stage"]]
            if needed:
                heavy = parquet.read_row_group(group, columns=[c for c in IMAGES if c in names]).take(needed)
                for i, images in zip(needed, heavy.to_pylist()):
                    rows[i] = {**rows[i], **images}
            for row in rows:
                kind = gallery.tally.add(row)
                thumbs = thumbnails_of(row, side)
                gallery.thumbnails_made += thumbs is not None and thumbs is not row.get("thumbnails")
                _add(gallery, row, kind)
                chunk.append(_card(gallery.rows, row, kind, files, thumbs, cfg.full_images))
                gallery.rows += 1
                if len(chunk) == CHUNK_ROWS:
                    flush()
    if chunk:
        flush()
    (cards / "index.js").write_text(f"window.CE_REPORT.index({script_json(gallery.index)});\n")
    return gallery


def identities(gallery: Gallery) -> tuple[list[dict], list[dict]]:
    """(edit models, scorers), each with its row count and whether its weights were random."""
    models = [{"model_id": m, "model_hash": h, "random_weights": r, "rows": n} for (m, h, r), n in
              gallery.models.most_common()]
    scorers = []
    for text, n in gallery.scorers.most_common():
        try:
            scorer = json.loads(text)
        except ValueError:
            scorer = {"model": text}
        scorers.append({**scorer, "rows": n} if isinstance(scorer, dict) else {"model": text, "rows": n})
    return models, scorers
