"""Compare: two runs (e.g. a baseline and a mitigated run) on one scale, never on per-run ranges.

The figures are sent as pictures (SVG images) with the page; the interactive charts (plotly: zoom, pan, hover; its
4.7 MB of JavaScript held back the whole page's first paint by seconds in a cold browser) load when asked for
(`chart=interactive` in the link). docs/benchmarks.md, "Dashboard", has the figures."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

from multimem import summary
from multimem.app import cache, compare, figures, ui, views
from multimem.app.columns import SCORED_SUBSETS, SUBSET_LABELS, SUBSET_SHORT
from multimem.app.pictures import Axes, Later, bars_picture, show_picture, span
from multimem.data.splits import CANDIDATE

P = views.plain
INTERACTIVE = "interactive"  # chart=interactive: the plotly charts instead of the pictures
PAIR_POINTS, PAIR_MOVERS = 3000, 300  # the per-pair scatter: at most this many points, the largest moves always in
A_COLOUR, B_COLOUR = "#1f77b4", "#d62728"


@dataclass
class Pair:
    """The two runs compared (A is the baseline), the scale they are compared on, and what the sections share."""

    name: str
    b: str
    run_a: str
    run_b: str
    default_base: str
    mode: str
    role: dict[str, str]
    others: list[str]
    controls: object = None
    A: pd.DataFrame | None = None
    B: pd.DataFrame | None = None
    value_range: float = 1.0
    figures: list = field(default_factory=list)  # makers of this view's plotly figures, for its report


def swap_runs() -> None:
    st.session_state["c_swap"] = not st.session_state.get("c_swap", False)


def pair_from_link(name: str) -> Pair:
    """The other run, which of the two is A, the scale and the subset: from the URL when it changed from outside,
    else from the widgets; stops with a hint when there is no second run."""
    runs = cache.scored_runs()
    others = [r for r in runs if r != name]
    st.title("Compare runs")
    if not others:
        st.info("Compare needs a second scored run: for example `python -m multimem demo --fast --name other "
                "--seed 1`, a mitigated run, or a run scored from your own checkpoints.", icon=":material/info:")
        st.stop()
    query = ui.page_query("compare")
    problems: list[str] = []
    asked_b = (query.get("vs") or [None])[-1]
    wanted_b = views.parse_run_name(asked_b, others, problems,
                                      cache.unscored_runs() if asked_b and asked_b not in others else None)
    mode = (query.get("norm") or ["shared"])[-1]
    if mode not in compare.COMPARE_MODES:
        problems.append(f"'norm={P(mode)}' is not one of {', '.join(compare.COMPARE_MODES)}; using shared")
        mode = "shared"
    subset = (query.get("subset") or [CANDIDATE])[-1]
    if subset not in SCORED_SUBSETS:
        problems.append(f"unknown subset '{P(subset)}'; using {CANDIDATE}")
        subset = CANDIDATE
    chart = (query.get("chart") or [""])[-1]
    if chart not in ("", INTERACTIVE):
        problems.append(f"'chart={P(chart)}' is not '{INTERACTIVE}'; showing the figures as pictures")
    run_list = cache.run_table()
    parent_of = dict(zip(run_list["name"], run_list["parent"])) if not run_list.empty else {}
    parent = parent_of.get(name)
    children = [r for r in others if parent_of.get(r) == name]
    # the other run by default: the run this one derives from, else one derived from it, else the first other run
    default_b = parent if parent in others else (children[0] if children else others[0])
    ui.seed("compare", {"c_b": wanted_b or default_b, "c_mode": mode, "c_subset": subset,
                            "c_live": chart == INTERACTIVE})
    if st.session_state["c_b"] not in others:
        st.session_state["c_b"] = others[0]
    b = st.session_state["c_b"]
    # which run is A, the baseline: the ancestor when one run derives from the other, else the sidebar's run;
    # `base` in the link (or the swap button) says otherwise
    default_base = compare.baseline_of(name, b, parent_of)
    asked_base = (query.get("base") or [None])[-1]
    if ui.url_changed("compare"):
        swap = False
        if asked_base:
            if asked_base in (name, b):
                swap = asked_base != default_base
            else:
                problems.append(f"'base={P(asked_base)}' is neither of the compared runs; "
                                f"using {P(default_base, None)} as run A")
        st.session_state["c_swap"] = swap
    elif st.session_state.get("_c_pair") != (name, b):  # another pair of runs: its own default order
        st.session_state["c_swap"] = False
    st.session_state["_c_pair"] = (name, b)
    ui.show_problems(problems)

    other_of = {name: b, b: name}
    run_a = other_of[default_base] if st.session_state.get("c_swap") else default_base
    run_b = other_of[run_a]
    derived = {r for r in (run_a, run_b) if other_of[r] in compare.lineage_chain(r, parent_of)}
    role = {r: (" (baseline)" if other_of[r] in derived else f" (derived from {P(other_of[r], None)})"
                if r in derived else "") for r in (run_a, run_b)}
    return Pair(name=name, b=b, run_a=run_a, run_b=run_b, default_base=default_base, mode=mode, role=role,
                others=others)


def runs_section(pair: Pair) -> None:
    """The other run, the scale, which run is A; then both runs' tables and their one shared range."""
    c1, c2, c3 = st.columns([2, 3, 1])
    c1.selectbox("Compare the sidebar's run with", pair.others, key="c_b",
                 help="Any two runs in the runs folder: a baseline and its mitigated runs, other seeds or settings, "
                      "or runs scored from checkpoints trained elsewhere.")
    c2.radio("Compare on", list(compare.COMPARE_MODES), key="c_mode", format_func=compare.COMPARE_MODES.get,
             help="A range taken per run rescales each run differently and can hide or invent a change (METHOD.md)")
    pair.mode = st.session_state["c_mode"]
    pair.controls = c3
    a1, a2 = st.columns([5, 1], vertical_alignment="center")
    a1.markdown(f"**Run A:** {P(pair.run_a, None)}{pair.role[pair.run_a]} · "
                f"**Run B:** {P(pair.run_b, None)}{pair.role[pair.run_b]}")
    a2.button("Swap A and B", on_click=swap_runs, icon=":material/swap_horiz:", key="c_swap_button",
              width="stretch")
    pair.A, pair.B = cache.scores(pair.run_a), cache.scores(pair.run_b)
    pair.value_range = summary.shared_range(pair.A, pair.B)
    scale = ("raw differences CMC_f − CMC_g (no normalisation)" if pair.mode == "raw"
             else f"raw differences divided by one shared range, {pair.value_range:.5f} (max − min over both runs' "
                  "scored sets)")
    st.info(f"Both runs are compared on **{scale}**, not on each run's own range.", icon=":material/straighten:")


