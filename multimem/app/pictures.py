"""Pictures the pages send as SVG images beside their grids (no chart library in the browser, so the first paint
never waits for plotly's bundle): axes with round ticks, the colour scale of the interactive charts, and an SVG
shown as an image. Hand-written on purpose: a few primitives, where a plotting library would add its import (or
its bundle) to the first view; the interactive plotly charts remain one click away."""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from multimem.app import ui
from multimem.app.region import Region


# RdYlBu reversed (ColorBrewer; plotly's "RdYlBu_r", the interactive chart's scale): −half blue to +half red
SCALE = ["#313695", "#4575b4", "#74add1", "#abd9e9", "#e0f3f8", "#ffffbf", "#fee090", "#fdae61", "#f46d43", "#d73027",
         "#a50026"]


class Later:
    """Figures for the report, built only when it is downloaded (report_button iterates them on the click)."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return iter(self.make())


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × a power of ten) within [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_text(value: float) -> str:
    return np.format_float_positional(value, precision=6, trim="-").replace("-", "−")


def span(*values, pad: float = 0.04) -> tuple[float, float]:
    """The finite range of the values, widened by `pad` of it on each side."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in values])
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
    margin = (hi - lo) * pad or 0.5
    return lo - margin, hi + margin


@dataclass
class Axes:
    """A plot area in an SVG picture: maps values to pixels; `frame` draws grid lines, ticks and titles."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 420
    height: int = 380
    left: int = 62
    right: int = 16
    top: int = 12
    bottom: int = 46

    def px(self, v):
        inner = self.width - self.left - self.right
        return self.left + (np.asarray(v, float) - self.x0) / (self.x1 - self.x0) * inner

    def py(self, v):
        inner = self.height - self.top - self.bottom
        return self.top + (self.y1 - np.asarray(v, float)) / (self.y1 - self.y0) * inner

    def open(self, css: str) -> str:
        """The <svg> tag; its text and lines take the colour of the page's text (light or dark theme)."""
        colour = "#fafafa" if ui.dark_theme() else "#31333f"
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {self.width} {self.height}" '
                f'color="{colour}" font-size="12" font-family="Source Sans Pro, sans-serif">'
                f'<defs><clipPath id="{css}-area"><rect x="{self.left}" y="{self.top}" '
                f'width="{self.width - self.left - self.right}" height="{self.height - self.top - self.bottom}"/>'
                "</clipPath></defs>")

    def frame(self, x_title: str, y_title: str) -> str:
        bottom, right = self.height - self.bottom, self.width - self.right
        out = []
        for t in ticks(self.x0, self.x1):
            x = float(self.px(t))
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{bottom}" stroke="currentColor" '
                       f'stroke-opacity="0.12"/><text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" '
                       f'fill="currentColor" fill-opacity="0.75">{tick_text(t)}</text>')
        for t in ticks(self.y0, self.y1):
            y = float(self.py(t))
            out.append(f'<line x1="{self.left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" '
                       f'stroke-opacity="0.12"/><text x="{self.left - 5}" y="{y + 4:.1f}" text-anchor="end" '
                       f'fill="currentColor" fill-opacity="0.75">{tick_text(t)}</text>')
        out.append(f'<rect x="{self.left}" y="{self.top}" width="{right - self.left}" height="{bottom - self.top}" '
                   'fill="none" stroke="currentColor" stroke-opacity="0.3"/>'
                   f'<text x="{(self.left + right) / 2}" y="{self.height - 8}" text-anchor="middle" '
                   f'fill="currentColor">{html.escape(x_title)}</text><text transform="translate(14 '
                   f'{(self.top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="currentColor">'
                   f"{html.escape(y_title)}</text>")
        return "".join(out)


def show_picture(svg: str, css: str, label: str) -> None:
    """An SVG as an image (a data: URI in the page): the browser decodes it apart from the page's own elements, so
    3,000 points cost the first paint next to nothing (as inline SVG through Markdown they cost it about half a
    second of a cold browser's time)."""
    data = base64.b64encode(svg.encode()).decode("ascii")
    st.html(f'<img class="{css}" src="data:image/svg+xml;base64,{data}" alt="{html.escape(label)}" '
            'style="width:100%;height:auto;display:block">')


