"""Sweeps: one strategy over a list of values (noise std, removal n, captions per image, regroup share), each a
derived run of the same parent, summarised in one table and one plot of memorization against utility (the
paper's figures). Memorization is compared on raw scores and on one range shared by every run of the sweep
(METHOD.md 3), never on ranges taken per run.

Outputs, in <runs root>/_sweeps/<sweep name>/ (a folder `multimem runs` and the dashboard do not list as a run):
    table.csv, table.parquet   one row per run (the parent first): settings, memorization, utility, cost
    plot.html                  memorization vs utility, and memorization vs the swept value (plotly)
    plot.png                   the same as an image, when kaleido is installed
    sweep.json                 the command's settings and the shared range
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimem.errors import MitigationError
from multimem.mitigation.base import child_name, get, make_params, same_as_parent
from multimem.mitigation.compare import cost_of, utility_row
from multimem.mitigation.derive import mitigate, open_parent
from multimem import summary
from multimem.store.atomic import atomic_parquet, atomic_write_json
from multimem.store.runs import COMPLETE, Run, check_name
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED
from multimem.store.manifest import Manifest

SWEEP_DIR = "_sweeps"


def sweep_dir(root: Path | str, name: str) -> Path:
    return Path(root) / SWEEP_DIR / check_name(name)


def plan(root: Path | str, parent: str, strategy: str, values: list, options: dict[str, Any],
         rankings: list[str] | None = None) -> list[dict]:
    """The runs of a sweep: [{"series", "value", "params", "name"}], the parent where a value trains as it did."""
    from multimem.pipeline.config import RunConfig

    _, pm = open_parent(root, parent)
    cfg = RunConfig.from_dict(pm["config"])
    if not values:
        raise MitigationError("a sweep needs at least one value (--values)")
    st = get(strategy)
    key = st.swept
    if options.get(key) is not None:
        raise MitigationError(f"--{key.replace('_', '-')} is what the sweep varies; give its values with --values")
    if rankings and "ranking" not in {x.name for x in st.settings()}:
        raise MitigationError(f"--rankings applies to strategies with a ranking, not {strategy}")
    series = rankings or [None]
    out, seen = [], set()
    for s in series:
        for v in values:
            opts = dict(options, **{key: v})
            if s is not None:
                opts["ranking"] = s
            params = make_params(strategy, **opts)
            if same_as_parent(cfg, strategy, params):
                name = parent
            else:
                name = child_name(parent, strategy, params)
            label = st.series(params)
            if s is not None and label == st.name:  # a series per ranking
                label = s
            if (label, name) in seen:
                continue
            seen.add((label, name))
            out.append({"series": label, "value": v, "params": params, "name": name})
    return out


def run_sweep(root: Path | str, parent: str, strategy: str, values: list, options: dict[str, Any] | None = None,
              rankings: list[str] | None = None, name: str | None = None, progress=print) -> dict:
    """Run (or resume) every run of the sweep, then write the table and the plot; returns the output paths."""
    options = options or {}
    runs = plan(root, parent, strategy, values, options, rankings)
    name = check_name(name or f"{parent}.{strategy}")
    for i, r in enumerate(runs, 1):
        if r["name"] == parent:
            progress(f"[{i}/{len(runs)}] {r['series']} = {r['value']}: trains as the parent {parent}")
            continue
        progress(f"[{i}/{len(runs)}] {r['series']} = {r['value']}: run {r['name']}")
        mitigate(root, parent, strategy, r["params"], r["name"])
    return write_outputs(root, parent, strategy, runs, name)


def _row(run: Run, parent_m: dict, r: dict | None, strategy: str, value_range: float, parent_scores: pd.DataFrame) -> dict:
    m = run.manifest()
    s = run.scores()
    row: dict[str, Any] = {"run": run.name, "strategy": strategy if r else "baseline",
                           "series": r["series"] if r else "baseline", "value": r["value"] if r else None}
    for sub in (CANDIDATE, INDEPENDENT, SHARED):
        raw = s.loc[s.subset == sub, "multimem_raw"]
        row[f"mean_raw_{sub}"] = float(raw.mean())
        row[f"mean_shared_{sub}"] = float(raw.mean()) / value_range
    mean = summary.mean_interval(summary.replica_values(s[s.subset == CANDIDATE]))
    row["ci_low_shared_candidate"], row["ci_high_shared_candidate"] = mean.low / value_range, mean.high / value_range
    row["replicas"] = mean.replicas
    # paired: the same S_C samples scored in both runs, so their per-sample change has a much smaller error
    change = summary.paired_change(parent_scores, s, CANDIDATE)
    row["paired_change_raw_candidate"] = change.estimate
    row["paired_change_low"], row["paired_change_high"] = change.low, change.high
    row["change_within_noise"] = change.within_noise
    row.update({f"f_{k}": v for k, v in utility_row(m, "f").items()})
    row["injected_auc"] = Manifest(m).injected_auc
    cost = cost_of(parent_m, m, strategy) if r and run.name != parent_m["name"] else {}
    row["cost_seconds"] = cost.get("mitigation_seconds")
    row["cost_vs_parent_training"] = cost.get("relative_to_parent_training")
    comp = Manifest(m).comparison.get("subsets") or {}
    for label in ("candidate_kept", "candidate_removed"):
        if label in comp:
            row[f"mean_raw_{label}"] = comp[label]["raw"]
            row[f"parent_raw_{label}"] = comp[label]["parent_raw"]
    mit_m = m.get("mitigation") or {}
    if "removed_injected" in mit_m:
        row["removed_injected"] = mit_m["removed_injected"]
    return row


def write_outputs(root: Path | str, parent: str, strategy: str, runs: list[dict], name: str) -> dict:
    parent_run = Run(root, parent)
    pm = parent_run.manifest()
    members = [(parent_run, None)] + [(Run(root, r["name"]), r) for r in runs if r["name"] != parent]
    missing = [run.name for run, _ in members if run.status() != COMPLETE]
    if missing:
        raise MitigationError(f"runs not complete: {', '.join(missing)}; run the sweep again to resume")
    value_range = summary.shared_range(*(run.scores() for run, _ in members))
    parent_scores = parent_run.scores()
    rows = [_row(run, pm, r, strategy, value_range, parent_scores) for run, r in members]
    # values equal to the parent's setting appear as the parent's row, once per series that asked for them
    for r in runs:
        if r["name"] == parent:
            rows.append({**rows[0], "strategy": strategy, "series": r["series"], "value": r["value"]})
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["relative_change_candidate"] = (table["mean_raw_candidate"] - base["mean_raw_candidate"]) / abs(
        base["mean_raw_candidate"])
    if "f_mean_R@5" in table:
        table["change_f_mean_R@5"] = table["f_mean_R@5"] - base["f_mean_R@5"]
    table["value"] = table["value"].astype(object)
    out = sweep_dir(root, name)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table.csv", index=False)
    atomic_parquet(table.assign(value=table["value"].astype(str)), out / "table.parquet")
    fig = figure(table, strategy, parent)
    fig.write_html(out / "plot.html", include_plotlyjs=True)
    paths = {"table_csv": str(out / "table.csv"), "table_parquet": str(out / "table.parquet"),
             "plot_html": str(out / "plot.html")}
    try:
        fig.write_image(out / "plot.png", width=1100, height=450)
        paths["plot_png"] = str(out / "plot.png")
    except Exception:  # kaleido (and a browser) not installed: the HTML and the table are the outputs
        pass
    atomic_write_json(out / "sweep.json", {"parent": parent, "strategy": strategy, "shared_range": value_range,
                                           "runs": [r["name"] for r in runs],
                                           "values": [json.loads(json.dumps(r["value"])) for r in runs],
                                           "series": [r["series"] for r in runs], "outputs": paths})
    return paths


def figure(table: pd.DataFrame, strategy: str, parent: str):
    """Left: mean memorization on S_C (shared range) against f's retrieval; right: both against the value."""
    from plotly.subplots import make_subplots

    st = get(strategy)
    x_label = next(x.label for x in st.settings() if x.name == st.swept)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "memorization vs utility", f"memorization and utility vs {x_label}"), specs=[[{}, {"secondary_y": True}]])
    base = table.iloc[0]
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    series = [s for s in table["series"].unique() if s != "baseline"]
    for i, s in enumerate(series):
        t = table[table["series"] == s].copy()
        t["_order"] = [_numeric(v) for v in t["value"]]
        t = t.sort_values("_order", kind="stable")
        c = colours[i % len(colours)]
        labels = ["all" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:g}" if isinstance(v, (int, float))
                  else str(v) for v in t["value"]]
        # captions per image is categorical ('all' has no number); the other values are numbers
        t["_x"] = labels if strategy == "captions" else t["_order"]
        # 95% intervals of each run's mean (samples, and replicas when any); hollow markers: change within noise
        bars = dict(type="data", symmetric=False, array=t["ci_high_shared_candidate"] - t["mean_shared_candidate"],
                    arrayminus=t["mean_shared_candidate"] - t["ci_low_shared_candidate"], thickness=1)
        symbols = ["circle-open" if w else "circle" for w in t["change_within_noise"]]
        fig.add_scatter(x=t["f_mean_R@5"], y=t["mean_shared_candidate"], mode="lines+markers+text", text=labels,
                        textposition="top center", name=str(s), line=dict(color=c), error_y=bars,
                        marker=dict(symbol=symbols, size=9), row=1, col=1)
        fig.add_scatter(x=t["_x"], y=t["mean_shared_candidate"], mode="lines+markers", name=f"{s}: memorization",
                        line=dict(color=c), error_y=bars, marker=dict(symbol=symbols, size=9), row=1, col=2,
                        showlegend=False)
        fig.add_scatter(x=t["_x"], y=t["f_mean_R@5"], mode="lines+markers", name=f"{s}: f mean R@5",
                        line=dict(color=c, dash="dot"), row=1, col=2, secondary_y=True, showlegend=False)
    fig.add_scatter(x=[base["f_mean_R@5"]], y=[base["mean_shared_candidate"]], mode="markers+text", text=[parent],
                    textposition="bottom center", marker=dict(symbol="star", size=14, color="black"),
                    name=f"baseline {parent}", row=1, col=1)
    fig.update_xaxes(title_text="f retrieval on S_E: mean R@5 (image→text, text→image)", row=1, col=1)
    fig.update_yaxes(title_text="mean MultiMem on S_C (raw / one shared range)", row=1, col=1)
    fig.update_xaxes(title_text=x_label, row=1, col=2)
    fig.update_yaxes(title_text="mean MultiMem on S_C (solid)", row=1, col=2)
    fig.update_yaxes(title_text="f mean R@5 (dotted)", row=1, col=2, secondary_y=True)
    fig.update_layout(height=450, width=1100, title=f"{strategy} sweep from {parent}: memorization compared on one "
                                                    f"range shared by all runs (bars: 95% intervals; hollow: change "
                                                    f"from the baseline within noise)",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def _numeric(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("inf")  # 'all' captions (None) sorts last
