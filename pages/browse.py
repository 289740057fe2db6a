"""Browse: the most (or least) memorized pairs as an image grid, with filters, sorting, paging and a scatter."""
import html

import math

import plotly.graph_objects as go
import streamlit as st

from multimem import app_cache, app_curation, app_ui, curation, explore, review
from multimem.explore import BrowseView, Region

name = app_ui.page_run()

table = app_cache.scores(name)
injected = app_cache.has_injected(name)  # the injection filter and rings only for a run that has injected samples
labels = sorted(table["label"].dropna().astype(str).unique()) if "label" in table else []
columns = explore.columns_for(table)  # the calibrated scores only when the table has them
sorts = explore.sorts_for(table)
score_filters = [c for c in explore.SCORE_FILTERS if c in columns]
has_se = "multimem_se" in table.columns
view, problems = explore.parse_browse(app_ui.page_query("browse"), labels, columns)
lists = app_curation.names(name)
if view.list and view.list not in lists and app_ui.url_changed("browse"):
    problems.append(f"run '{explore.plain(name)}' has no list '{explore.plain(view.list)}' yet; tagging a pair "
                    "creates it")
wanted_page = view.page
from_link = app_ui.url_changed("browse")  # the view comes from the URL, not from a widget change
app_ui.seed("browse", {
    "b_subsets": list(view.subsets), "b_range": (view.lo, view.hi), "b_labels": list(view.labels), "b_q": view.text,
    "b_injected": view.injected, "b_sort": view.sort, "b_order": view.order, "b_n": view.per_page, "b_x": view.x,
    "b_y": view.y, "b_page": view.page, "b_sel": view.region.to_param() if view.region else None,
    "b_score": view.score, "b_list": view.list, "b_only": bool(view.list and view.only),
})
app_ui.show_problems(problems)
# widget values must be valid options (a run switch changes the labels, the lists and the calibrated columns)
st.session_state["b_labels"] = [lab for lab in st.session_state["b_labels"] if lab in labels]
for key, options, default in (("b_sort", sorts, "multimem"), ("b_x", columns, "cmc_g"), ("b_y", columns, "cmc_f"),
                              ("b_score", score_filters, "multimem")):
    if st.session_state[key] not in options:
        st.session_state[key] = default


def go_page(delta: int) -> None:
    st.session_state["b_page"] = max(1, st.session_state["b_page"] + delta)
    st.session_state["_b_scroll"] = st.session_state.get("_b_scroll", 0) + 1


def paged() -> None:
    st.session_state["_b_scroll"] = st.session_state.get("_b_scroll", 0) + 1


def new_list() -> None:
    text = st.session_state.get("b_new_list", "").strip()
    try:
        st.session_state["b_list"] = curation.check_list_name(text)
        st.session_state["b_new_list"] = ""
    except curation.ListError as exc:
        st.session_state["_tag_error"] = str(exc)


def clear_selection() -> None:
    st.session_state["b_sel"] = st.session_state["_b_event"] = None
    st.session_state["b_chart"] = st.session_state.get("b_chart", 0) + 1  # a fresh chart drops its selection


title, report_col, share_col = st.columns([4, 1, 1], vertical_alignment="bottom")
title.title("Browse pairs")

# ---- filters
f1, f2, f3, f4, *f5 = st.columns([2.6, 2, 2, 2, 1.4] if injected else [2.6, 2, 2, 2])
f1.multiselect("Subsets", list(explore.SCORED_SUBSETS), key="b_subsets", format_func=explore.SUBSET_SHORT.get,
               help="S_C: candidates (f trained on them, g did not), the memorization figure. S_I: independent "
                    "(g only) and S_S: shared (both), its controls.")
if len(score_filters) > 1:  # the calibrated scores, on the same normalised scale (raw-unit columns / the range)
    f2.selectbox("Score range on", score_filters, key="b_score", format_func=columns.get, label_visibility="collapsed")
f2.slider("Normalised score", -1.0, 1.0, key="b_range", step=0.01,
          help="Scores divided by the run's normalisation range; 0: f and g agree on the pair")
f3.multiselect("Label / category", labels, key="b_labels", placeholder="any")
f4.text_input("Caption contains", key="b_q", placeholder="e.g. cat", max_chars=200)
if injected:
    f5[0].selectbox("Injected mis-captions", explore.INJECTED, key="b_injected",
                    format_func={"any": "any", "yes": "only injected", "no": "without injected"}.get)