def colours(values: np.ndarray, half: float) -> list[str]:
    """Hex colours of `values` on SCALE, from −half to +half."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in SCALE], float)
    stops = np.linspace(0, 1, len(SCALE))
    at = np.clip(np.asarray(values, float) / (2 * half) + 0.5, 0, 1) if half > 0 else np.full(len(values), 0.5)
    at = np.nan_to_num(at, nan=0.5)
    channels = np.stack([np.interp(at, stops, rgb[:, i]) for i in range(3)], axis=1).round().astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in channels]


def scatter_picture(points: pd.DataFrame, x: str, y: str, half: float, columns: dict[str, str],
                    region: Region | None, injected: bool) -> str:
    """The scatter as an SVG: the same points, colours, rings and selection as the interactive chart."""
    xs, ys = points[x].to_numpy(float), points[y].to_numpy(float)
    (x0, x1), (y0, y1) = span(xs, *([region.xs] if region else [])), span(ys, *([region.ys] if region else []))
    ax = Axes(x0, x1, y0, y1, right=78)  # room for the colour bar
    h = ax.height - ax.top - ax.bottom
    out = [ax.open("mm-scatter"),
           '<defs><linearGradient id="mm-scale" x1="0" y1="1" x2="0" y2="0">'
           + "".join(f'<stop offset="{i / (len(SCALE) - 1):.2f}" stop-color="{c}"/>' for i, c in enumerate(SCALE))
           + "</linearGradient></defs>", ax.frame(columns[x], columns[y]), '<g clip-path="url(#mm-scatter-area)">']
    rings = points["injected"].fillna(False).astype(bool).to_numpy() if injected else np.zeros(len(points), bool)
    fills = colours(points["multimem"].to_numpy(float), half)
    for cx, cy, fill, ring in zip(ax.px(xs), ax.py(ys), fills, rings):
        if math.isfinite(cx) and math.isfinite(cy):
            edge = ' r="4" stroke="#000" stroke-width="1.2"' if ring else ' r="3"'
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" fill="{fill}"{edge}/>')
    if region is not None:  # the selection, dashed, as on the interactive chart
        style = 'fill="none" stroke="#888" stroke-width="1.5" stroke-dasharray="5 4"'
        if region.kind == "box":
            (ax0, ax1), (ay0, ay1) = sorted(ax.px(region.xs)), sorted(ax.py(region.ys))
            out.append(f'<rect x="{ax0:.1f}" y="{ay0:.1f}" width="{ax1 - ax0:.1f}" height="{ay1 - ay0:.1f}" '
                       f"{style}/>")
        else:
            corners = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(ax.px(region.xs), ax.py(region.ys)))
            out.append(f'<polygon points="{corners}" {style}/>')
    out.append("</g>")
    bar = ax.width - ax.right + 16  # the colour bar: −half (blue) to +half (red), 0 in the middle
    out.append(f'<rect x="{bar}" y="{ax.top}" width="10" height="{h}" fill="url(#mm-scale)"/>'
               f'<text x="{bar}" y="{ax.top + h + 14}" fill="currentColor" fill-opacity="0.75">score</text>')
    for value, at in ((half, ax.top + 4), (0.0, ax.top + h / 2 + 4), (-half, ax.top + h)):
        out.append(f'<text x="{bar + 14}" y="{at:.1f}" fill="currentColor" fill-opacity="0.75">'
                   f'{tick_text(float(f"{value:.3g}"))}</text>')
    out.append("</svg>")
    return "".join(out)


def bars_picture(bars: list, x_title: str) -> str:
    """The overlaid histograms as an SVG, with a legend."""
    if not bars:
        return ""
    lo = min(float(x[0] - w / 2) for _, x, _, w, _ in bars)
    hi = max(float(x[-1] + w / 2) for _, x, _, w, _ in bars)
    top = max(int(c.max()) for _, _, c, _, _ in bars) or 1
    ax = Axes(lo, hi, 0, top * 1.05, width=960, height=300, left=70, top=28)
    out = [ax.open("mm-bars"), ax.frame(x_title, "pairs")]
    base = float(ax.py(0))
    for i, (label, x, counts, width, colour) in enumerate(bars):
        out.append(f'<rect x="{ax.left + 320 * i}" y="6" width="12" height="12" fill="{colour}" fill-opacity="0.55"/>'
                   f'<text x="{ax.left + 320 * i + 16}" y="16" fill="currentColor">{html.escape(label[:48])}</text>')
        for centre, count in zip(x, counts):
            if count:
                x0, x1, y = float(ax.px(centre - width / 2)), float(ax.px(centre + width / 2)), float(ax.py(count))
                out.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{base - y:.1f}" '
                           f'fill="{colour}" fill-opacity="0.55"/>')
    out.append("</svg>")
    return "".join(out)