def means_section(pair: Pair) -> None:
    """Each subset's mean in both runs, the change B − A with its 95% interval, and the relative change."""
    run_a, run_b, mode = pair.run_a, pair.run_b, pair.mode
    means = compare.compare_means(pair.A, pair.B, mode, pair.value_range)
    changes = cache.subset_changes(run_a, run_b)
    divisor = 1.0 if mode == "raw" else pair.value_range
    intervals = {s: compare.scaled(changes[s], divisor) for s in SCORED_SUBSETS}
    for col, rec, s in zip(st.columns(3), means.to_dict("records"), SCORED_SUBSETS):
        rel = rec["relative change"]
        iv = intervals[s]
        col.metric(f"Mean on {rec['subset']}: B", f"{rec['B']:+.4f}",
                   delta=None if rel is None else f"{rel * 100:+.1f}% vs A ({rec['A']:+.4f})", delta_color="inverse",
                   help=f"B is {run_b}, A is {run_a}. Change B − A with its 95% interval: {iv.text(4)}")
        col.caption("change B − A " + iv.text(4).replace("-", "−"))
    st.markdown("\n".join(f"- {compare.change_sentence(s, changes[s], run_a, run_b, divisor)}"
                           for s in SCORED_SUBSETS))
    paired = [SUBSET_SHORT[s] for s in SCORED_SUBSETS if changes[s]["paired"]]
    k_a, k_b = changes[CANDIDATE]["replicas_a"], changes[CANDIDATE]["replicas_b"]
    noise = ("" if min(k_a, k_b) > 1 else " With one replica" + (" in a run" if max(k_a, k_b) > 1 else " per run")
             + ", the interval holds sampling noise only, not training noise (`--replicas K` trains K seeds of f "
               "and g).")
    st.caption(
        "95% percentile bootstrap intervals of the change B − A, over samples"
        + (f" (paired by sample id on {', '.join(paired)}: both runs scored the same samples)" if paired
           else " (each run's own: the runs scored different samples)")
        + f" and over replicas ({P(run_a, None)}: {k_a}, {P(run_b, None)}: {k_b})."
        + " A change whose interval covers 0 is within noise." + noise)
    means = means.assign(**{"change low": [intervals[s].low for s in SCORED_SUBSETS],
                            "change high": [intervals[s].high for s in SCORED_SUBSETS],
                            "within noise": [intervals[s].within_noise for s in SCORED_SUBSETS]})
    means = means[["subset", "A", "B", "change", "change low", "change high", "within noise", "relative change"]]
    # number formats in the column config, not a pandas Styler (its import and styled cells cost a cold page)
    signed = st.column_config.NumberColumn(format="%+.5f")
    st.dataframe(means, hide_index=True, width="stretch",
                 column_config={**{c: signed for c in ("A", "B", "change", "change low", "change high")},
                                "relative change": st.column_config.NumberColumn(format="percent")})


