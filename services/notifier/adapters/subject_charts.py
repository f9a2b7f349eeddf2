"""The subject page's charts drawn with matplotlib: one per analyte (results, protocol
thresholds, laboratory limits, CTCAE bands, baseline, Day 0, doses), and a timeline of
study-drug doses, other medications and adverse events on the same study-day axis.

Every mark a test or a reader looks for carries an id (``gid``): ``<chart>-threshold-<rule>``,
``<chart>-band-grade-<n>``, ``<chart>-day0``, ``<chart>-baseline``, ``<chart>-doses``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from services.notifier.adapters.svg_documents import render_svg
from services.notifier.domain.subject_chart import (
    AnalyteSeries,
    ChartPoint,
    Span,
    Standing,
    SubjectChart,
)

if TYPE_CHECKING:  # matplotlib is imported with the first figure (svg_documents)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GRADE_COLOURS = {1: "#fff3b0", 2: "#ffd08a", 3: "#ff9e8a", 4: "#e0607a", 5: "#b02a4a"}
CURRENT = "#1f5fa8"
SUPERSEDED = "#1f5fa8"
RETRACTED = "#6b7683"
THRESHOLD = "#c0182b"
FINDING = "#b35c00"
LAB_LIMIT = "#4d5966"
DAY0 = "#111111"
DOSE = "#2a8a5a"
BASELINE = "#7b2fa8"


# Every chart of the page has its plot area at the same place across the figure, so that
# the study days of the lab charts and of the timeline line up one under the other.
WIDTH = 8.0  # inches
PLOT_LEFT = 1.9
PLOT_RIGHT = 0.3
LEGEND_ROW = 0.2


def _place(figure: Figure, ax: Axes, plot_height: float, legend: bool) -> None:
    """Size the figure and put the plot area and the legend (two columns, below) in it."""
    handles, labels = ax.get_legend_handles_labels()
    rows = (len(labels) + 1) // 2 if legend else 0
    legend_height = LEGEND_ROW * rows + (0.1 if rows else 0)
    top, below = 0.4, 0.6
    height = top + plot_height + below + legend_height
    figure.set_size_inches(WIDTH, height)
    ax.set_position(
        (
            PLOT_LEFT / WIDTH,
            (below + legend_height) / height,
            (WIDTH - PLOT_LEFT - PLOT_RIGHT) / WIDTH,
            plot_height / height,
        )
    )
    if rows:
        figure.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, legend_height / height),
            ncols=2,
            fontsize=8,
            frameon=False,
        )


def chart_id(analyte: str) -> str:
    """An id-safe name for an analyte's chart: ``total-bilirubin``."""
    return "chart-" + (re.sub(r"[^a-z0-9]+", "-", analyte.casefold()).strip("-") or "analyte")


def _x_axis_label(chart: SubjectChart) -> str:
    if chart.day0 is None:
        return f"Days from the first record ({chart.origin}; Day 0 not known), site time"
    return f"Study day (days from Day 0, {chart.day0}), site time"


def _value_range(series: AnalyteSeries) -> tuple[float, float]:
    """The value axis: the results, the thresholds and the laboratory's limits, padded;
    grade bands are drawn within it, never stretch it."""
    numbers: list[Decimal] = []
    for point in series.drawable:
        numbers.append(point.value)  # type: ignore[arg-type]
        numbers += [t for t in point.thresholds if t is not None]
        numbers += [v for v in (point.reference.low, point.reference.high) if v is not None]
    if not numbers:
        return 0.0, 1.0
    low, high = float(min(numbers)), float(max(numbers))
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    bottom = low - pad
    if low >= 0:
        bottom = max(0.0, bottom)
    return bottom, high + pad


def _steps(
    points: Sequence[ChartPoint], values: Sequence[float | None], x_range: tuple[float, float]
) -> tuple[list[float], list[float]]:
    """A value that holds from one result to the next, extended to both ends of the axis."""
    xs = [x_range[0], *(p.x for p in points), x_range[1]]
    ys = [values[0], *values, values[-1]]
    return xs, [float("nan") if y is None else y for y in ys]


