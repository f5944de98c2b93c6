"""Scaling curves in the style of the paper's Figure 4: accuracy against thinking tokens, log2 x-axis."""

from __future__ import annotations

from s1.core.files import save_figure
from s1.evaluate.records import SummaryRow

Point = tuple  # (mean thinking tokens, accuracy %, setting label[, CI low, CI high]): error bars when given


def method_points(rows: list[SummaryRow], method: str, x: str = "mean_thinking_tokens") -> list[Point]:
    """One method's curve from a summary's setting rows (reference settings are not on the curve); `x` is
    the row's field on the x-axis (mean_total_tokens: everything processed). A row with no point (rejection
    sampling where no sample ever fit: no accuracy, no thinking) is left off."""
    return [
        (r.x(x), r.accuracy, r.setting, r.ci_low, r.ci_high)
        for r in rows
        if r.method == method and not r.reference and r.x(x) == r.x(x) and r.accuracy == r.accuracy
    ]


def _full(point: Point) -> tuple:
    """(x, y, label, low, high) with the x clamped to 1 for the log axis and a missing interval as none."""
    x, y = max(point[0], 1.0), point[1]
    label = point[2] if len(point) > 2 else ""
    low = point[3] if len(point) > 3 and point[3] is not None else y
    high = point[4] if len(point) > 4 and point[4] is not None else y
    return x, y, label, low, high


def scaling_plot(
    curves: list[tuple[str, list[Point]]], path, title: str = "", format: str | None = None, xlabel: str | None = None
):
    """One line per method, points sorted by thinking tokens and labelled with their setting, written whole or
    not at all (core/files.py). `path` may be a file object, with `format` ("svg" for the HTML report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=120)
    top = 10.0
    all_x: list[float] = []
    for label, points in curves:
        if not points:
            continue
        points = sorted(_full(p) for p in points)
        xs, ys, names, lows, highs = zip(*points)
        (line,) = ax.plot(xs, ys, marker="o", linewidth=1.8, label=label)
        if any(lo != y or hi != y for y, lo, hi in zip(ys, lows, highs)):
            ax.errorbar(
                xs,
                ys,
                yerr=[[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]],
                fmt="none",
                ecolor=line.get_color(),
                alpha=0.45,
                capsize=3,
                linewidth=1.2,
            )
            top = max(top, max(highs))
        for x, y, name, _, _ in points:
            if name:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=6, alpha=0.7)
        top = max(top, max(ys))
        all_x += xs
    ax.set_xscale("log", base=2)
    if all_x:
        lo, hi = min(all_x), max(all_x)
        ticks = [2.0**k for k in range(0, 20) if lo / 1.5 <= 2.0**k <= hi * 1.5]
        if len(ticks) < 3:  # a narrow range: label the measured points instead of powers of two
            ticks = sorted({round(x) for x in all_x})
        ax.set_xticks(ticks)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(f"{xlabel or 'average thinking tokens'} (log2 scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, min(100.0, top * 1.15 + 2))
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if any(points for _, points in curves):
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    try:
        save_figure(fig, path, format=format)
    finally:
        plt.close(fig)
    return path
