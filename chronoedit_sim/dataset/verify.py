"""`chronoedit-sim verify DIR [--images]`: is the dataset whole?

Whole means: run.json is there, of this schema version, and its last run finished with no writer
at work now; every shard under data/ and rejected/ reads in full (with --images, every image and
video decodes) and has the dataset's schema; every job_id appears once across data/ and
rejected/; and the rows agree with run.json's counts. Temporary leftovers and quarantined shards
are reported as notes: readers never see them. Only reads; exit 0 when whole, 1 when not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..errors import UserError
from .lock import describe, live_holder
from .manifest import MANIFEST, read_manifest
from .schema import IMAGE_COLUMNS, IMAGE_LIST_COLUMNS, SCHEMA, SCHEMA_VERSION, THUMBNAIL_IMAGES
from .sink import DATA, INFLIGHT, READ_ERRORS, REJECTED, STATE, all_shards, data_dir, quarantined, read_error
from .stats import COLUMNS as STATS_COLUMNS
from .stats import Tally

# at most this many examples per kind of problem are listed, then a count of the rest
EXAMPLES = 5
COUNTED = ("written", "kept", "rejected", "failed")


@dataclass
class Verdict:
    out: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shards: dict[str, int] = field(default_factory=lambda: {DATA: 0, REJECTED: 0})
    rows: int = 0
    images: int = 0

    @property
    def whole(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        where = ", ".join(f"{part}/ {n}" for part, n in self.shards.items())
        images = f", {self.images} image(s) and video(s) decoded" if self.images else ""
        head = (f"{self.out}: whole: {self.rows} rows in {sum(self.shards.values())} shard(s) ({where}), every "
                f"job_id once, counts agree with run.json{images}" if self.whole else
                f"{self.out}: NOT whole: {len(self.problems)} problem(s); {self.rows} readable rows in "
                f"{sum(self.shards.values())} readable shard(s) ({where})")
        return [head, *(f"problem: {p}" for p in self.problems), *(f"note: {n}" for n in self.notes)]


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else ""
    return ", ".join(items[:EXAMPLES]) + more


def _schema_problem(schema) -> str | None:
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in SCHEMA]:
        theirs, ours = set(schema.names), set(SCHEMA.names)
        return f"columns differ from schema {SCHEMA_VERSION} (missing {sorted(ours - theirs)}, extra " \
               f"{sorted(theirs - ours)}, or other types)"
    version = json.loads((schema.metadata or {}).get(b"chronoedit_sim", b"{}")).get("schema_version")
    if version != SCHEMA_VERSION:
        return f"written with schema {version}, this version reads {SCHEMA_VERSION}"
    return None


def _decode_all(row: dict) -> tuple[int, list[str]]:
    """How many images and videos the row holds, and those that do not decode."""
    from .encode import decode_rgb
    from .video import decode_video

    items = [(c, row[c], decode_rgb) for c in IMAGE_COLUMNS]
    items += [(f"{c}[{i}]", img, decode_rgb) for c in IMAGE_LIST_COLUMNS for i, img in enumerate(row[c] or [])]
    items += [("reasoning_video", row["reasoning_video"], decode_video)]
    items += [(f"thumbnails.{k}", (row["thumbnails"] or {}).get(k), decode_rgb) for k in THUMBNAIL_IMAGES]
    items = [(name, img["bytes"], decode) for name, img, decode in items if img and img.get("bytes") is not None]
    bad = []
    for name, data, decode in items:
        try:
            decode(data)
        except Exception as exc:  # any decoder failure is the finding, whatever its type
            bad.append(f"{name} ({type(exc).__name__}: {str(exc)[:80]})")
    return len(items), bad


def verify(out: Path, images: bool = False) -> Verdict:
    out = storage.path(out)
    if not out.is_dir():
        raise UserError(f"{out}: no such folder")
    verdict = Verdict(out)
    manifest = read_manifest(out)
    _check_manifest(verdict, manifest)
    tally = _check_shards(verdict, images)
    if manifest and (manifest.get("runs") or [{}])[-1].get("status") == "finished":
        _check_counts(verdict, manifest.get("counts"), tally.counts)
    leftovers = [str(p.relative_to(out)) for folder in (out, data_dir(out, DATA), data_dir(out, REJECTED))
                 if folder.is_dir() for p in sorted(folder.glob(".*.tmp"))]
    if leftovers:
        verdict.notes.append(f"{len(leftovers)} temporary leftover(s) of an interrupted write, never read (the next "
                             f"run removes them): {_listed(leftovers)}")
    inflight = sorted(p.name for p in (out / STATE / INFLIGHT).glob("*"))
    if inflight:
        verdict.notes.append(f"{len(inflight)} in-flight record(s) under {STATE}/{INFLIGHT}/ of worker processes that "
                             f"died or a run that did not end (the next run clears them): {_listed(inflight)}")
    held = quarantined(out)
    if held:
        verdict.notes.append(f"{len(held)} quarantined shard(s) under {STATE}/quarantine/, unreadable, never read "
                             f"and kept for inspection: {_listed([p.name for p in held])}")
    return verdict


def _check_manifest(verdict: Verdict, manifest: dict | None) -> None:
    problems = verdict.problems
    if manifest is None:
        problems.append(f"no {MANIFEST}: not a chronoedit-sim dataset, or its first run never started")
    else:
        if manifest.get("schema_version", "1") != SCHEMA_VERSION:
            problems.append(f"{MANIFEST} says schema {manifest.get('schema_version', '1')}, this version reads "
                            f"{SCHEMA_VERSION}")
        last = (manifest.get("runs") or [{}])[-1]
        if last.get("status") != "finished":
            problems.append(f"the last run ({last.get('run_id')}, started {last.get('started_at')}) did not finish: "
                            "rerun the same command to complete it")
    holder = live_holder(verdict.out)
    if holder:
        problems.append(f"a writer is at work ({describe(holder)}): verify once it has ended")


def _check_shards(verdict: Verdict, images: bool) -> Tally:
    """Read every shard in full; count its rows, find duplicate job_ids and (images) undecodable images."""
    tally, seen, dupes, unreadable, bad_images = Tally(with_scores=False), {}, [], [], []
    for shard in all_shards(verdict.out):
        name = str(shard.relative_to(verdict.out))
        try:
            schema_problem = _schema_problem(storage.parquet(shard).schema_arrow)
            if schema_problem:
                verdict.problems.append(f"{name}: {schema_problem}")
                continue
            table = storage.read_table(shard)  # every column, every page: decodes or fails here
        except READ_ERRORS as exc:
            unreadable.append(f"{name} ({read_error(exc)})")
            continue
        verdict.shards[shard.parent.name] += 1
        for row in table.select(["job_id", *STATS_COLUMNS]).to_pylist():
            verdict.rows += 1
            tally.add(row)
            if row["job_id"] in seen:
                dupes.append(f"{row['job_id']} in {seen[row['job_id']]} and {name}")
            seen.setdefault(row["job_id"], name)
        if images:
            for row in table.select(["job_id", *IMAGE_COLUMNS, *IMAGE_LIST_COLUMNS, "reasoning_video",
                                     "thumbnails"]).to_pylist():
                n, bad = _decode_all(row)
                verdict.images += n - len(bad)
                bad_images += [f"{name} job {row['job_id']}: {b}" for b in bad]
    if unreadable:
        verdict.problems.append(f"{len(unreadable)} unreadable shard(s): {_listed(unreadable)}; the next run into "
                                "this output moves them to _state/quarantine/ and does their jobs again")
    if dupes:
        verdict.problems.append(f"{len(dupes)} job_id(s) appear more than once: {_listed(dupes)}")
    if bad_images:
        verdict.problems.append(f"{len(bad_images)} image(s) or video(s) do not decode: {_listed(bad_images)}")
    return tally


def _check_counts(verdict: Verdict, counts: dict | None, found: dict) -> None:
    """A finished run's run.json counts against the rows the shards hold."""
    if counts is None or any(counts.get(k) != found[k] for k in COUNTED):
        recorded = ", ".join(f"{k} {(counts or {}).get(k)}" for k in COUNTED)
        verdict.problems.append(f"{MANIFEST} counts ({recorded}) disagree with the shards "
                                f"({', '.join(f'{k} {found[k]}' for k in COUNTED)})")
    elif counts.get("planned") is not None and counts["planned"] != found["written"]:
        verdict.problems.append(f"{MANIFEST} planned {counts['planned']} jobs but the shards hold "
                                f"{found['written']} rows")