lo, hi = st.session_state["b_range"]
filters = BrowseView(
    subsets=tuple(st.session_state["b_subsets"]) or BrowseView().subsets,
    lo=float(lo), hi=float(hi), labels=tuple(st.session_state["b_labels"]), text=st.session_state["b_q"].strip(),
    injected=st.session_state["b_injected"] if injected else "any", sort=st.session_state["b_sort"],
    order=st.session_state["b_order"],
    per_page=st.session_state["b_n"], x=st.session_state["b_x"], y=st.session_state["b_y"],
    score=st.session_state["b_score"], list=st.session_state["b_list"] or "",
    only=bool(st.session_state["b_list"] and st.session_state["b_only"]),
)
text = app_cache.scores_search_text(name) if filters.text else None
listed = app_curation.list_ids(name, filters.list)
if filters.only:  # only the pairs of the list (the list's order is kept by the sort's tie-break on id)
    table = app_curation.filtered(table, listed)
    text = text.loc[table.index] if text is not None else None
# a filter or axis changed by hand starts again at page 1; new axes also drop the selection drawn on the old ones
signature = (filters.subsets, filters.lo, filters.hi, filters.labels, filters.text, filters.injected, filters.sort,
             filters.order, filters.per_page, filters.score, filters.list, filters.only)
axes = (filters.x, filters.y)
if not from_link and st.session_state.get("_b_axes") not in (None, axes):
    st.session_state["b_sel"] = None
if not from_link and (st.session_state.get("_b_sig") not in (None, signature)
                      or st.session_state.get("_b_axes") not in (None, axes)):
    st.session_state["b_page"] = 1
st.session_state["_b_sig"], st.session_state["_b_axes"] = signature, axes

tools = st.container()  # lists, exports and removal: filled below, once the rows are known
left, right = st.columns([1.35, 2], gap="medium")

# A box or lasso drawn on the scatter filters the grid. The chart's selection is read from its state before the
# chart is drawn, so the grid can be sent first: the page shows pairs while plotly's JavaScript still loads.
chart_key = f"b_scatter_{st.session_state.get('b_chart', 0)}"
event = st.session_state.get(chart_key)
picked = Region.from_plotly(event["selection"]) if event and event.get("selection") else None
if picked is not None and picked.to_param() != st.session_state.get("_b_event"):
    st.session_state["_b_event"] = st.session_state["b_sel"] = picked.to_param()
    st.session_state["b_page"] = 1
region = Region.from_param(st.session_state["b_sel"]) if st.session_state["b_sel"] else None

view = BrowseView(**{**filters.__dict__, "region": region, "page": st.session_state["b_page"]})
rows = explore.select(table, view, text)
page_rows, page, pages = explore.page_of(rows, view.page, view.per_page)
if from_link and wanted_page > pages:
    app_ui.show_problems([f"page {wanted_page:,} does not exist: these filters give {pages:,} page"
                          f"{'s' if pages > 1 else ''}; showing page {page:,}"])
st.session_state["b_page"] = page
view = BrowseView(**{**view.__dict__, "page": page})

# ---- the grid
with right:
    s1, s2 = st.columns([1, 1.3])
    s1.selectbox("Sort by", list(sorts), key="b_sort", format_func=sorts.get)
    s2.segmented_control("Order", ["desc", "asc"], key="b_order", required=True,
                         format_func={"desc": "Most memorized", "asc": "Least memorized"}.get)
    first = (page - 1) * view.per_page + 1
    st.caption(f"**{len(rows):,}** of {len(table):,} scored pairs match"
               + (f" · showing {first:,}–{first + len(page_rows) - 1:,}" if len(rows) else "")
               + (" · inside the scatter selection" if region is not None else ""))
    if rows.empty:
        st.info("No pair matches these filters.", icon=":material/filter_alt_off:")
    app_curation.tag_errors()
    records = page_rows.to_dict("records")
    pct = explore.subset_percentiles(app_cache.scores(name), page_rows) if len(page_rows) else []
    scale = explore.norm_factor(table) if has_se else 1.0
    cards = []
    for r, p in zip(records, pct):
        short = explore.SUBSET_SHORT[r["subset"]]
        card = app_ui.sample_card(name, r, score=float(r["multimem"]), lines=[
            f"{explore.ordinal(p)} percentile in {short} · 0 = f and g agree",
            f"{short}" + (f" · {r['label']}" if isinstance(r.get("label"), str) else ""),
            f"raw {r['multimem_raw']:+.4f} · cos_f {r['cos_f']:.2f}",
        ])
        se = r.get("multimem_se") if has_se else None
        if se is not None and math.isfinite(float(se)):
            card.score_note = f"± {float(se) * scale:.3f}"
        card.title = (f"Normalised MultiMem (raw / the run's range): {explore.ordinal(p)} percentile among the "
                      f"scored {short} pairs; 0 means f and g agree on the pair"
                      + ("; ± one standard error over the run's replicas" if card.score_note else ""))
        cards.append(card)
    app_ui.link_grid(cards, [str(r["id"]) for r in records], name, listed=set(listed), tag_list=filters.list,
                     scroll=st.session_state.get("_b_scroll", 0) if not from_link else 0,
                     params=explore.order_params(view))
    p1, p2, p3, p4 = st.columns([1, 1.4, 1, 1], vertical_alignment="bottom")
    p1.button("Previous", on_click=go_page, args=(-1,), disabled=page <= 1, icon=":material/chevron_left:",
              width="stretch")
    p2.number_input(f"Page (of {pages})", min_value=1, max_value=pages, key="b_page", on_change=paged)
    p3.selectbox("Per page", explore.PER_PAGE, key="b_n")
    p4.button("Next", on_click=go_page, args=(1,), disabled=page >= pages, icon=":material/chevron_right:",
              width="stretch")

