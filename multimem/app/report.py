"""A view of the dashboard as one self-contained HTML file: opens offline, in any browser, years later.

    html = report.view_report(title, run, manifest, cards=cards, figures=[fig], link=url, notes=[...])

Everything is inside the file: thumbnails are data: URIs (multimem.app.cards.thumbnail_uri), figures carry
plotly.js inline, the run's settings are a table, and the link the view came from is shown as text (not a live
link: the report makes no network request). Any page can call it: Browse passes its current page of pairs and its
scatter, Overview or Compare their figures and no cards.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from multimem.app.cards import Card, grid_html

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1200px;color:#222;
  padding:0 16px}
h1{margin-bottom:4px} .meta{color:#666;font-size:.9rem} code{background:#f4f4f4;padding:1px 4px;border-radius:3px;
  overflow-wrap:anywhere}
table.settings{border-collapse:collapse;font-size:.85rem;margin:8px 0 20px}
table.settings td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
.fig{margin:12px 0 24px}
"""


def _flat(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested settings dict as (dotted key, value) rows."""
    if isinstance(value, Mapping):
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    return [(prefix, json.dumps(value, default=str) if not isinstance(value, str) else value)]


def settings_rows(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run's settings worth a reviewer's eye: its config, split sizes, data source and lineage."""
    picked = {"config": manifest.get("config"), "split": (manifest.get("split") or {}).get("sizes"),
              "dataset": {k: (manifest.get("dataset") or {}).get(k) for k in ("source", "n_samples", "n_injected")},
              "lineage": manifest.get("lineage"), "status": manifest.get("status")}
    return [(k, v) for k, v in _flat({k: v for k, v in picked.items() if v is not None})]


def figure_html(fig, first: bool) -> str:
    """A plotly figure as a div; the first one carries plotly.js inline (no CDN), the others reuse it."""
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                       config={"displaylogo": False, "responsive": True})


def view_report(title: str, run: str, manifest: Mapping[str, Any], cards: Sequence[Card] = (),
                figures: Sequence[Any] = (), link: str = "", notes: Sequence[str] = ()) -> str:
    """One self-contained HTML document of a view (see the module's docstring)."""
    e = html.escape
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{e(title)} · {e(run)}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<div class='meta'>Run <b>{e(run)}</b> · saved {e(when)} from MultiMem Explorer</div>"]
    if link:
        parts.append(f"<p class='meta'>This view in the dashboard: <code>{e(link)}</code></p>")
    parts += [f"<p>{e(n)}</p>" for n in notes]
    for i, fig in enumerate(figures):
        parts.append(f"<div class='fig'>{figure_html(fig, i == 0)}</div>")
    if cards:
        offline = [Card(**{**c.__dict__, "href": None}) for c in cards]  # no links out of the file
        parts.append(grid_html(offline))
    rows = settings_rows(manifest)
    if rows:
        parts.append("<h2>Run settings</h2><table class='settings'>"
                     + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows) + "</table>")
    attribution = (manifest.get("dataset") or {}).get("attribution")
    if attribution:
        parts.append(f"<p class='meta'>{e(str(attribution))}</p>")
    parts.append("</body></html>")
    return "".join(parts)
