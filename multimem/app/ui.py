"""Streamlit pieces every page uses: the current run, the view in the URL, the share link, the image grid.

The URL is the source of truth for a view. Each page parses st.query_params into its widgets when the URL changed
from outside (a link opened, a page switch with parameters) and writes its widgets back into st.query_params at the
end of every run, so the address bar always holds the view and a copied link restores it.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import streamlit as st

from multimem.app import cache, views
from multimem.app.cards import GRID_CSS, Card, card_html, grid_html
from multimem.store.manifest import Manifest

Params = dict[str, "str | list[str]"]


def through_app() -> None:
    """Pages run inside app.py. Streamlit runs a pages/ file on its own when its old pages/-folder mode is still
    on (the first request after the server starts, if it is a deep link; every AppTest run): switch that mode
    off, as st.navigation in app.py would have, and run again through app.py so the run picker applies."""
    if not st.session_state.get("_via_app"):
        from streamlit.runtime.pages_manager import PagesManager

        PagesManager.uses_pages_directory = False
        st.rerun()


def query() -> dict[str, list[str]]:
    """Every query parameter with all its values (repeated keys kept)."""
    return {key: st.query_params.get_all(key) for key in st.query_params.keys()}


def page_query(page: str) -> dict[str, list[str]]:
    """The URL's view for this page; on entering the page from the menu (only page/run in the URL) the view this
    page last showed in this session, so navigating away and back keeps the filters."""
    q = query()
    last = st.session_state.get(f"_url_{page}")
    if last and set(q) <= {"page", "run"} and q.get("page", [page]) == [page]:
        return {**last, **{k: v for k, v in q.items() if k == "run"}}
    return q


def current_run() -> str | None:
    """The run chosen in the sidebar picker (app.py), shared by all pages."""
    return st.session_state.get("run")


def _normal(params: Mapping[str, Any]) -> dict[str, list[str]]:
    return {k: [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)] for k, v in params.items()}


def url_changed(page: str) -> bool:
    """True when the URL differs from what this page last wrote: a link was opened or the page was entered."""
    return _normal(query()) != st.session_state.get(f"_url_{page}")


def seed(page: str, values: Mapping[str, Any]) -> None:
    """Put the URL's view into the page's widgets (by key) when the URL changed or a widget has no state yet."""
    fresh = url_changed(page)
    for key, value in values.items():
        if fresh or key not in st.session_state:
            st.session_state[key] = value


def view_params(page: str, params: Mapping[str, Any], run: str | None = None) -> Params:
    out: Params = {"page": page}
    run = run if run is not None else current_run()
    if run:
        out["run"] = run
    out.update({k: v for k, v in params.items() if v not in (None, "", [])})
    return out


def write_view(page: str, params: Mapping[str, Any]) -> Params:
    """Put the page's view in the address bar (only when it changed) and remember it."""
    full = view_params(page, params)
    if _normal(full) != _normal(query()):
        st.query_params.from_dict(full)
    st.session_state[f"_url_{page}"] = _normal(full)
    st.session_state["_url_run"] = full.get("run")
    return full


def share(page: str, params: Mapping[str, Any]) -> None:
    """The view as a link with a copy button (st.code has one), absolute when the browser told us the URL."""
    base = _base_url()
    with st.popover(":material/link: Copy link", help="A link that opens exactly this view"):
        st.code(views.link(page, view_params(page, params), base), language=None, wrap_lines=True)
        st.caption("Links hold run names and sample ids only. Anyone with access to this dashboard and the same "
                   "runs folder sees the same view.")


def _base_url() -> str:
    url = st.context.url or ""
    if not url:
        return ""
    # st.context.url is the page's address (…/browse); links are built from the app root
    for page in views.PAGES:
        if url.rstrip("/").endswith("/" + page):
            return url.rstrip("/")[: -len(page) - 1]
    return url.rstrip("/")


def report_button(where, page: str, params: Mapping[str, Any], title: str, run: str, figures: Sequence[Any] = (),
                  cards: Sequence[Card] = (), notes: Sequence[str] = (), file_name: str = "") -> None:
    """"Download report": the view as one self-contained HTML file (multimem.app.report), built only when clicked."""
    from multimem.app import report

    link = views.link(page, view_params(page, params), _base_url())
    where.download_button(
        "Download report", lambda: report.view_report(title, run, cache.manifest(run), cards=list(cards),
                                                      figures=list(figures), link=link, notes=list(notes)),
        file_name=file_name or f"{run}-{page}.html", mime="text/html", key=f"{page}_report", on_click="ignore",
        icon=":material/description:", help="One self-contained HTML file of this view: opens offline")


def show_problems(problems: Sequence[str]) -> None:
    """Friendly notes for what a link asked for but could not be shown (no tracebacks). The notes are Markdown:
    whoever builds one puts the link's values in through views.plain, so they show as typed, never as links."""
    for p in dict.fromkeys(problems):
        st.warning(p[0].upper() + p[1:] + ".", icon=":material/link_off:")


