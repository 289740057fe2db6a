"""Compare: two runs (e.g. a baseline and a mitigated run) on one scale, never on per-run ranges."""
import html

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from multimem import app_cache, app_ui, explore
from multimem.splits import CANDIDATE

name = app_ui.page_run()

runs = app_cache.scored_runs()
others = [r for r in runs if r != name]
st.title("Compare runs")
if not others:
    st.info("Compare needs a second scored run: for example `python -m multimem demo --fast --name other --seed 1`, "
            "a mitigated run, or a run scored from your own checkpoints.", icon=":material/info:")
    st.stop()

query = app_ui.page_query("compare")
problems: list[str] = []
asked_b = (query.get("vs") or [None])[-1]
wanted_b = explore.parse_run_name(asked_b, others, problems,
                                  app_cache.unscored_runs() if asked_b and asked_b not in others else None)
mode = (query.get("norm") or ["shared"])[-1]
if mode not in explore.COMPARE_MODES:
    problems.append(f"'norm={explore.plain(mode)}' is not one of {', '.join(explore.COMPARE_MODES)}; using shared")
    mode = "shared"
subset = (query.get("subset") or [CANDIDATE])[-1]
if subset not in explore.SCORED_SUBSETS:
    problems.append(f"unknown subset '{explore.plain(subset)}'; using {CANDIDATE}")
    subset = CANDIDATE
run_list = app_cache.run_table()
parent_of = dict(zip(run_list["name"], run_list["parent"])) if not run_list.empty else {}
parent = parent_of.get(name)
children = [r for r in others if parent_of.get(r) == name]
# the other run by default: the run this one derives from, else one derived from it, else the first other run
default_b = parent if parent in others else (children[0] if children else others[0])
app_ui.seed("compare", {"c_b": wanted_b or default_b, "c_mode": mode, "c_subset": subset})
if st.session_state["c_b"] not in others:
    st.session_state["c_b"] = others[0]
b = st.session_state["c_b"]
# which run is A, the baseline: the ancestor when one run derives from the other, else the sidebar's run; `base`
# in the link (or the swap button) says otherwise
default_base = explore.baseline_of(name, b, parent_of)
asked_base = (query.get("base") or [None])[-1]
if app_ui.url_changed("compare"):
    swap = False
    if asked_base:
        if asked_base in (name, b):
            swap = asked_base != default_base
        else:
            problems.append(f"'base={explore.plain(asked_base)}' is neither of the compared runs; "
                            f"using {explore.plain(default_base, None)} as run A")
    st.session_state["c_swap"] = swap
elif st.session_state.get("_c_pair") != (name, b):  # another pair of runs: its own default order
    st.session_state["c_swap"] = False
st.session_state["_c_pair"] = (name, b)
app_ui.show_problems(problems)


def swap_runs() -> None:
    st.session_state["c_swap"] = not st.session_state.get("c_swap", False)


other_of = {name: b, b: name}
run_a = other_of[default_base] if st.session_state.get("c_swap") else default_base
run_b = other_of[run_a]
derived = {r for r in (run_a, run_b) if other_of[r] in explore.lineage_chain(r, parent_of)}

c1, c2, c3 = st.columns([2, 3, 1])
c1.selectbox("Compare the sidebar's run with", others, key="c_b",
             help="Any two runs in the runs folder: a baseline and its mitigated runs, other seeds or settings, or "
                  "runs scored from checkpoints trained elsewhere.")
c2.radio("Compare on", list(explore.COMPARE_MODES), key="c_mode", format_func=explore.COMPARE_MODES.get,
         help="A range taken per run rescales each run differently and can hide or invent a change (METHOD.md)")
mode = st.session_state["c_mode"]
P = explore.plain
role = {r: (" (baseline)" if other_of[r] in derived else f" (derived from {P(other_of[r], None)})" if r in derived
            else "") for r in (run_a, run_b)}
