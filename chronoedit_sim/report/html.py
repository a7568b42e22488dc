"""The report's page: static HTML with its CSS and script inline, and the JSON its script reads.

Every string that comes from the data (scenario, prompt, caption, file name, error, config) goes
through `esc` here, or reaches the page as JSON (`script_json`) that the script only ever puts
into the page with textContent and DOM attributes: a prompt holding `<script>` shows as text and
runs nothing.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

STATIC = Path(__file__).with_name("static")


def esc(value) -> str:
    """Text for HTML content or a quoted attribute: & < > " ' escaped; None is empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def script_json(data) -> str:
    """JSON that is safe inside a <script> element or a script file: <, > and & as \\u escapes (no `</script>`,
    no `<!--`), non-ASCII (the JavaScript line separators included) escaped, no NaN."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value


def banners(models: list[dict], scorers: list[dict]) -> str:
    out = []
    if any(m["random_weights"] for m in models):
        out.append("RANDOM WEIGHTS: rows from a randomly initialised edit model (the tiny test checkpoint): "
                   "the edits are noise that proves the plumbing, not ChronoEdit's quality.")
    if any(s.get("random_weights") and not s.get("role") for s in scorers):
        out.append("RANDOM WEIGHTS: the scores come from a randomly initialised CLIP: they mean nothing, and "
                   "neither do keep and reject decided from them.")
    if any(s.get("random_weights") and s.get("role") for s in scorers):
        out.append("RANDOM WEIGHTS: a randomly initialised vision-language model rewrote the prompts or judged the "
                   "edits: its text is noise and its vlm_* scores mean nothing.")
    return "".join(f'<div class="banner" role="alert">{esc(text)}</div>' for text in out)


def overview(manifest: dict, models: list[dict], scorers: list[dict], per_edit: dict, totals: dict,
             per_backend: dict | None = None) -> str:
    model = manifest.get("model") or {}
    model_rows = [[m["model_id"], m["model_hash"], "yes" if m["random_weights"] else "no", m["rows"]] for m in models]
    scorer_rows = [[" ".join(filter(None, [s.get("model") or s.get("clip"), s.get("role") and f"({s['role']})"])),
                    s.get("pretrained", s.get("model_hash")),
                    "yes" if s.get("random_weights") else "no", s["rows"]] for s in scorers]
    runs = [[r.get("run_id"), r.get("started_at"), r.get("status"), _fmt(r.get("wall_s"), 1),
             _fmt(r.get("jobs_per_s", r.get("rows_per_s")), 3),
             *(_fmt((r.get("counts") or {}).get(k)) for k in ("planned", "written", "kept", "rejected", "failed"))]
            for r in manifest.get("runs", [])]
    counts = []
    for key, st in per_edit.items():
        scenario, _, edit = key.partition("/")
        counts.append([scenario, edit, _fmt(st.get("planned")), *(_fmt(st[k]) for k in
                                                                     ("written", "kept", "rejected", "failed")),
                       ", ".join(f"{b} {n}" for b, n in st["rejected_by"].items()) or "-",
                       ", ".join(f"{s} {n}" for s, n in st["failed_by_stage"].items()) or "-"])
    planned = sum(st.get("planned") or 0 for st in per_edit.values()) or None
    counts.append(["all", "", _fmt(planned), *(_fmt(totals[k]) for k in ("written", "kept", "rejected", "failed")),
                   "", ""])
    backends = [[b, *(_fmt(st[k]) for k in ("written", "kept", "rejected", "failed"))]
                for b, st in (per_backend or {}).items()]
    rescored = manifest.get("rescored_from")
    source = f"<p>Rescored from {esc(rescored['path'])}.</p>" if rescored else ""
    return f"""
<section id="overview"><h2>Overview</h2>
<p>Edit model: {esc(model.get('id'))} (preset {esc(model.get('preset'))}); rows by model:</p>
{table(["model", "hash", "random weights", "rows"], model_rows)}
<p>Rows by editor backend:</p>
{table(["backend", "written", "kept", "rejected", "failed"], backends, "backends")}
<p>Scores by:</p>
{table(["CLIP", "pretrained", "random weights", "rows"], scorer_rows)}
{source}
<h3>Counts per scenario and edit</h3>
{table(["scenario", "edit", "planned", "written", "kept", "rejected", "failed", "rejected by bound",
        "failed in stage"], counts, "counts")}