def distributions_section(pair: Pair) -> None:
    """Both runs' score histograms of one subset, overlaid on the same bins (40 bars each, not the scores)."""
    st.subheader("Score distributions")
    s1, s2 = st.columns([4, 1], vertical_alignment="center")
    s1.segmented_control("Subset", list(SCORED_SUBSETS), key="c_subset", required=True,
                         format_func=SUBSET_LABELS.get)
    s2.toggle("Interactive charts", key="c_live",
              help="Zoom, pan and hover on the figures (plotly: 4.7 MB of JavaScript, loaded the first time)")
    subset = st.session_state["c_subset"]
    A, B, mode, value_range = pair.A, pair.B, pair.mode, pair.value_range
    va = compare.compare_values(A, mode, value_range)[A["subset"] == subset].to_numpy(float)
    vb = compare.compare_values(B, mode, value_range)[B["subset"] == subset].to_numpy(float)
    both = np.concatenate([va, vb])
    both = both[np.isfinite(both)]
    bars = [(f"{tag}: {run}", *figures.histogram(values, 40, float(both.min()), float(both.max())), colour)
            for tag, run, values, colour in (("A", pair.run_a, va, A_COLOUR), ("B", pair.run_b, vb, B_COLOUR))
            if len(values) and len(both)]
    x_title = "MultiMem (" + ("raw" if mode == "raw" else "shared range") + ")"
    if st.session_state["c_live"]:
        st.plotly_chart(distributions_figure(bars, x_title), width="stretch")
    else:
        show_picture(bars_picture(bars, x_title), "mm-bars", f"Histograms of both runs' scores ({x_title})")
    pair.figures.append(lambda: distributions_figure(bars, x_title))