def _bands(
    ax: Axes,
    current: Sequence[ChartPoint],
    chart: SubjectChart,
    y_range: tuple[float, float],
    name: str,
) -> None:
    grades = sorted({r.grade for p in current for r in p.regions})
    for grade in grades:
        lowers: list[float | None] = []
        uppers: list[float | None] = []
        for point in current:
            region = next((r for r in point.regions if r.grade == grade), None)
            if region is None:
                lowers.append(None)
                uppers.append(None)
                continue
            lower = y_range[0] if region.lower is None else max(float(region.lower), y_range[0])
            upper = y_range[1] if region.upper is None else min(float(region.upper), y_range[1])
            lowers.append(lower if lower < upper else None)
            uppers.append(upper if lower < upper else None)
        if all(lower is None for lower in lowers):
            continue  # out of view for every result
        xs, low = _steps(current, lowers, chart.x_range)
        _, high = _steps(current, uppers, chart.x_range)
        mask = [lo == lo for lo in low]  # NaN where the band is not known or out of view
        fill = ax.fill_between(
            xs,
            low,
            high,
            where=mask,
            step="post",
            color=GRADE_COLOURS.get(grade, "#dddddd"),
            alpha=0.55,
            linewidth=0,
            label=f"CTCAE grade {grade} band",
        )
        fill.set_gid(f"{name}-band-grade-{grade}")


