"""Browse: the most (or least) memorized pairs as an image grid, with filters, sorting, paging and a scatter.

The cards are sent first, then the filters above them, the scatter and the tools. The scatter is a picture (an SVG
image: points, colours, injected rings, the selection) until the interactive chart is asked for (`chart=interactive`
in the link: plotly, box and lasso selection, zoom, each point's caption on hover). Plotly's 4.7 MB of JavaScript
held back the first paint of the whole page by seconds in a cold browser (docs/benchmarks.md, "Dashboard")."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from multimem.app import cache, curation, explain, select, ui, views
from multimem.app.columns import (INJECTED, PER_PAGE, SCORE_FILTERS, SCORED_SUBSETS, SUBSET_SHORT, colour_range,
                                  columns_for, norm_factor, sorts_for)
from multimem.app.region import Region
from multimem.app.views import BrowseView, plain
from multimem.app.pictures import Later, scatter_picture, show_picture
from multimem.store import lists, review_mode

INTERACTIVE = "interactive"  # chart=interactive: the plotly chart instead of the picture


@dataclass
class Page:
    """What the sections of this page share: the run, its table and the view being built."""

    name: str
    table: pd.DataFrame
    injected: bool
    labels: list[str]
    columns: dict[str, str]
    sorts: dict[str, str]
    score_filters: list[str]
    lists: list[str]
    from_link: bool
    wanted_page: int
    filters: BrowseView = field(default_factory=BrowseView)
    text: pd.Series | None = None
    listed: list[str] = field(default_factory=list)
    view: BrowseView = field(default_factory=BrowseView)
    rows: pd.DataFrame | None = None
    page_rows: pd.DataFrame | None = None
    pages: int = 1
    cards: list = field(default_factory=list)
    figures: object = ()  # the scatter for the report (built when the report is downloaded)


# ---- callbacks

def go_page(delta: int) -> None:
    st.session_state["b_page"] = max(1, st.session_state["b_page"] + delta)
    st.session_state["_b_scroll"] = st.session_state.get("_b_scroll", 0) + 1


def paged() -> None:
    st.session_state["_b_scroll"] = st.session_state.get("_b_scroll", 0) + 1


def new_list() -> None:
    text = st.session_state.get("b_new_list", "").strip()
    try:
        st.session_state["b_list"] = lists.check_list_name(text)
        st.session_state["b_new_list"] = ""
    except lists.ListError as exc:
        st.session_state["_tag_error"] = str(exc)


def clear_selection() -> None:
    st.session_state["b_sel"] = st.session_state["_b_event"] = None
    st.session_state["b_chart"] = st.session_state.get("b_chart", 0) + 1  # a fresh chart drops its selection


# ---- the page's sections, in the order they run

def view_from_link() -> Page:
    """The run, and the view the URL asks for put into the widgets (when the URL changed from outside)."""
    name = ui.page_run()
    table = cache.scores(name)
    labels = sorted(table["label"].dropna().astype(str).unique()) if "label" in table else []
    columns = columns_for(table)  # the calibrated scores only when the table has them
    sorts = sorts_for(table)
    score_filters = [c for c in SCORE_FILTERS if c in columns]
    query = ui.page_query("browse")
    view, problems = views.parse_browse(query, labels, columns)
    chart = (query.get("chart") or [""])[-1]
    if chart not in ("", INTERACTIVE):
        problems.append(f"'chart={plain(chart)}' is not '{INTERACTIVE}'; showing the scatter as a picture")
    run_lists = curation.names(name)
    if view.list and view.list not in run_lists and ui.url_changed("browse"):
        problems.append(f"run '{plain(name)}' has no list '{plain(view.list)}' yet; tagging a pair creates it")
    page = Page(name=name, table=table, injected=cache.has_injected(name), labels=labels, columns=columns,
                sorts=sorts, score_filters=score_filters, lists=run_lists,
                from_link=ui.url_changed("browse"),  # the view comes from the URL, not from a widget change
                wanted_page=view.page)
    ui.seed("browse", {
        "b_subsets": list(view.subsets), "b_range": (view.lo, view.hi), "b_labels": list(view.labels),
        "b_q": view.text, "b_injected": view.injected, "b_sort": view.sort, "b_order": view.order,
        "b_n": view.per_page, "b_x": view.x, "b_y": view.y, "b_page": view.page,
        "b_sel": view.region.to_param() if view.region else None, "b_score": view.score, "b_list": view.list,
        "b_only": bool(view.list and view.only), "b_live": chart == INTERACTIVE,
    })
    ui.show_problems(problems)
    # widget values must be valid options (a run switch changes the labels, the lists and the calibrated columns)
    st.session_state["b_labels"] = [lab for lab in st.session_state["b_labels"] if lab in labels]
    for key, options, default in (("b_sort", sorts, "multimem"), ("b_x", columns, "cmc_g"),
                                  ("b_y", columns, "cmc_f"), ("b_score", score_filters, "multimem")):
        if st.session_state[key] not in options:
            st.session_state[key] = default
    return page


def filters_section(p: Page) -> None:
    """The filter row (drawn after the grid, into its place above it: the view was read from the widgets' state)."""
    f1, f2, f3, f4, *f5 = st.columns([2.6, 2, 2, 2, 1.4] if p.injected else [2.6, 2, 2, 2])
    f1.multiselect("Subsets", list(SCORED_SUBSETS), key="b_subsets", format_func=SUBSET_SHORT.get,
                   help="S_C: candidates (f trained on them, g did not), the memorization figure. S_I: independent "
                        "(g only) and S_S: shared (both), its controls.")
    if len(p.score_filters) > 1:  # the calibrated scores, on the same normalised scale (raw-unit columns / range)
        f2.selectbox("Score range on", p.score_filters, key="b_score", format_func=p.columns.get,
                     label_visibility="collapsed")
    f2.slider("Normalised score", -1.0, 1.0, key="b_range", step=0.01,
              help="Scores divided by the run's normalisation range; 0: f and g agree on the pair")
    f3.multiselect("Label / category", p.labels, key="b_labels", placeholder="any")
    f4.text_input("Caption contains", key="b_q", placeholder="e.g. cat", max_chars=200)
    if p.injected:
        f5[0].selectbox("Injected mis-captions", INJECTED, key="b_injected",
                        format_func={"any": "any", "yes": "only injected", "no": "without injected"}.get)


def filters_from_state(p: Page) -> None:
    """The filters: every part of the view but the page and the scatter selection, from the widgets' state (a
    widget's new value is in st.session_state before the widget is drawn again)."""
    s = st.session_state
    lo, hi = s["b_range"]
    p.filters = BrowseView(
        subsets=tuple(s["b_subsets"]) or BrowseView().subsets, lo=float(lo), hi=float(hi),
        labels=tuple(s["b_labels"]), text=s["b_q"].strip(), injected=s["b_injected"] if p.injected else "any",
        sort=s["b_sort"], order=s["b_order"], per_page=s["b_n"], x=s["b_x"], y=s["b_y"], score=s["b_score"],
        list=s["b_list"] or "", only=bool(s["b_list"] and s["b_only"]),
    )
    p.text = cache.scores_search_text(p.name) if p.filters.text else None
    p.listed = curation.list_ids(p.name, p.filters.list)
    if p.filters.only:  # only the pairs of the list (the list's order is kept by the sort's tie-break on id)
        p.table = curation.filtered(p.table, p.listed)
        p.text = p.text.loc[p.table.index] if p.text is not None else None
    # a filter or axis changed by hand starts again at page 1; new axes also drop the selection drawn on the old ones
    f = p.filters
    signature = (f.subsets, f.lo, f.hi, f.labels, f.text, f.injected, f.sort, f.order, f.per_page, f.score, f.list,
                 f.only)
    axes = (f.x, f.y)
    if not p.from_link and s.get("_b_axes") not in (None, axes):
        s["b_sel"] = None
    if not p.from_link and (s.get("_b_sig") not in (None, signature) or s.get("_b_axes") not in (None, axes)):
        s["b_page"] = 1
    s["_b_sig"], s["_b_axes"] = signature, axes


def chart_key() -> str:
    return f"b_scatter_{st.session_state.get('b_chart', 0)}"


def rows_in_view(p: Page) -> None:
    """The rows the filters and the scatter selection keep, and the page of them to show.

    A box or lasso drawn on the interactive chart is read from the chart's state before the chart is drawn, so the
    grid that it filters can be sent first."""
    s = st.session_state
    event = s.get(chart_key()) if s.get("b_live") else None
    picked = Region.from_plotly(event["selection"]) if event and event.get("selection") else None
    if picked is not None and picked.to_param() != s.get("_b_event"):
        s["_b_event"] = s["b_sel"] = picked.to_param()
        s["b_page"] = 1
    region = Region.from_param(s["b_sel"]) if s["b_sel"] else None
    view = BrowseView(**{**p.filters.__dict__, "region": region, "page": s["b_page"]})
    p.rows = select.select(p.table, view, p.text)
    page_rows, page, p.pages = select.page_of(p.rows, view.page, view.per_page)
    if p.from_link and p.wanted_page > p.pages:
        ui.show_problems([f"page {p.wanted_page:,} does not exist: these filters give {p.pages:,} page"
                              f"{'s' if p.pages > 1 else ''}; showing page {page:,}"])
    s["b_page"] = page
    p.view = BrowseView(**{**view.__dict__, "page": page})
    p.page_rows = page_rows


def grid_section(p: Page) -> None:
    """Sort and order, the count, the cards of this page and the pager; the cards are sent first."""
    view, rows, page_rows = p.view, p.rows, p.page_rows
    s1, s2 = st.columns([1, 1.3])  # filled once the cards are out
    first = (view.page - 1) * view.per_page + 1
    st.caption(f"**{len(rows):,}** of {len(p.table):,} scored pairs match"
               + (f" · showing {first:,}–{first + len(page_rows) - 1:,}" if len(rows) else "")
               + (" · inside the scatter selection" if view.region is not None else ""))
    if rows.empty:
        st.info("No pair matches these filters.", icon=":material/filter_alt_off:")
    curation.tag_errors()
    has_se = "multimem_se" in p.table.columns
    records = page_rows.to_dict("records")
    pct = explain.subset_percentiles(cache.scores(p.name), page_rows) if len(page_rows) else []
    scale = norm_factor(p.table) if has_se else 1.0
    for r, q in zip(records, pct):
        short = SUBSET_SHORT[r["subset"]]
        card = ui.sample_card(p.name, r, score=float(r["multimem"]), lines=[
            f"{explain.ordinal(q)} percentile in {short} · 0 = f and g agree",
            f"{short}" + (f" · {r['label']}" if isinstance(r.get("label"), str) else ""),
            f"raw {r['multimem_raw']:+.4f} · cos_f {r['cos_f']:.2f}",
        ])
        se = r.get("multimem_se") if has_se else None
        if se is not None and math.isfinite(float(se)):
            card.score_note = f"± {float(se) * scale:.3f}"
        card.title = (f"Normalised MultiMem (raw / the run's range): {explain.ordinal(q)} percentile among the "
                      f"scored {short} pairs; 0 means f and g agree on the pair"
                      + ("; ± one standard error over the run's replicas" if card.score_note else ""))
        p.cards.append(card)
    ui.link_grid(p.cards, [str(r["id"]) for r in records], p.name, listed=set(p.listed),
                     tag_list=p.filters.list, scroll=st.session_state.get("_b_scroll", 0) if not p.from_link else 0,
                     params=views.order_params(view))
    p1, p2, p3, p4 = st.columns([1, 1.4, 1, 1], vertical_alignment="bottom")
    p1.button("Previous", on_click=go_page, args=(-1,), disabled=view.page <= 1, icon=":material/chevron_left:",
              width="stretch")
    p2.number_input(f"Page (of {p.pages})", min_value=1, max_value=p.pages, key="b_page", on_change=paged)
    p3.selectbox("Per page", PER_PAGE, key="b_n")
    p4.button("Next", on_click=go_page, args=(1,), disabled=view.page >= p.pages, icon=":material/chevron_right:",
              width="stretch")
    s1.selectbox("Sort by", list(p.sorts), key="b_sort", format_func=p.sorts.get)
    s2.segmented_control("Order", ["desc", "asc"], key="b_order", required=True,
                         format_func={"desc": "Most memorized", "asc": "Least memorized"}.get)


def scatter_section(p: Page) -> None:
    """The scatter of every pair the filters keep (the selection itself aside), as a picture or, when asked for,
    as the interactive chart whose box or lasso selection filters the grid."""
    f, region = p.filters, p.view.region
    a1, a2 = st.columns(2)
    a1.selectbox("x axis", list(p.columns), key="b_x", format_func=p.columns.get)
    a2.selectbox("y axis", list(p.columns), key="b_y", format_func=p.columns.get)
    unselected = p.table[select.filter_mask(p.table, f, p.text)]
    points = select.scatter_sample(unselected)
    half = colour_range(points["multimem"])  # symmetric around 0, scaled to the points shown
    p.figures = Later(lambda: [scatter_figure(points, f.x, f.y, half, p.columns, region, p.injected)])
    if st.session_state["b_live"]:
        st.plotly_chart(scatter_figure(points, f.x, f.y, half, p.columns, region, p.injected), key=chart_key(),
                        on_select="rerun", selection_mode=("box", "lasso"), width="stretch")
    else:
        show_picture(scatter_picture(points, f.x, f.y, half, p.columns, region, p.injected), "mm-scatter",
                     f"Scatter of {p.columns[f.y]} against {p.columns[f.x]}, coloured by score")
    shown = (f"{len(points):,} of {len(unselected):,} points shown" if len(points) < len(unselected)
             else f"{len(points):,} points")
    rings = "; black rings: injected mis-captions" if p.injected else ""
    how = ("Draw a box or lasso to filter the grid." if st.session_state["b_live"]
           else "Switch the chart on to select points with a box or lasso, zoom, or see each point's caption.")
    st.caption(f"{shown}{rings}. {how}")
    b1, b2 = st.columns([3, 2], vertical_alignment="center")
    b1.toggle("Select on the chart", key="b_live",
              help="The interactive chart: draw a box or lasso to filter the grid, zoom and pan. Its JavaScript "
                   "(plotly, 4.7 MB) loads the first time it is shown")
    if region is not None:
        b2.button("Clear selection", on_click=clear_selection, icon=":material/close:")


def scatter_figure(points: pd.DataFrame, x: str, y: str, half: float, columns: dict[str, str],
                   region: Region | None, injected: bool):
    """The interactive chart (and the report's figure): plotly, imported only when one is drawn."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scattergl(
        x=points[x], y=points[y], mode="markers",
        text=[html.escape(str(c), quote=False) for c in points["caption"]],  # plotly reads tags in hover text
        hovertemplate="%{text}<br>%{x:.4f}, %{y:.4f}<extra></extra>",
        marker=dict(size=6, color=points["multimem"], colorscale="RdYlBu_r", cmin=-half, cmax=half, cmid=0,
                    line=dict(width=points["injected"].map({True: 1.5, False: 0}).tolist() if injected else 0,
                              color="black"),
                    colorbar=dict(title="score", thickness=10)),
    ))
    if region is not None:  # the selection stays visible, also when it came from a link
        if region.kind == "box":
            fig.add_shape(type="rect", x0=region.xs[0], x1=region.xs[1], y0=region.ys[0], y1=region.ys[1],
                          line=dict(color="#888", dash="dash"))
        else:
            path = "M " + " L ".join(f"{x},{y}" for x, y in zip(region.xs, region.ys)) + " Z"
            fig.add_shape(type="path", path=path, line=dict(color="#888", dash="dash"))
    fig.update_layout(height=420, margin=dict(t=10, l=10, r=10, b=40), dragmode="lasso",
                      xaxis_title=columns[x], yaxis_title=columns[y])
    return fig


def curation_section(p: Page) -> None:
    """The list tags go into, exports of the filtered pairs and of the list, removal of a list."""
    if review_mode.readonly():
        st.caption(f":material/visibility: {review_mode.NOTE}")
    rows, f = p.rows, p.filters
    c1, c2, c3, c4 = st.columns([2, 2, 1.3, 3], vertical_alignment="bottom")
    c1.selectbox("List (tags go here)", ["", *dict.fromkeys([*p.lists, *([f.list] if f.list else [])])],
                 key="b_list", format_func=lambda n: n or "no list",
                 help="Named lists of pairs kept in the run folder (lists/NAME.json); each card's checkbox tags "
                      "its pair into the chosen list")
    c2.text_input("New list", key="b_new_list", placeholder="name, then Enter", on_change=new_list,
                  disabled=review_mode.readonly(), max_chars=64)
    c3.toggle("Only this list", key="b_only", disabled=not f.list, help="Show only the pairs of the chosen list")
    with c4:
        st.caption(f"Download the {len(rows):,} filtered pairs")
        curation.downloads(lambda rows=rows: lists.export_table(rows), f"{p.name}-browse", "b_export",
                               f"Filtered pairs ({len(rows):,})")
    if f.list:
        listed = p.listed
        d1, d2 = st.columns([3, 2], vertical_alignment="bottom")
        with d1:
            st.caption(f"Download list {plain(f.list)} ({len(listed):,} pairs)")
            curation.downloads(lambda: lists.export_table(cache.scores(p.name), listed),
                                   f"{p.name}-{f.list}", "b_list_export", f"List {f.list} ({len(listed):,})")
        d2.button(f"Remove these {len(listed):,} and fine-tune f", key="b_remove", icon=":material/healing:",
                  on_click=curation.start_removal, args=(p.name, f.list),
                  disabled=review_mode.readonly() or not listed,
                  help="Starts the removal mitigation with this list as its ranking: its pairs leave f's training "
                       "data and f is fine-tuned on the rest (multimem mitigate --strategy removal --ranking ids)")
    curation.removal_note()


def link_and_report(p: Page, report_col, share_col) -> None:
    """The view into the URL, its link, and the view as one HTML file (the page of pairs, the scatter, the run)."""
    view, rows = p.view, p.rows
    params = views.browse_params(view)
    if st.session_state["b_live"]:
        params["chart"] = INTERACTIVE
    ui.write_view("browse", params)
    ui.report_button(
        report_col, "browse", params, f"Browse: {len(rows):,} pairs, page {view.page} of {p.pages}", p.name,
        figures=p.figures, cards=p.cards,
        file_name=f"{p.name}-browse-p{view.page}.html",
        notes=[f"{len(rows):,} of {len(p.table):,} scored pairs match this view; the cards are page {view.page} "
               f"({', '.join(SUBSET_SHORT[s] for s in view.subsets)}, sorted by {p.sorts[view.sort]}, "
               f"{'highest' if view.order == 'desc' else 'lowest'} first)."])
    with share_col:
        ui.share("browse", params)
    ui.attribution(cache.manifest(p.name))


# The layout is laid out first, then filled grid first: a cold browser draws the cards before the other widgets.
page = view_from_link()
title_col, report_col, share_col = st.columns([4, 1, 1], vertical_alignment="bottom")
title_col.title("Browse pairs")
filters_row, tools = st.container(), st.container()  # tools: lists, exports and removal
left, right = st.columns([1.35, 2], gap="medium")
filters_from_state(page)
rows_in_view(page)
with right:
    grid_section(page)
with filters_row:
    filters_section(page)
with left:
    scatter_section(page)
with tools:
    curation_section(page)
link_and_report(page, report_col, share_col)
