"""Matplotlib figures as SVG text to put inline in a workspace page.

Drawn with the Agg-family SVG backend into a string (no file, no network), text kept as
text (``svg.fonttype: none``) and ids salted with a constant (``svg.hashsalt``) so one
input gives one output byte for byte; no date in the metadata. The workspace's content
security policy refuses inline styles, so every ``style`` attribute matplotlib writes
becomes the presentation attributes it stands for, and its ``<style>`` element goes.
Matplotlib is not thread-safe: one figure is drawn at a time. It is imported with the first
figure, not with the service: it costs most of a second of CPU at every start of a process
that may never draw one (every notifier, every test that starts one).
"""

from __future__ import annotations

import functools
import io
import re
import threading
from collections.abc import Callable
from html import escape
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "vigil-workspace",
    "font.family": ["DejaVu Sans"],
    "font.size": 10,
    "axes.titlesize": 11,
    "path.simplify": True,
}
_LOCK = threading.Lock()
_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_STYLE_ELEMENT = re.compile(r"\s*<style[^>]*>.*?</style>", re.DOTALL)
_STYLE_ATTRIBUTE = re.compile(r'style="([^"]*)"')
_ROOT_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')
_DECLARATION = re.compile(r"^[a-z-]+$")
_ID = re.compile(r'(\sid="|url\(#|xlink:href="#)([^")]+)')


def _presentation_attributes(match: re.Match[str]) -> str:
    """``style="fill: #fff; stroke-width: 0.8"`` as ``fill="#fff" stroke-width="0.8"``."""
    attributes = []
    for declaration in match.group(1).split(";"):
        name, _, value = declaration.partition(":")
        name, value = name.strip(), value.strip()
        if name and value and _DECLARATION.match(name):
            attributes.append(f'{name}="{escape(value, quote=True)}"')
    return " ".join(attributes)


def _own_ids(svg: str, prefix: str) -> str:
    """Every id of the figure (and each reference to one) starting with ``prefix``:
    matplotlib numbers its parts alike in every figure (``axes_1``, ``legend_1``), and
    one page holds several figures, whose ids must not repeat."""

    def owned(match: re.Match[str]) -> str:
        name = match.group(2)
        return match.group(1) + (name if name.startswith(f"{prefix}-") else f"{prefix}-{name}")

    return _ID.sub(owned, svg)


def csp_safe(svg: str, label: str, prefix: str = "chart") -> str:
    """Matplotlib's SVG made fit to inline under the workspace's policy: no prologue, no
    metadata, no style element or attribute; sized by its viewBox (the page's CSS scales
    it), named for assistive technology by ``label``, its ids its own (``prefix``)."""
    svg = _PROLOGUE.sub("", svg, count=1)
    svg = _own_ids(svg, prefix)
    svg = _METADATA.sub("", svg)
    svg = _STYLE_ELEMENT.sub("", svg)
    svg = _STYLE_ATTRIBUTE.sub(_presentation_attributes, svg)
    return _ROOT_SIZE.sub(
        rf'<svg\1 class="chart" role="img" aria-label="{escape(label, quote=True)}" '
        'stroke-linejoin="round" stroke-linecap="butt"',
        svg,
        count=1,
    )


@functools.cache
def _matplotlib() -> tuple[ModuleType, type[Figure]]:
    """Matplotlib on its Agg backend (no display), imported once, on the first figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return matplotlib, Figure


def render_svg(
    draw: Callable[[Figure], None],
    *,
    size: tuple[float, float],
    label: str,
    prefix: str,
    constrained: bool = True,
) -> str:
    """A figure of ``size`` inches drawn by ``draw``, as inline SVG text whose ids all
    start with ``prefix``; laid out by matplotlib (``constrained``), or by ``draw``
    itself (charts that must line up)."""
    matplotlib, figure_class = _matplotlib()
    with _LOCK, matplotlib.rc_context(RC):
        figure = figure_class(figsize=size, layout="constrained" if constrained else None)
        draw(figure)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return csp_safe(buffer.getvalue(), label, prefix)