def distributions_figure(bars: list, x_title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, x, counts, width, colour in bars:
        fig.add_bar(x=x, y=counts, width=width, name=label, marker_color=colour, opacity=0.55)
    fig.update_layout(barmode="overlay", height=320, margin=dict(t=10, b=40), yaxis_title="pairs",
                      xaxis_title=x_title, legend=dict(orientation="h", y=1.1))
    return fig


def utility_section(pair: Pair) -> None:
    """Retrieval and zero-shot figures of f and g in both runs, on the held-out S_E."""
    ua = cache.manifest(pair.run_a).get("utility") or {}
    ub = cache.manifest(pair.run_b).get("utility") or {}
    if not (ua.get("f") and ub.get("f")):
        return
    st.subheader("Utility on S_E")
    keys = [k for k in ua["f"] if "R@" in k or k == "zero_shot_top1"]
    util = pd.DataFrame({f"{run} {tag}": [(u.get(tag) or {}).get(k) for k in keys]
                         for run, u in (("A", ua), ("B", ub)) for tag in ("f", "g")}, index=keys)
    util["B f − A f"] = util["B f"] - util["A f"]
    st.dataframe(util, width="stretch", column_config={c: st.column_config.NumberColumn(format="%.3f") for c in util})


def pair_points(joined: pd.DataFrame, limit: int = PAIR_POINTS, movers: int = PAIR_MOVERS) -> pd.DataFrame:
    """The points the per-pair scatter draws: all when there are few, else the `movers` largest moves and a
    seeded sample of the rest (`joined` comes sorted by the size of the move)."""
    if len(joined) <= limit:
        return joined
    rest = joined.iloc[movers:].sample(n=limit - movers, random_state=0)
    return pd.concat([joined.iloc[:movers], rest])


def pair_traces(points: pd.DataFrame):
    """(label, colour, rows) per colour: clean candidates blue, injected mis-captions red."""
    injected = points["injected"].fillna(False).astype(bool)
    return [(label, colour, points[injected == flag]) for flag, colour, label in
            ((False, A_COLOUR, "candidates"), (True, B_COLOUR, "injected mis-captions")) if (injected == flag).any()]


def pairs_figure(points: pd.DataFrame, lim: list[float], run_a: str, run_b: str):
    import plotly.graph_objects as go

    sc = go.Figure()
    for label, colour, part in pair_traces(points):  # one trace per colour: no colour per point to send or check
        sc.add_scattergl(x=part["A"], y=part["B"], mode="markers", name=label,
                         text=[html.escape(str(c), quote=False) for c in part["caption"]],  # plotly reads tags
                         marker=dict(size=6, color=colour),
                         hovertemplate="%{text}<br>A %{x:.4f} · B %{y:.4f}<extra></extra>")
    sc.add_scatter(x=lim, y=lim, mode="lines", line=dict(dash="dot", color="#999"), name="no change")
    sc.update_layout(height=380, margin=dict(t=10, b=40), xaxis_title=f"A: {run_a}", yaxis_title=f"B: {run_b}",
                     showlegend=False)
    return sc


def pairs_picture(points: pd.DataFrame, lim: list[float], run_a: str, run_b: str) -> str:
    """Each pair's score in A against B as an SVG, the line of no change dotted."""
    lo, hi = span(np.asarray(lim))
    ax = Axes(lo, hi, lo, hi)
    out = [ax.open("mm-pairs"),
           ax.frame(f"A: {run_a}", f"B: {run_b}"), '<g clip-path="url(#mm-pairs-area)">',
           f'<line x1="{float(ax.px(lim[0])):.1f}" y1="{float(ax.py(lim[0])):.1f}" x2="{float(ax.px(lim[1])):.1f}" '
           f'y2="{float(ax.py(lim[1])):.1f}" stroke="#999" stroke-dasharray="2 3"/>']
    for _, colour, part in pair_traces(points):
        xs, ys = part["A"].to_numpy(float), part["B"].to_numpy(float)
        for cx, cy in zip(ax.px(xs), ax.py(ys)):
            if math.isfinite(cx) and math.isfinite(cy):
                out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"/>')
    out.append("</g></svg>")
    return "".join(out)


def per_pair_section(pair: Pair) -> None:
    """Where both runs scored the same candidates: each pair's score in A against B, and the pairs that moved most."""
    run_a, run_b = pair.run_a, pair.run_b
    joined = compare.compare_join(pair.A, pair.B, pair.mode, pair.value_range)
    st.subheader("Per pair")
    if joined.empty:
        st.caption("The two runs share no candidate pairs (different data or split), so there is no per-pair view.")
        return
    left, right = st.columns([1, 1.3])
    lim = [float(min(joined["A"].min(), joined["B"].min())), float(max(joined["A"].max(), joined["B"].max()))]
    points = pair_points(joined)
    with left:
        if st.session_state["c_live"]:
            st.plotly_chart(pairs_figure(points, lim, run_a, run_b), width="stretch")
        else:
            show_picture(pairs_picture(points, lim, run_a, run_b), "mm-pairs",
                         f"Each candidate's score in {run_a} (A) against {run_b} (B)")
    pair.figures.append(lambda: pairs_figure(points, lim, run_a, run_b))
    marked = "; red: injected mis-captions" if joined["injected"].any() else ""
    drawn = (f" ({len(points):,} drawn: the {PAIR_MOVERS:,} that moved most and a random sample of the rest)"
             if len(points) < len(joined) else "")
    left.caption(f"{len(joined):,} candidates scored in both runs{drawn}{marked}. Below the line: less memorized "
                 f"in {P(run_b, None)} (B) than in {P(run_a, None)} (A).")
    moved = joined.head(30).assign(
        open_a=lambda d: [views.link("sample", {"run": run_a, "id": i}) for i in d["id"]],
        open_b=lambda d: [views.link("sample", {"run": run_b, "id": i}) for i in d["id"]],
    )
    right.markdown("**The pairs whose score moved most**")
    right.dataframe(
        moved[["caption", "A", "B", "change", "open_a", "open_b", "injected"]], hide_index=True, width="stretch",
        height=380,
        column_config={
            "caption": st.column_config.TextColumn(width="medium"),
            "A": st.column_config.NumberColumn(format="%+.4f"), "B": st.column_config.NumberColumn(format="%+.4f"),
            "change": st.column_config.NumberColumn(format="%+.4f"),
            "open_a": st.column_config.LinkColumn(f"in A ({run_a})", display_text="open"),
            "open_b": st.column_config.LinkColumn(f"in B ({run_b})", display_text="open"),
        },
    )


def link_and_report(pair: Pair) -> None:
    """The view into the URL, its link, and the view as one HTML file (its figures built on the download)."""
    subset = st.session_state["c_subset"]
    params = {"vs": pair.b, "base": pair.run_a if pair.run_a != pair.default_base else None, "norm": pair.mode,
              "subset": subset if subset != CANDIDATE else None,
              "chart": INTERACTIVE if st.session_state["c_live"] else None}
    ui.write_view("compare", params)
    with pair.controls:
        ui.share("compare", params)
    ui.attribution(cache.manifest(pair.run_a))
    ui.report_button(pair.controls, "compare", params, f"Compare {pair.run_a} (A) with {pair.run_b} (B)",
                         pair.run_b, figures=Later(lambda: [make() for make in pair.figures]),
                         notes=[f"Run A: {pair.run_a}; run B: {pair.run_b}; compared on "
                                f"{'raw differences' if pair.mode == 'raw' else 'one shared normalisation range'}."])


name = ui.page_run()
pair = pair_from_link(name)
runs_section(pair)
means = st.container()  # filled last: on a pair's first view its bootstrap intervals take the longest
distributions_section(pair)
utility_section(pair)
per_pair_section(pair)
with means:
    means_section(pair)
link_and_report(pair)
