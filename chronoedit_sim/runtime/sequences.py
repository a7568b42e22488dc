"""temporal_flicker: each row of a sequence source scored against the previous frame of its camera stream.

Rows come back from Ray in any order, so this runs where they all arrive, the driver, between the stream and
the writer: a row waits until the row of its previous frame (same scenario, edit and sample) is back, then is
scored, bounded (filter.temporal_flicker_*) and written. Memory: the rows waiting (at most those overtaken by
a slower predecessor: in practice the jobs Ray Data has in flight) plus one decoded (source, edit) pair per
stream whose next row has not arrived. On resume the previous frame of the first pending job of a stream is
read back from the dataset when that job arrives. The first frame of a stream has a flicker of 0 (nothing before
it to flicker against); a row whose previous frame failed or never came back has none (null).
"""

from __future__ import annotations

from pathlib import Path

from .. import storage
from ..config import SEQUENCE_SCORES
from ..dataset.encode import decode_rgb
from ..scenario import settings_key
from ..scoring.filter import apply_filter
from ..scoring.metrics import temporal_flicker


def _frames(row: dict):
    """The row's decoded (source, edit), or None when it has none (failed, stored without images, unreadable)."""
    if row.get("error") or not row.get("source_image") or not row.get("edited_image"):
        return None
    try:
        return decode_rgb(row["source_image"]["bytes"]), decode_rgb(row["edited_image"]["bytes"])
    except Exception:  # noqa: BLE001  (bytes read back on resume: the next row loses its flicker, not the run)
        return None


class SequenceScorer:
    """Rows in, rows ready to write out. A row of a sequence carries its `sequence_link` from the plan: its
    previous frame's job (None: the stream's first), whether that job is already in the dataset, and whether a
    pending job follows it (only then are its frames kept)."""

    def __init__(self, settings: dict, max_side: int, read_done=lambda job_ids: []):
        # read_done(job_ids): the dataset's rows of those jobs (a resumed run's predecessors), with their images
        self.settings, self.max_side, self.read_done = settings, max_side, read_done
        # job -> its decoded (source, edit), or None, until the row that follows it is scored
        self.frames: dict[str, tuple | None] = {}
        # previous job -> the row waiting for it, with its link
        self.waiting: dict[str, tuple[dict, dict]] = {}

    def add(self, row: dict) -> list[dict]:
        """The rows ready to write now: this one, unless it waits for its previous frame, and those it frees."""
        link = row.pop("sequence_link", None)
        if link is None:  # not part of a sequence: a bound on its flicker rejects, as any missing score
            return [self._bound(row, None, "temporal_flicker unavailable: the frame is not part of a sequence")]
        prev = link["previous"]
        if prev is not None and prev not in self.frames:
            if not link["previous_done"]:
                self.waiting[prev] = (row, link)
                return []
            self.frames[prev] = next((_frames(r) for r in self.read_done({prev})), None)
        ready = [self._score(row, link)]
        job = row["job_id"]
        while job in self.waiting:  # the rows that waited for this one
            row, link = self.waiting.pop(job)
            ready.append(self._score(row, link))
            job = row["job_id"]
        return ready

    def flush(self) -> list[dict]:
        """At the end: rows whose previous frame never came back, without flicker."""
        rows = [self._score(row, link, arrived=False) for row, link in self.waiting.values()]
        self.waiting.clear()
        return rows

    def _score(self, row: dict, link: dict, arrived: bool = True) -> dict:
        """`arrived`: False when the previous frame never came back."""
        prev = link["previous"]
        before = self.frames.pop(prev, None) if prev is not None and arrived else None
        mine = _frames(row)
        if link["has_next"]:  # its next frame needs it
            self.frames[row["job_id"]] = mine
        if prev is None:
            return self._bound(row, 0.0)
        if not mine:
            return self._bound(row, None, "temporal_flicker unavailable: its own stored images cannot be read")
        if not before:
            return self._bound(row, None, "temporal_flicker unavailable: the previous frame of its sequence has no edit")
        try:  # the driver's own work: a failure costs this row its score, never the run
            value = temporal_flicker(before[0], mine[0], before[1], mine[1], self.max_side)
        except Exception as exc:
            return self._bound(row, None, f"temporal_flicker unavailable: {type(exc).__name__}: {exc}")
        return self._bound(row, value)

    def _bound(self, row: dict, value: float | None, why: str = "") -> dict:
        """The row with its flicker and the flicker bounds applied (`why`: the reason a value is missing)."""
        if row.get("error") or row.get("scores") is None:
            return row
        row["scores"] = {**row["scores"], "temporal_flicker": value}
        bounds = self.settings[settings_key(row["scenario"], row["edit_id"])].filter
        keep, reasons = apply_filter(row["scores"], bounds, {"temporal_flicker": why} if why else {}, SEQUENCE_SCORES)
        row["keep"], row["reject_reasons"] = row["keep"] and keep, [*row["reject_reasons"], *reasons]
        return row


def done_rows(out: Path, job_ids: set[str]) -> list[dict]:
    """The dataset's rows of `job_ids`, with the images the flicker needs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..dataset.sink import readable_shards

    shards = readable_shards(out) if job_ids else []
    if not shards:
        return []
    table = storage.parquet_dataset(shards).to_table(
        columns=["job_id", "error", "source_image", "edited_image"], filter=pc.field("job_id").isin(pa.array(sorted(job_ids), pa.string())))
    return table.to_pylist()