a1, a2 = st.columns([5, 1], vertical_alignment="center")
a1.markdown(f"**Run A:** {P(run_a, None)}{role[run_a]} · **Run B:** {P(run_b, None)}{role[run_b]}")
a2.button("Swap A and B", on_click=swap_runs, icon=":material/swap_horiz:", key="c_swap_button", width="stretch")

A, B = app_cache.scores(run_a), app_cache.scores(run_b)
value_range = explore.shared_range(A, B)
scale = ("raw differences CMC_f − CMC_g (no normalisation)" if mode == "raw"
         else f"raw differences divided by one shared range, {value_range:.5f} (max − min over both runs' scored sets)")
st.info(f"Both runs are compared on **{scale}**, not on each run's own range.", icon=":material/straighten:")

# ---- means, their change with its 95% interval, and the relative change
means = explore.subset_means(A, B, mode, value_range)
changes = app_cache.subset_changes(run_a, run_b)
divisor = 1.0 if mode == "raw" else value_range
cols = st.columns(3)
for col, rec, s in zip(cols, means.to_dict("records"), explore.SCORED_SUBSETS):
    rel = rec["relative change"]
    iv = explore.scaled(changes[s], divisor)
    col.metric(f"Mean on {rec['subset']}: B", f"{rec['B']:+.4f}",
               delta=None if rel is None else f"{rel * 100:+.1f}% vs A ({rec['A']:+.4f})", delta_color="inverse",
               help=f"B is {run_b}, A is {run_a}. Change B − A with its 95% interval: {iv.text(4)}")
    col.caption("change B − A " + iv.text(4).replace("-", "−"))
st.markdown("\n".join(f"- {explore.change_sentence(s, changes[s], run_a, run_b, divisor)}"
                       for s in explore.SCORED_SUBSETS))
paired = [explore.SUBSET_SHORT[s] for s in explore.SCORED_SUBSETS if changes[s]["paired"]]
k_a, k_b = changes[CANDIDATE]["replicas_a"], changes[CANDIDATE]["replicas_b"]
noise = ("" if min(k_a, k_b) > 1 else " With one replica" + (" in a run" if max(k_a, k_b) > 1 else " per run")
         + ", the interval holds sampling noise only, not training noise (`--replicas K` trains K seeds of f and g).")
st.caption(
    "95% percentile bootstrap intervals of the change B − A, over samples"
    + (f" (paired by sample id on {', '.join(paired)}: both runs scored the same samples)" if paired
       else " (each run's own: the runs scored different samples)")
    + f" and over replicas ({P(run_a, None)}: {k_a}, {P(run_b, None)}: {k_b})."
    + " A change whose interval covers 0 is within noise." + noise)
means = means.assign(**{"change low": [explore.scaled(changes[s], divisor).low for s in explore.SCORED_SUBSETS],
                        "change high": [explore.scaled(changes[s], divisor).high for s in explore.SCORED_SUBSETS],
                        "within noise": [explore.scaled(changes[s], divisor).within_noise
                                         for s in explore.SCORED_SUBSETS]})
means = means[["subset", "A", "B", "change", "change low", "change high", "within noise", "relative change"]]
formats = {"A": "{:+.5f}", "B": "{:+.5f}", "change": "{:+.5f}", "change low": "{:+.5f}", "change high": "{:+.5f}",
           "relative change": "{:+.1%}"}
st.dataframe(means.style.format(formats, na_rep="–"), hide_index=True, width="stretch")

# ---- overlaid distributions
st.subheader("Score distributions")
st.segmented_control("Subset", list(explore.SCORED_SUBSETS), key="c_subset", required=True,
                     format_func=explore.SUBSET_LABELS.get)
subset = st.session_state["c_subset"]
params = {"vs": b, "base": run_a if run_a != default_base else None, "norm": mode,
          "subset": subset if subset != CANDIDATE else None}
app_ui.write_view("compare", params)
with c3:
    app_ui.share("compare", params)