<h3>Runs (wall time and throughput from run.json)</h3>
{table(["run", "started", "status", "wall s", "rows/s", "planned", "written", "kept", "rejected", "failed"], runs)}
</section>"""


def charts_section(charts, assets: str = "") -> str:
    figures = "".join(f'<figure><img src="{esc(assets)}charts/{esc(c.file)}" alt="{esc(c.caption)}" loading="lazy">'
                      f"<figcaption>{esc(c.caption)}</figcaption></figure>" for c in charts)
    figures = f'<div class="grid">{figures}</div>' if figures else "<p>No scores yet.</p>"
    return f'<section id="charts"><h2>Charts</h2>{figures}</section>'


# sequence rows in the temporal section: the worst first
TEMPORAL_LISTED = 50


def temporal_section(sequences: dict) -> str:
    """temporal_flicker per sequence, edit and sample (sequence sources only), the worst first."""
    if not sequences:
        return ""
    ranked = sorted(sequences.items(), key=lambda kv: -kv[1]["worst"])
    rows = [[key, v["frames"], _fmt(v["mean"], 4), _fmt(v["worst"], 4), v["worst_frame"]]
            for key, v in ranked[:TEMPORAL_LISTED]]
    more = f"<p>{len(ranked) - TEMPORAL_LISTED:,} more in run.json (temporal).</p>" if len(ranked) > TEMPORAL_LISTED else ""
    return ('<section id="temporal"><h2>Temporal consistency</h2><p>temporal_flicker: how much more each edited '
            "frame changes from the previous frame of its camera stream than the source does (0 = steady).</p>"
            f'{table(["sequence | edit #sample", "frames", "mean", "worst", "worst frame"], rows, "temporal")}'
            f"{more}</section>")


def _with_ci(value, ci) -> str:
    return _fmt(value, 3) + (f" [{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]" if ci else "")


def evaluation_section(result: dict | None) -> str:
    """`chronoedit-sim evaluate`'s numbers (DIR/eval.json), when it has run."""
    if not result:
        return ""
    metric = "accuracy" if result.get("task") == "classification" else "ap"
    rows = [[split, v.get("scenario") or "", v.get("severity") if v.get("severity") is not None else "",
             _with_ci(v.get(metric), v.get("ci")), _fmt(v.get("drop"), 3), v.get("images")]
            for split, v in sorted(result["splits"].items()) if not v.get("changes_truth")]
    changing = [[split, _with_ci(v["ap"], v.get("ci")), f"{v['inserted_found']} of {v['inserted']}",
                 f"{v['removed_detected']} of {v['removed']}"] for split, v in sorted(result.get("truth_changing", {}).items())]
    boot = result.get("bootstrap")
    interval = f" Intervals: 95%, {boot['resamples']} resamples of the source frames." if boot else ""
    unscored = (f"{result.get('failed_images', 0)} image(s) failed and {result.get('refused_images', 0)} had their "
                f"detections refused (left out of every number; eval.json says why).")
    second = ("<h3>Edits that change the ground truth (not in mPC)</h3>"
              + table(["split", "ap", "inserted found (IoU 0.5)", "removed still detected"], changing, "truth-changing")
              if changing else "")
    backends = result.get("by_backend") or {}
    # one mPC per editor (generative edits beside COCO-C's corruptions), when the dataset has several
    by_backend = (table(["backend", "mPC", "rPC"], [[b, _with_ci(v["mPC"], v["mPC_ci"]), _with_ci(v["rPC"], v["rPC_ci"])]
                                                    for b, v in backends.items()], "evaluation-backends")
                  if len(backends) > 1 else "")
    return (f'<section id="evaluation"><h2>Evaluation</h2><p>{esc(result["detector"])}: {esc(result["metric"])}; '
            f'{esc(result.get("robustness", ""))}. mPC {_with_ci(result.get("mPC"), result.get("mPC_ci"))}, '
            f'rPC {_with_ci(result.get("rPC"), result.get("rPC_ci"))}.{esc(interval)} {esc(unscored)}</p>{by_backend}'
            f'{table(["split", "scenario", "severity", metric, "drop", "images"], rows, "evaluation")}{second}</section>')


def failures_section(failures: list[dict], failed: int) -> str:
    if not failed:
        return '<section id="failed"><h2>Failed rows</h2><p>None.</p></section>'
    rows = [[f["row"], f["edit"], f["source"], f["stage"], f["error"]] for f in failures]
    more = f"<p>{failed - len(failures):,} more: filter the gallery to failed rows.</p>" if failed > len(failures) else ""
    return (f'<section id="failed"><h2>Failed rows ({failed:,})</h2>'
            f'{table(["row", "edit", "source", "stage", "error"], rows, "failures")}{more}</section>')


def page(title: str, subtitle: str, meta: dict, head: str, tail: str, config_yaml: str) -> str:
    """The whole page: `head` (banners, overview) before the gallery and `tail` (charts, failed rows) after
    it, both already escaped HTML (the sections above)."""
    css = (STATIC / "report.css").read_text()
    script = (STATIC / "report.js").read_text()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{css}</style>
</head><body>
<header class="top"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>
<nav><a href="#overview">overview</a> <a href="#gallery">gallery</a> <a href="#charts">charts</a>
<a href="#failed">failed rows</a> <a href="#config">config</a></nav></header>
<main>
{head}
<section id="gallery"><h2>Gallery</h2>
<div class="controls">
<label>scenario <select id="f-scenario"><option value="">all</option></select></label>
<label>edit <select id="f-edit"><option value="">all</option></select></label>
<label>outcome <select id="f-outcome"><option value="">all</option><option value="kept">kept</option>
<option value="rejected">rejected</option><option value="failed">failed</option></select></label>
<label>sort <select id="sort"><option value="">dataset order</option></select></label>
<button id="prev" type="button">&larr; previous</button> <span id="pager"></span>
<button id="next" type="button">next &rarr;</button>
</div>
<p class="hint">Hover or click a trajectory to play it; click a card's images to open them full size.</p>
<div id="cards" data-state="loading"></div>
</section>
{tail}
<section id="config"><h2>Effective config</h2><details><summary>config.yaml of the last run</summary>
<pre>{esc(config_yaml)}</pre></details></section>
</main>
<dialog id="viewer"><form method="dialog"><button class="close">close</button></form><div id="viewer-body"></div>
</dialog>
<script type="application/json" id="report-meta">{script_json(meta)}</script>
<script>{script}</script>
<script src="{esc(meta.get("assets", ""))}cards/index.js" async></script>
</body></html>
"""
