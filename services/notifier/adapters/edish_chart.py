"""The eDISH plot drawn with matplotlib: log-log, the 3 x ULN and 2 x ULN lines, the four
quadrants labelled as FDA eDISH labels them, each subject's point a link to its page
(``set_urls``), Hy's law cases highlighted.

Ids (``gid``): ``edish-line-3xuln``, ``edish-line-2xuln``, ``edish-points``,
``edish-hys-law``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING

from services.notifier.adapters.svg_documents import render_svg
from services.notifier.domain.edish import (
    BILIRUBIN_LINE,
    HYPERBILIRUBINEMIA,
    NORMAL,
    POTENTIAL_HYS_LAW,
    TEMPLES_COROLLARY,
    TRANSAMINASE_LINE,
    EdishPoint,
)

if TYPE_CHECKING:  # matplotlib is imported with the first figure (svg_documents)
    from matplotlib.figure import Figure

#: a multiple of zero cannot sit on a log axis: it is drawn at this floor (the table says 0)
FLOOR = 0.05


HYS_LAW_LABEL = "Hy's law case (concurrent peaks in the quadrant, or a signal)"


def _draw(figure: Figure, points: Sequence[EdishPoint], link: Callable[[EdishPoint], str]) -> None:
    ax = figure.add_subplot()
    xs = [max(float(p.transaminase.multiple), FLOOR) for p in points]
    ys = [max(float(p.bilirubin.multiple), FLOOR) for p in points]
    ax.set_xscale("log")
    ax.set_yscale("log")
    x_range = (min([0.1, *xs]) * 0.8, max([100.0, *xs]) * 1.25)
    y_range = (min([0.1, *ys]) * 0.8, max([20.0, *ys]) * 1.25)
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    vertical = ax.axvline(
        float(TRANSAMINASE_LINE),
        color="#c0182b",
        linestyle="--",
        linewidth=1.4,
        label="ALT or AST 3 x ULN",
    )
    vertical.set_gid("edish-line-3xuln")
    horizontal = ax.axhline(
        float(BILIRUBIN_LINE),
        color="#b35c00",
        linestyle="--",
        linewidth=1.4,
        label="total bilirubin 2 x ULN",
    )
    horizontal.set_gid("edish-line-2xuln")
    corners = (
        (POTENTIAL_HYS_LAW, 0.98, 0.97, "right", "top"),
        (HYPERBILIRUBINEMIA, 0.02, 0.97, "left", "top"),
        (TEMPLES_COROLLARY, 0.98, 0.03, "right", "bottom"),
        (NORMAL, 0.02, 0.03, "left", "bottom"),
    )
    for text, x, y, horizontal_alignment, vertical_alignment in corners:
        ax.text(
            x,
            y,
            text,
            transform=ax.transAxes,
            ha=horizontal_alignment,
            va=vertical_alignment,
            fontsize=10,
            fontweight="bold",
            color="#2b3440",
        )
    for highlighted, gid, marker, colour, size, label in (
        (False, "edish-points", "o", "#1f5fa8", 40, "subject (peak values)"),
        (
            True,
            "edish-hys-law",
            "D",
            "#c0182b",
            80,
            "Hy's law case (concurrent peaks in the quadrant, or a signal)",
        ),
    ):
        chosen = [i for i, p in enumerate(points) if p.highlighted == highlighted]
        if not chosen:
            continue
        marks = ax.scatter(
            [xs[i] for i in chosen],
            [ys[i] for i in chosen],
            marker=marker,
            s=size,
            c=colour,
            edgecolors="#111111",
            linewidths=0.8,
            zorder=3,
            label=label,
        )
        marks.set_urls([link(points[i]) for i in chosen])
        marks.set_gid(gid)
        if highlighted:
            for i in chosen:
                ax.annotate(
                    points[i].subject_id,
                    (xs[i], ys[i]),
                    textcoords="offset points",
                    xytext=(6, 4),
                    fontsize=8,
                )
    from matplotlib.ticker import FuncFormatter  # loaded by render_svg before draw

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.set_xlabel("Peak ALT or AST (whichever multiple is higher), x ULN, log scale")
    ax.set_ylabel("Peak total bilirubin, x ULN, log scale")
    ax.grid(True, which="major", color="#e4e7eb", linewidth=0.6)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)


def _named_links(svg: str, points: Sequence[EdishPoint], link: Callable[[EdishPoint], str]) -> str:
    """Each point's link named for assistive technology by its subject and peaks (a link
    in an SVG has no text of its own), its target also in SVG 2's plain ``href``, which is
    what makes it a link to assistive technology and to axe. matplotlib opens every link
    in a new tab (``target="_blank"``); a subject's page opens where the person is, as
    every other link of the workspace does."""
    for point in points:
        href = escape(link(point), quote=True)
        name = (
            f"Subject {point.subject_id}: ALT or AST {point.transaminase.multiple:g} x ULN,"
            f" bilirubin {point.bilirubin.multiple:g} x ULN"
        )
        svg = svg.replace(
            f'<a xlink:href="{href}"',
            f'<a href="{href}" xlink:href="{href}" aria-label="{escape(name)}"',
        )
    return svg.replace(' target="_blank"', "")


def edish_svg(points: Sequence[EdishPoint], link: Callable[[EdishPoint], str]) -> str:
    """The eDISH plot as inline SVG; ``link`` gives each point's subject page. A group, not
    an image: an image's content is hidden from assistive technology, and its points are
    links a person reaches with the keyboard."""
    svg = render_svg(
        lambda figure: _draw(figure, points, link),
        size=(7.5, 6.5),
        label=(
            "eDISH plot: peak ALT or AST against peak total bilirubin, multiples of ULN;"
            " the table below holds the same points"
        ),
        prefix="edish",
    )
    return _named_links(svg.replace('role="img"', 'role="group"', 1), points, link)