# ---- the scatter: every filter but the selection itself
with left:
    a1, a2 = st.columns(2)
    a1.selectbox("x axis", list(columns), key="b_x", format_func=columns.get)
    a2.selectbox("y axis", list(columns), key="b_y", format_func=columns.get)
    unselected = table[explore.filter_mask(table, filters, text)]
    points = explore.scatter_sample(unselected)
    half = explore.colour_range(points["multimem"])  # symmetric around 0, scaled to the points shown
    fig = go.Figure(go.Scattergl(
        x=points[filters.x], y=points[filters.y], mode="markers",
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
                      xaxis_title=columns[filters.x], yaxis_title=columns[filters.y])
    st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode=("box", "lasso"), width="stretch")
    shown = (f"{len(points):,} of {len(unselected):,} points shown" if len(points) < len(unselected)
             else f"{len(points):,} points")
    st.caption(f"{shown}{'; black rings: injected mis-captions' if injected else ''}. Draw a box or lasso to "
               "filter the grid.")
    if region is not None:
        st.button("Clear selection", on_click=clear_selection, icon=":material/close:")

# ---- curation: the list tags go into, exports, removal of a list
with tools:
    if review.readonly():
        st.caption(f":material/visibility: {review.NOTE}")
    c1, c2, c3, c4 = st.columns([2, 2, 1.3, 3], vertical_alignment="bottom")
    c1.selectbox("List (tags go here)", ["", *dict.fromkeys([*lists, *([filters.list] if filters.list else [])])],
                 key="b_list", format_func=lambda n: n or "no list",
                 help="Named lists of pairs kept in the run folder (lists/NAME.json); each card's checkbox tags "
                      "its pair into the chosen list")
    c2.text_input("New list", key="b_new_list", placeholder="name, then Enter", on_change=new_list,
                  disabled=review.readonly(), max_chars=64)
    c3.toggle("Only this list", key="b_only", disabled=not filters.list,
              help="Show only the pairs of the chosen list")
    with c4:
        st.caption(f"Download the {len(rows):,} filtered pairs")
        app_curation.downloads(lambda rows=rows: curation.export_table(rows), f"{name}-browse", "b_export",
                               f"Filtered pairs ({len(rows):,})")
    if filters.list:
        d1, d2 = st.columns([3, 2], vertical_alignment="bottom")
        with d1:
            st.caption(f"Download list {explore.plain(filters.list)} ({len(listed):,} pairs)")
            app_curation.downloads(lambda: curation.export_table(app_cache.scores(name), listed),
                                   f"{name}-{filters.list}", "b_list_export", f"List {filters.list} ({len(listed):,})")
        d2.button(f"Remove these {len(listed):,} and fine-tune f", key="b_remove", icon=":material/healing:",
                  on_click=app_curation.start_removal, args=(name, filters.list),
                  disabled=review.readonly() or not listed,
                  help="Starts the removal mitigation with this list as its ranking: its pairs leave f's training "
                       "data and f is fine-tuned on the rest (multimem mitigate --strategy removal --ranking ids)")
    app_curation.removal_note()

params = explore.browse_params(view)
app_ui.write_view("browse", params)
# this page of pairs, the scatter, the run's settings and this view's link, in one HTML file
app_ui.report_button(
    report_col, "browse", params, f"Browse: {len(rows):,} pairs, page {page} of {pages}", name, figures=[fig],
    cards=cards, file_name=f"{name}-browse-p{page}.html",
    notes=[f"{len(rows):,} of {len(table):,} scored pairs match this view; the cards are page {page} "
           f"({', '.join(explore.SUBSET_SHORT[s] for s in view.subsets)}, sorted by {sorts[view.sort]}, "
           f"{'highest' if view.order == 'desc' else 'lowest'} first)."])
with share_col:
    app_ui.share("browse", params)
app_ui.attribution(app_cache.manifest(name))
