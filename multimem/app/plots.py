"""The Overview's plotly figures, built from the few numbers app.figures computes (a figure never sends every
score): subset histograms, per-label boxes, SSLMem per encoder, the injected pairs' ROC curve."""
from __future__ import annotations

import html
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from multimem.app.columns import SUBSET_LABELS
from multimem.app.figures import histogram
from multimem.data.splits import CANDIDATE, INDEPENDENT, SHARED

COLOURS = {CANDIDATE: "#d62728", INDEPENDENT: "#1f77b4", SHARED: "#7f7f7f"}
ENCODER_COLOURS = ("#9467bd", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2")  # one per modality, in table order


def subset_histograms(values_by_subset: Mapping[str, np.ndarray], scored: np.ndarray) -> go.Figure:
    """Overlaid histograms of the normalised score per subset, on the bins of the whole scored set."""
    fig = go.Figure()
    for subset, values in values_by_subset.items():
        if len(values):
            x, counts, width = histogram(values, 40, float(scored.min()), float(scored.max()))
            fig.add_bar(x=x, y=counts, width=width, name=SUBSET_LABELS[subset], marker_color=COLOURS[subset],
                        opacity=0.55)
    fig.update_layout(barmode="overlay", height=340, margin=dict(t=10, b=40), yaxis_title="pairs",
                      xaxis_title="MultiMem (normalised by the run's range)", legend=dict(orientation="h", y=1.08))
    return fig


def label_boxes(by_label: pd.DataFrame, labels_shown: Sequence[str], links: Mapping[str, str],
                counts: Mapping[tuple[str, str], int]) -> go.Figure:
    """S_C beside S_S per label (figures.label_stats), each label's tick a link to its pairs in Browse."""
    box = go.Figure()
    for subset in (CANDIDATE, SHARED):
        part = by_label[by_label["subset"] == subset]
        if part.empty:
            continue
        box.add_trace(go.Box(
            x=part["label"].tolist(), q1=part["q1"].tolist(), median=part["median"].tolist(),
            q3=part["q3"].tolist(), lowerfence=part["min"].tolist(), upperfence=part["max"].tolist(),
            mean=part["mean"].tolist(), name=SUBSET_LABELS[subset], marker_color=COLOURS[subset],
            boxpoints=False))
    box.update_layout(
        boxmode="group", height=380, margin=dict(t=10, b=10), yaxis_title="raw MultiMem (CMC_f − CMC_g)",
        legend=dict(orientation="h", y=1.1),
        # fixedrange: no drag handle over the tick labels, so a click on a label follows its link
        xaxis=dict(fixedrange=True, tickmode="array", tickvals=list(labels_shown), categoryorder="array",
                   categoryarray=list(labels_shown),
                   ticktext=[f'<a href="{html.escape(links[lab])}" target="_self">{html.escape(lab)}</a>'
                             f"<br>{counts.get((lab, CANDIDATE), 0)} / {counts.get((lab, SHARED), 0)}"
                             for lab in labels_shown]))
    box.add_hline(y=0, line=dict(dash="dot", color="#666"))
    return box


def encoder_bars(means_by_subset: pd.DataFrame, encoders: Sequence[str]) -> go.Figure:
    """Mean SSLMem per subset, one bar per encoder (modality)."""
    enc = go.Figure()
    for i, col in enumerate(encoders):
        enc.add_bar(x=[SUBSET_LABELS[s] for s in means_by_subset.index], y=means_by_subset[col],
                    name=col.replace("sslmem_", ""), marker_color=ENCODER_COLOURS[i % len(ENCODER_COLOURS)])
    enc.update_layout(barmode="group", height=260, margin=dict(t=10, b=30), yaxis_title="mean SSLMem",
                      legend=dict(orientation="h", y=1.12))
    return enc


def roc(fpr: np.ndarray, tpr: np.ndarray, auc: float) -> go.Figure:
    """The ROC curve of the score ranking the injected pairs, against chance."""
    fig = go.Figure()
    fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"MultiMem (AUC {auc:.3f})", line=dict(color="#d62728"))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="#999"))
    fig.update_layout(height=320, margin=dict(t=10, b=40), xaxis_title="false positive rate",
                      yaxis_title="true positive rate", legend=dict(orientation="h", y=1.1))
    return fig
