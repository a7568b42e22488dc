"""`chronoedit-sim report DIR [--output DIR/report]`, and the report written at the end of a run.

A build writes its images, cards and charts into a new folder of its own inside the report folder
(`b-<id>/`, which no page names yet), then index.html, which names that folder, in one step (a rename
on disk, one PUT on an object store, which has no rename), then removes the earlier builds. So a reader
sees the previous report or the new one whole, never half of one, and nothing is copied. An existing
folder is used only when it is a report (it holds MARKER): --output never deletes anything else.
One build at a time per report folder (LOCK, the dataset lock's mechanism): a second build's cleanup would
otherwise remove the folder the first one's page names.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

from .. import storage
from ..config import SCORES, ConfigLoader, ReportConfig
from ..dataset.lock import OutputLock
from ..dataset.manifest import MANIFEST, read_manifest
from ..dataset.sink import atomic_write_bytes, damage_notes
from ..errors import UserError
from . import html
from .charts import write_charts
from .gallery import CHUNK_ROWS, OUTCOMES, identities, write_gallery

log = logging.getLogger(__name__)
REPORT = "report"
# the file that says a folder is a chronoedit-sim report (and may be replaced by the next one)
MARKER = ".chronoedit-sim-report"
# the prefix of a build's folder inside the report folder
BUILD = "b-"
# the report folder's lock file: held for a build, from its folder's first file to the removal of older ones
LOCK = ".lock"


class ReportError(UserError):
    """The report cannot be built where asked (no dataset there, or --output is not a report folder)."""


def report_config(dataset: Path, manifest: dict, overrides: list[str] = (), config_files=()) -> ReportConfig:
    """The dataset's recorded `report` settings under the command line's (e.g. report.page_size=100)."""
    return ConfigLoader(list(overrides), list(config_files),
                        layers=[(str(dataset / MANIFEST), manifest["config"])]).build().report


def _check_destination(out: Path) -> None:
    if out.exists() and not (out / MARKER).exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReportError(f"{out}: exists and is not a chronoedit-sim report; choose another --output")


def _remove(folder: Path) -> None:
    try:
        storage.rmtree(folder)
    except OSError:
        pass  # a leftover no page names, removed by the next build


def build_report(dataset: Path, output: Path | None = None, overrides: list[str] = (), *, config_files=(),
                 cfg: ReportConfig | None = None) -> Path:
    """Build the report of `dataset` into `output` (default DIR/report); returns the path of its index.html."""
    dataset = storage.path(dataset)
    manifest = read_manifest(dataset)
    if manifest is None:
        raise ReportError(f"{dataset}: no {MANIFEST}: not a chronoedit-sim dataset")
    cfg = cfg or report_config(dataset, manifest, overrides, config_files)
    out = storage.path(output) if output else dataset / REPORT
    _check_destination(out)
    shards, notes = damage_notes(dataset)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():  # first, so that a build that dies leaves a folder the next one may clean
        (out / MARKER).write_text("a chronoedit-sim report; `chronoedit-sim report` replaces this folder\n")
    with OutputLock(out, path=out / LOCK, echo=log.warning):
        return _build(dataset, manifest, cfg, out, shards, notes)


def _build(dataset: Path, manifest: dict, cfg: ReportConfig, out: Path, shards, notes) -> Path:
    build = f"{BUILD}{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    try:
        gallery = write_gallery(out / build, shards, cfg, link=f"{build}/")
        tally = gallery.tally
        per_edit = tally.per_edit({k: v["planned"] for k, v in manifest.get("filter_stats", {}).items()
                                   if v.get("planned") is not None} or None)
        charts = write_charts(out / build / "charts", tally.score_values(), manifest.get("bounds", {}), per_edit,
                              tally.timings)
        models, scorers = identities(gallery)
        made = (f"; thumbnails of {gallery.thumbnails_made:,} row(s) made from their images"
                if gallery.thumbnails_made else "")
        head = "".join([html.banners(models, scorers), "".join(f'<p class="note">{html.esc(n)}</p>' for n in notes),
                        html.overview(manifest, models, scorers, per_edit, tally.counts, tally.per_backend())])
        tail = (html.charts_section(charts, f"{build}/") + html.temporal_section(tally.sequences())
                + html.evaluation_section(_evaluation(dataset))
                + html.failures_section(gallery.failures, tally.counts["failed"]))
        meta = {"pageSize": cfg.page_size, "chunkRows": CHUNK_ROWS, "scores": list(SCORES), "outcomes": OUTCOMES,
                "rows": gallery.rows, "assets": f"{build}/"}
        subtitle = (f"{dataset.resolve()}: {gallery.rows:,} rows in {len(shards)} shard(s); schema "
                    f"{manifest.get('schema_version')}; built {time.strftime('%Y-%m-%d %H:%M:%S')} in "
                    f"{time.perf_counter() - t0:.1f} s{made}")
        page = html.page(f"chronoedit-sim report: {dataset.resolve().name}", subtitle, meta, head, tail,
                         manifest.get("config_yaml", ""))
        atomic_write_bytes(out / "index.html", page.encode())  # the switch to the new build
    except BaseException:
        _remove(out / build)
        raise
    for name, _ in storage.scandir(out):  # earlier builds (and an earlier version's layout): no page names them
        if name not in (build, "index.html", MARKER) and not name.startswith(LOCK):  # the lock, its takeover markers
            _remove(out / name)
    return out / "index.html"


def _evaluation(dataset: Path) -> dict | None:
    from ..perception.evaluate import EVAL_FILE

    path = dataset / EVAL_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def build_after_run(out: Path, cfg: ReportConfig | None, echo) -> None:
    """The report at the end of a run, rescoring or evaluation (cfg None: the dataset's recorded settings).
    The dataset is complete by now: a failed report is one line (the traceback with -v), never the
    command's failure or exit code."""
    try:
        path = build_report(out, cfg=cfg)
    except Exception as exc:  # whatever broke, the dataset stays and the run's result stands
        log.info("report build failed", exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        echo(f"error: the report was not written ({type(exc).__name__}: {first}); the dataset is complete; "
             f"build it with `chronoedit-sim report {out}`")
        return
    echo(f"report: {path}")