va = explore.compare_values(A, mode, value_range)[A["subset"] == subset].to_numpy(float)
vb = explore.compare_values(B, mode, value_range)[B["subset"] == subset].to_numpy(float)
both = pd.concat([pd.Series(va), pd.Series(vb)])
fig = go.Figure()
for label, values, colour in ((f"A: {run_a}", va, "#1f77b4"), (f"B: {run_b}", vb, "#d62728")):
    if len(values):
        x, counts, width = explore.histogram(values, 40, float(both.min()), float(both.max()))
        fig.add_bar(x=x, y=counts, width=width, name=label, marker_color=colour, opacity=0.55)
fig.update_layout(barmode="overlay", height=320, margin=dict(t=10, b=40), yaxis_title="pairs",
                  xaxis_title="MultiMem (" + ("raw" if mode == "raw" else "shared range") + ")",
                  legend=dict(orientation="h", y=1.1))
st.plotly_chart(fig, width="stretch")
report_figures = [fig]  # the figures of this view, for its report

# ---- utility side by side
ua, ub = app_cache.manifest(run_a).get("utility") or {}, app_cache.manifest(run_b).get("utility") or {}
if ua.get("f") and ub.get("f"):
    st.subheader("Utility on S_E")
    keys = [k for k in ua["f"] if "R@" in k or k == "zero_shot_top1"]
    util = pd.DataFrame({f"{run} {tag}": [(u.get(tag) or {}).get(k) for k in keys]
                         for run, u in (("A", ua), ("B", ub)) for tag in ("f", "g")}, index=keys)
    util["B f − A f"] = util["B f"] - util["A f"]
    st.dataframe(util.style.format("{:.3f}", na_rep="–"), width="stretch")

# ---- per sample, where both runs scored the same candidates
joined = explore.compare_join(A, B, mode, value_range)
st.subheader("Per pair")
if joined.empty:
    st.caption("The two runs share no candidate pairs (different data or split), so there is no per-pair view.")
else:
    left, right = st.columns([1, 1.3])
    lim = [float(min(joined["A"].min(), joined["B"].min())), float(max(joined["A"].max(), joined["B"].max()))]
    sc = go.Figure()
    sc.add_scatter(x=joined["A"], y=joined["B"], mode="markers",
                   text=[html.escape(str(c), quote=False) for c in joined["caption"]],  # plotly reads tags
                   marker=dict(size=6, color=joined["injected"].map({True: "#d62728", False: "#1f77b4"})),
                   hovertemplate="%{text}<br>A %{x:.4f} · B %{y:.4f}<extra></extra>", name="candidates")
    sc.add_scatter(x=lim, y=lim, mode="lines", line=dict(dash="dot", color="#999"), name="no change")
    sc.update_layout(height=380, margin=dict(t=10, b=40), xaxis_title=f"A: {run_a}", yaxis_title=f"B: {run_b}",
                     showlegend=False)
    left.plotly_chart(sc, width="stretch")
    report_figures.append(sc)
    marked = "; red: injected mis-captions" if joined["injected"].any() else ""
    left.caption(f"{len(joined):,} candidates scored in both runs{marked}. Below the line: less memorized in "
                 f"{explore.plain(run_b, None)} (B) than in {explore.plain(run_a, None)} (A).")
    moved = joined.head(30).assign(
        open_a=lambda d: [explore.link("sample", {"run": run_a, "id": i}) for i in d["id"]],
        open_b=lambda d: [explore.link("sample", {"run": run_b, "id": i}) for i in d["id"]],
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
app_ui.attribution(app_cache.manifest(run_a))
app_ui.report_button(c3, "compare", params, f"Compare {run_a} (A) with {run_b} (B)", run_b,
                     figures=report_figures,
                     notes=[f"Run A: {run_a}; run B: {run_b}; compared on "
                            f"{'raw differences' if mode == 'raw' else 'one shared normalisation range'}."])