def _draw_lab(figure: Figure, series: AnalyteSeries, chart: SubjectChart) -> None:
    name = chart_id(series.analyte)
    ax = figure.add_subplot()
    y_range = _value_range(series)
    drawable = series.drawable
    current = [p for p in drawable if p.standing is Standing.CURRENT]
    _bands(ax, current, chart, y_range, name)
    basis = current or list(drawable)
    if basis:
        for attribute, text in (
            ("low", "laboratory's lower limit"),
            ("high", "laboratory's upper limit (ULN)"),
        ):
            limits = [getattr(p.reference, attribute) for p in basis]
            if any(v is not None for v in limits):
                xs, ys = _steps(
                    basis, [None if v is None else float(v) for v in limits], chart.x_range
                )
                (line,) = ax.plot(
                    xs,
                    ys,
                    drawstyle="steps-post",
                    color=LAB_LIMIT,
                    linestyle=":",
                    linewidth=1.2,
                    label=text,
                )
                line.set_gid(f"{name}-lab-{attribute}")
        for index, threshold in enumerate(series.limits.thresholds):
            values = [p.thresholds[index] for p in basis]
            if all(v is None for v in values):
                continue
            xs, ys = _steps(basis, [None if v is None else float(v) for v in values], chart.x_range)
            kind = "finding" if threshold.finding else "protocol threshold"
            (line,) = ax.plot(
                xs,
                ys,
                drawstyle="steps-post",
                color=FINDING if threshold.finding else THRESHOLD,
                linestyle="--",
                linewidth=1.6,
                label=f"{kind} {threshold.words} ({threshold.rule_id})",
            )
            line.set_gid(f"{name}-threshold-{threshold.rule_id}")
    if chart.day0 is not None:
        ax.axvline(0, color=DAY0, linestyle="-.", linewidth=1.2, label="Day 0").set_gid(
            f"{name}-day0"
        )
    if chart.doses:
        doses = ax.vlines(
            [d.start for d in chart.doses],
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors=DOSE,
            linewidth=1,
            alpha=0.7,
            label="study-drug dose",
        )
        doses.set_gid(f"{name}-doses")
    if current:
        ax.plot(
            [p.x for p in current],
            [float(p.value) for p in current if p.value is not None],
            color=CURRENT,
            linewidth=1,
            alpha=0.6,
        )
    for standing, marker, face, edge, text in (
        (Standing.CURRENT, "o", CURRENT, CURRENT, "result (current)"),
        (Standing.CORRECTED, "o", "none", SUPERSEDED, "superseded by a correction (hollow)"),
        (Standing.UPDATED, "o", "none", SUPERSEDED, "superseded by a later report (hollow)"),
        (Standing.LATE, "o", "none", SUPERSEDED, "superseded, arrived late (hollow)"),
        (Standing.RETRACTED, "X", RETRACTED, RETRACTED, "retracted (cross)"),
    ):
        chosen = [p for p in drawable if p.standing is standing]
        if not chosen:
            continue
        for comparator, shape in (("<", "v"), (">", "^"), ("", marker)):
            group = [
                p for p in chosen if (p.shown[:1] if p.shown[:1] in "<>" else "") == comparator
            ]
            if group:
                marks = ax.scatter(
                    [p.x for p in group],
                    [float(p.value) for p in group if p.value is not None],
                    marker=shape,
                    s=36,
                    facecolors=face,
                    edgecolors=edge,
                    linewidths=1.4,
                    zorder=3,
                    label=text if not comparator else f"{text}, censored ({comparator} value)",
                )
                marks.set_gid(f"{name}-{standing.name.lower()}{'-censored' if comparator else ''}")
    for point in drawable:
        if point.shown[:1] in "<>":
            ax.annotate(
                point.shown,
                (point.x, float(point.value or 0)),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
    baseline = series.baseline
    if baseline is not None and baseline.value is not None:
        ring = ax.scatter(
            [baseline.x],
            [float(baseline.value)],
            marker="s",
            s=150,
            facecolors="none",
            edgecolors=BASELINE,
            linewidths=1.6,
            zorder=4,
            label="baseline (last value on or before Day 0)",
        )
        ring.set_gid(f"{name}-baseline")
    ax.set_xlim(*chart.x_range)
    ax.set_ylim(*y_range)
    ax.set_title(series.analyte)
    ax.set_xlabel(_x_axis_label(chart))
    ax.set_ylabel(f"{series.analyte} ({series.unit or 'no unit'})")
    ax.grid(True, color="#e4e7eb", linewidth=0.6)
    _place(figure, ax, 3.0, legend=True)


def lab_chart_svg(series: AnalyteSeries, chart: SubjectChart) -> str:
    """One analyte's chart as inline SVG."""
    return render_svg(
        lambda figure: _draw_lab(figure, series, chart),
        size=(WIDTH, 5.0),
        label=f"{series.analyte} over study time; the table below holds the same data",
        prefix=chart_id(series.analyte),
        constrained=False,
    )


def _short(label: str, limit: int = 30) -> str:
    """A row label that fits left of the plot area (the table has it in full)."""
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _draw_timeline(figure: Figure, chart: SubjectChart) -> None:
    ax = figure.add_subplot()
    rows: list[tuple[str, Sequence[Span], str]] = []
    for drug in sorted({d.label for d in chart.doses}):
        rows.append((f"Study drug: {drug}", [d for d in chart.doses if d.label == drug], DOSE))
    rows += [(f"Medication: {m.label}", [m], "#4d7fb8") for m in chart.medications]
    rows += [
        (f"AE: {a.label}", [a], THRESHOLD if a.serious else FINDING) for a in chart.adverse_events
    ]
    right = chart.x_range[1]
    for index, (_, spans, colour) in enumerate(rows):
        y = len(rows) - 1 - index
        for span in spans:
            if span in chart.doses:
                ax.plot(
                    [span.start], [y], marker="|", markersize=14, markeredgewidth=2, color=colour
                )
            else:
                end = span.end if span.end is not None else right
                ax.barh(
                    y,
                    max(end - span.start, 0.3),
                    left=span.start,
                    height=0.5,
                    color=colour,
                    alpha=0.8,
                )
    ax.set_yticks(range(len(rows)), [_short(label) for label, _, _ in reversed(rows)], fontsize=8)
    if chart.day0 is not None:
        ax.axvline(0, color=DAY0, linestyle="-.", linewidth=1.2).set_gid("timeline-day0")
    ax.set_xlim(*chart.x_range)
    ax.set_ylim(-0.75, len(rows) - 0.25)
    ax.set_xlabel(_x_axis_label(chart))
    ax.set_title("Study drug, medications and adverse events")
    ax.grid(True, axis="x", color="#e4e7eb", linewidth=0.6)
    _place(figure, ax, 0.4 + 0.32 * len(rows), legend=False)


def timeline_svg(chart: SubjectChart) -> str | None:
    """The doses, medications and adverse events on the study-day axis (None: none)."""
    count = len({d.label for d in chart.doses}) + len(chart.medications) + len(chart.adverse_events)
    if not count:
        return None
    return render_svg(
        lambda figure: _draw_timeline(figure, chart),
        size=(WIDTH, 2.0),
        label=(
            "Study drug doses, medications and adverse events over study time;"
            " the tables below hold the same data"
        ),
        prefix="timeline",
        constrained=False,
    )