def link_problems() -> list[str]:
    return list(st.session_state.get("_link_problems", []))


def page_run(title: str | None = None) -> str:
    """Every run page's start: the app shell, the link's problems, and the current run; stops with a hint if none."""
    through_app()
    show_problems(link_problems())
    name = current_run()
    if not name:
        if title:
            st.title(title)
        no_runs()
        st.stop()
    return name


def no_runs() -> None:
    root = cache.runs_root()
    st.info(
        f"No scored runs in `{root}` yet. Make one:\n\n"
        "- `make run` trains and scores the Twemoji demo, then opens this dashboard;\n"
        "- or `python -m multimem demo --fast` (a one-minute run) and reload this page;\n"
        "- or start a run from the **Runs** page.",
        icon=":material/info:",
    )


def attribution(manifest: Mapping[str, Any]) -> None:
    """The dataset's licence line, as its source recorded it in the run (the embedded Twemoji set has one)."""
    text = Manifest(manifest).dataset.get("attribution")
    if text:
        st.caption(str(text))


def dark_theme() -> bool:
    """True when the viewer's page is dark (their Streamlit theme, which follows their system unless they chose)."""
    return getattr(getattr(st.context, "theme", None), "type", None) == "dark"


def grid(cards: Sequence[Card]) -> None:
    if cards:
        st.html(grid_html(cards, dark=dark_theme()))


CARD_LINK_CSS = """<style>
div[class*="st-key-mmcard_"]{position:relative;border:1px solid #ddd;border-radius:8px;padding:8px 6px 4px;gap:2px}
div[class*="st-key-mmcard_"]:hover,div[class*="st-key-mmcard_"]:focus-within{border-color:#888;
  box-shadow:0 1px 4px rgba(0,0,0,.15)}
div[class*="st-key-mmcard_"] .mm-card{border:none;padding:0;background:transparent}
div[class*="st-key-mmcard_"] [data-testid="stPageLink"] a::after{content:"";position:absolute;inset:0;z-index:1}
div[class*="st-key-mmcard_"] [data-testid="stCheckbox"]{position:relative;z-index:2}
</style>"""


def link_grid(cards: Sequence[Card], ids: Sequence[str], run: str, per_row: int = 4,
              listed: set[str] | None = None, tag_list: str = "", scroll: int = 0,
              params: Mapping[str, Any] | None = None) -> None:
    """Cards that open their Sample page inside the app (st.page_link: no page load, the session and its state
    stay; the link is a keyboard stop, Enter opens it, and the whole card is its click target). With `tag_list`,
    each card has a checkbox that tags its pair into that list. `scroll` > 0 scrolls the grid into view (after
    paging, so the new page's first cards show instead of the page's bottom). `params` ride along in each Sample
    link (Browse's order: views.order_params), so that a link opened anywhere steps through the same pairs."""
    from multimem.app import curation

    st.html(GRID_CSS + CARD_LINK_CSS)
    anchor = st.container(key="mmgrid_top")
    if scroll:
        with anchor:
            st.html(f"<script>/* {scroll} */ (function(){{const el=document.querySelector('.st-key-mmgrid_top');"
                    "if(el){el.scrollIntoView({block:'start',behavior:'instant'});}})();</script>",
                    unsafe_allow_javascript=True)
    dark = dark_theme()
    for start in range(0, len(cards), per_row):
        cols = st.columns(per_row)
        for j, (col, card, sid) in enumerate(zip(cols, cards[start:start + per_row], ids[start:start + per_row])):
            with col.container(key=f"mmcard_{start + j}"):
                html = card_html(Card(**{**card.__dict__, "href": None}))
                st.html(f'<div class="mm-dark">{html}</div>' if dark else html)
                st.page_link("pages/sample.py", label="Open pair", icon=":material/open_in_full:",
                             query_params={"page": "sample", "run": run, "id": sid, **(params or {})},
                             help=views.plain(card.caption, 200))
                if tag_list:
                    curation.tag_toggle(run, tag_list, sid, sid in (listed or set()), key=f"tag_{sid}")


def sample_card(run: str, row: Mapping[str, Any], lines: list[str] | None = None,
                score: float | None = None) -> Card:
    """A grid tile for one sample, linking to its Sample page."""
    injected = bool(row.get("injected")) if row.get("injected") is not None else False
    return Card(
        image=cache.thumbnail(str(row["image_ref"])),
        caption=str(row["caption"]),
        href=views.link("sample", {"run": run, "id": str(row["id"])}),
        score=score,
        lines=lines or [],
        badge="injected mis-caption" if injected else None,
    )


def fmt(value: Any, digits: int = 3, signed: bool = False) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if v != v:
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
