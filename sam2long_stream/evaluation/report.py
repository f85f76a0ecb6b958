"""The report of a run, for people: a table of J, F and J&F, and a PNG of J per frame.

The picture is drawn with matplotlib (the ``plot`` extra: ``pip install
sam2long-stream[plot]``), on the Agg backend, imported only when a picture is drawn: the
numbers (the table, the JSON report) need nothing beyond numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

PLOT_HINT = "the J-per-frame picture needs matplotlib: pip install sam2long-stream[plot]"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: the scores are fine, only the picture is missing."""


def percent(x: float | None) -> str:
    """A score in % with one decimal; "-" where nothing was scored."""
    return "-" if x is None else f"{100 * x:.1f}"


# The results key of SAM 2 itself (the tree off) beside the pathway counts "1", "3", ...:
# P=1 alone keeps SAM2Long's memory selection, so it is not the paper's baseline.
SAM2 = "sam2"


def run_label(key: str) -> str:
    """How a results key reads in tables and plots: "P=3", "P=3 online", "SAM 2", "pred"."""
    if key == "pred":
        return "pred"
    if key.startswith(SAM2):
        return "SAM 2" + key[len(SAM2) :].replace("-", " ")
    return "P=" + key.replace("-", " ")


def format_table(report: Mapping[str, Any]) -> str:
    """Per video and mean J, F, J&F (in %) for each run (P, mode, pred) side by side."""
    ps = list(report["results"])
    header = ["video"] + [f"{run_label(p)} {k}" for p in ps for k in ("J", "F", "J&F")]
    rows = []
    for v in report["videos"]:
        row = [v]
        for p in ps:
            s = report["results"][p]["videos"].get(v, {})
            row += [percent(s.get(k)) for k in ("J", "F", "J&F")]
        rows.append(row)
    n = report["results"][ps[0]]["mean"]["objects"]
    mean = [f"mean ({n} object{'s' if n != 1 else ''})"]
    for p in ps:
        mean += [percent(report["results"][p]["mean"][k]) for k in ("J", "F", "J&F")]
    table = [header, *rows, mean]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, rows), rule, line(mean)])


def plot_path(report_path: Path) -> Path:
    """Where the J-per-frame PNG goes: beside the report, ``<stem>-j.png``."""
    return report_path.with_name(f"{report_path.stem}-j.png")


# -- the picture: J per frame, one panel per video ----------------------------------------
# Colour-blind-safe (Okabe-Ito), in run order: blue, vermilion, green, purple, ...
_COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
            (230, 159, 0), (0, 0, 0), (240, 228, 66)]  # fmt: skip
# Sizes in pixels (the figure is drawn at 100 dpi): a panel per video, its plot area
# inset by the margins that hold the axis labels; the legend above all panels.
_DPI = 100
_PANEL_W, _PANEL_H = 560, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 30, 40
_LEGEND_ENTRY_W = 260  # room for one legend entry ("P=3 offline  (J&F 63.8)")


def _px_to_pt(px: float) -> float:
    return px * 72 / _DPI


def _colour(i: int) -> tuple[float, float, float]:
    r, g, b = _COLOURS[i % len(_COLOURS)]
    return (r / 255, g / 255, b / 255)


def _line_px(i: int, n: int) -> float:
    """Earlier runs are drawn wider, so where runs agree (often P=1 and P=3 on easy
    frames) every colour still shows at the edges of the later, thinner lines."""
    return 2.5 + 2.5 * (n - 1 - i)


def plot_j_per_frame(report: Mapping[str, Any], path: str | Path) -> Path:
    """Draw J per frame (mean over the objects scored on it) for every run, one panel
    per video (1 to 3 columns), as a PNG: y is J from 0 to 1, x the frame index; a shared
    legend on top names the runs (SAM 2, P=1, P=3, ...) with their mean J&F. Raises
    PlotUnavailable without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise PlotUnavailable(PLOT_HINT) from None

    path = Path(path)
    per_frame = report["per_frame"]
    keys = list(per_frame)
    videos = list(report["videos"])
    cols = 1 if len(videos) <= 3 else 2 if len(videos) <= 20 else 3
    rows = -(-len(videos) // cols)
    width = cols * _PANEL_W
    per_row = max(1, min(len(keys), width // _LEGEND_ENTRY_W))
    header = 34 + 22 * -(-len(keys) // per_row) + 6
    height = header + rows * _PANEL_H
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)

    def box(left: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
        """A figure rectangle from pixels measured from the top left."""
        return (left / width, 1 - (top + h) / height, w / width, h / height)

    rule = "prompt and last frames not scored"
    if not report["config"].get("skip_first_and_last", True):
        rule = "all annotated frames scored"
    fig.text(10 / width, 1 - 8 / height, f"J per frame (mean over objects; {rule})",
             ha="left", va="top", fontsize=11)  # fmt: skip
    n = len(keys)
    handles = [
        Line2D([], [], color=_colour(i), linewidth=_px_to_pt(4), solid_capstyle="butt")
        for i in range(n)
    ]
    labels = [f"{run_label(k)}  (J&F {percent(report['results'][k]['mean']['J&F'])})" for k in keys]
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(4 / width, 1 - 28 / height),
            ncols=per_row,
            frameon=False,
            fontsize=9.5,
            handlelength=2.6,
            columnspacing=1.6,
        )
    for v, video in enumerate(videos):
        ox = (v % cols) * _PANEL_W
        oy = header + (v // cols) * _PANEL_H
        ax = fig.add_axes(
            box(ox + _LEFT, oy + _TOP, _PANEL_W - _LEFT - _RIGHT, _PANEL_H - _TOP - _BOTTOM)
        )
        ax.set_title(video, loc="left", fontsize=10.5)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.set_yticklabels(["0", "0.25", "0.5", "0.75", "1"])
        ax.set_ylabel("J", rotation=0, labelpad=12, va="center")
        ax.set_xlabel("frame", loc="right", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.tick_params(labelsize=8.5)
        ax.grid(axis="y", color=(0.88, 0.88, 0.88), linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        series = [per_frame[k].get(video, {"index": [], "J": []}) for k in keys]
        idx = [t for s in series for t in s["index"]]
        lo, hi = (min(idx), max(idx)) if idx else (0, 1)
        if hi == lo:
            lo, hi = lo - 1, hi + 1
        pad = 0.03 * (hi - lo)  # keep the end points off the axes
        ax.set_xlim(lo - pad, hi + pad)
        if not idx:
            ax.text(0.02, 0.92, "no scored frame", transform=ax.transAxes, color="gray")
        for i, s in enumerate(series):
            line_px = _line_px(i, n)
            sparse = len(s["index"]) <= 25  # sparse (SA-V, short clips): mark scored frames
            ax.plot(
                s["index"],
                s["J"],
                color=_colour(i),
                linewidth=_px_to_pt(line_px),
                marker="o" if sparse else None,
                markersize=_px_to_pt(line_px + 3),
                markeredgewidth=0,
                solid_joinstyle="round",
                clip_on=False,
                zorder=2 + i,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, facecolor="white")
    return path
