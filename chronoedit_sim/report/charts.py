"""The report's charts, drawn with matplotlib at build time into PNG files (no JavaScript charting).

matplotlib's object API with its Agg canvas: no pyplot, no global figure state, no display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import SCORES

# at most this many edits get a row in a score's chart; the rest are named in its caption
MAX_ROWS = 60
# edits with at most this many values also show each value as a dot (a box of 3 values says little)
DOTS_UP_TO = 50
WIDTH_IN, DPI = 5.5, 100
# timing fields shown, in pipeline order, with their labels (total_ms is the edit)
STAGES = (("read_ms", "read"), ("prepare_ms", "edit: prepare"), ("denoise_ms", "edit: denoise"),
          ("decode_ms", "edit: decode"), ("reasoning_decode_ms", "edit: reasoning decode"),
          ("preview_decode_ms", "edit: preview decode"), ("total_ms", "edit (total)"), ("encode_ms", "encode"),
          ("score_ms", "score"))
BOUND_COLOURS = {"min": "#c44e52", "max": "#dd8452"}


@dataclass(frozen=True)
class Chart:
    title: str
    # file name under the report's charts/ folder
    file: str
    # what the image shows, for its alt text and caption
    caption: str


def _figure(rows: int, labels: list[str]):
    """A figure with one horizontal axis of `rows` rows, its left margin sized to the longest label.

    Margins by arithmetic, not matplotlib's constrained layout: that measured every tick label again and
    took 40% of the build's chart time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = 0.9 + 0.3 * rows
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # about 6.5 px per character of an 8 pt label, and the tick
    left = min(0.6, (6.5 * max(map(len, labels), default=4) + 20) / (WIDTH_IN * DPI))
    fig.subplots_adjust(left=left, right=0.97, top=1 - 0.35 / height, bottom=0.5 / height)
    ax = fig.subplots()
    ax.tick_params(labelsize=8)
    return fig, ax


def _boxes(ax, data: list[list[float]], labels: list[str]) -> None:
    """One horizontal box per row (quartiles, whiskers at the 5th and 95th percentile), first row on top."""
    ax.boxplot(data, positions=range(len(data), 0, -1), orientation="horizontal", whis=(5, 95), showfliers=False,
               widths=0.6, tick_labels=labels)


def score_chart(name: str, values: dict[str, list[float]], bounds: dict[str, dict], path: Path) -> str:
    """One row per edit: the distribution of `name` and the edit's active bounds. Returns the caption."""
    edits = sorted(values)[:MAX_ROWS]
    labels = [f"{key} (n={len(values[key])})" for key in edits]
    fig, ax = _figure(len(edits), labels)
    _boxes(ax, [values[key] for key in edits], labels)
    drawn = []
    for row, key in zip(range(len(edits), 0, -1), edits):
        if len(values[key]) <= DOTS_UP_TO:
            ax.plot(values[key], [row] * len(values[key]), "o", ms=3, alpha=0.6, color="#4c72b0")
        for side, colour in BOUND_COLOURS.items():
            limit = bounds.get(key, {}).get(f"{name}_{side}")
            if limit is not None:
                ax.vlines(limit, row - 0.4, row + 0.4, colors=colour, linestyles="--", linewidth=2,
                          label=f"{side} bound" if side not in {d[1] for d in drawn} else None)
                drawn.append((key, side, limit))
    if drawn:
        ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{name} per edit", fontsize=10, loc="left")
    with path.open("wb") as fh:  # a file object: the report may be on an object store
        fig.savefig(fh, format="png")
    more = len(values) - len(edits)
    return (f"{name} per edit (box: quartiles, whiskers: 5th to 95th percentile); bounds drawn: "
            f"{', '.join(f'{k} {side} {limit:g}' for k, side, limit in drawn) or 'none active'}"
            + (f"; {more} more edit(s) not drawn" if more > 0 else ""))


def rejections_chart(per_edit: dict[str, dict], path: Path) -> str | None:
    """Rejected rows per edit and bound (a row failing two bounds counts under each); None without rejections."""
    bars = [(f"{key}: {bound}", n) for key, stats in per_edit.items() for bound, n in stats["rejected_by"].items()]
    if not bars:
        return None
    labels, counts = zip(*bars)
    fig, ax = _figure(len(bars), list(labels))
    ax.barh(range(len(bars), 0, -1), counts, tick_label=labels, color="#c44e52")
    ax.xaxis.get_major_locator().set_params(integer=True)  # rows, not fractions of one
    ax.set_title("rejected rows by bound", fontsize=10, loc="left")
    with path.open("wb") as fh:  # a file object: the report may be on an object store
        fig.savefig(fh, format="png")
    return "; ".join(f"{label} {n}" for label, n in bars)


def timings_chart(timings: dict[str, list[float]], path: Path) -> str | None:
    """Milliseconds per row of each stage (box: quartiles, whiskers: 5th to 95th percentile); None without."""
    shown = [(label, timings[key]) for key, label in STAGES if timings.get(key)]
    if not shown:
        return None
    labels, data = (list(x) for x in zip(*shown))
    fig, ax = _figure(len(shown), labels)
    _boxes(ax, data, labels)
    ax.set_xscale("log")
    ax.set_title("ms per row and stage (log scale)", fontsize=10, loc="left")
    with path.open("wb") as fh:  # a file object: the report may be on an object store
        fig.savefig(fh, format="png")
    return "; ".join(f"{label} median {sorted(v)[len(v) // 2]:.0f} ms" for label, v in shown)


def write_charts(folder: Path, score_values: dict[str, dict[str, list[float]]], bounds: dict[str, dict],
                 per_edit: dict[str, dict], timings: dict[str, list[float]]) -> list[Chart]:
    """Every chart the data has values for, as PNG files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = []
    for name in SCORES:
        values = {key: scores[name] for key, scores in score_values.items() if scores.get(name)}
        if values:
            file = f"score-{name}.png"
            charts.append(Chart(name, file, score_chart(name, values, bounds, folder / file)))
    for title, file, draw in (("Rejections by bound", "rejections.png", lambda p: rejections_chart(per_edit, p)),
                              ("Time per stage", "timings.png", lambda p: timings_chart(timings, p))):
        caption = draw(folder / file)
        if caption:
            charts.append(Chart(title, file, caption))
    return charts
