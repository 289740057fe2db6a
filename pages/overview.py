"""Overview: how much the run's f memorized, the score distributions, why (breakdowns), utility, settings."""
import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from multimem import app_cache, app_ui, explore
from multimem.splits import CANDIDATE, INDEPENDENT, SHARED

COLOURS = {CANDIDATE: "#d62728", INDEPENDENT: "#1f77b4", SHARED: "#7f7f7f"}

name = app_ui.page_run(title="MultiMem Explorer")

m = app_cache.manifest(name)
table = app_cache.scores(name)
injected = app_cache.has_injected(name)  # injection is mentioned only for a run that has injected samples
app_ui.write_view("overview", {})

head, share = st.columns([5, 1])
head.title(f"Run {name}")
with share:
    app_ui.share("overview", {})
ds, model, lineage = m.get("dataset") or {}, m.get("model") or {}, m.get("lineage") or {}
P = explore.plain
st.caption(
    f"{P((ds.get('source') or {}).get('kind', '?'), None)} data, {P(ds.get('n_samples', '?'))} samples · model "
    f"{P(model.get('name', '?'), None)} · status {P(app_cache.status(name))}"
    + (f" · derived from {P(lineage['parent'], None)} ({P(lineage.get('mitigation'), None)})"
       if lineage.get("parent") else "")
)

skipped = ds.get("skipped") or {}
if skipped.get("count"):
    st.warning(f"{skipped['count']} samples of the dataset were unusable and skipped (not in any subset).",
               icon=":material/warning:")
    with st.expander("The first skipped samples"):
        st.dataframe(pd.DataFrame(skipped.get("examples") or []), hide_index=True, width="stretch")

# ---- headline figures
summary = m.get("summary") or {}
means = summary.get("mean_multimem") or {}
raw_means = summary.get("mean_multimem_raw") or {}
st.subheader("How much did f memorize?")
cols = st.columns(3)
for col, subset, note in zip(cols, (CANDIDATE, INDEPENDENT, SHARED),
                             ("f trained on these, g did not: the memorization figure",
                              "g trained on these, f did not: expected negative",
                              "both trained on these: expected about 0")):
    col.metric(f"Mean MultiMem on {explore.SUBSET_LABELS[subset]}", app_ui.fmt(means.get(subset), signed=True),
               help=f"{note}. Normalised by the run's range; raw mean {app_ui.fmt(raw_means.get(subset), 5, True)}.")

utility = m.get("utility") or {}
if utility.get("f") and utility.get("g"):
    keys = [k for k in utility["f"] if "R@" in k or k == "zero_shot_top1"]
    util = pd.DataFrame({tag: [utility[tag].get(k) for k in keys] for tag in ("f", "g")},
                        index=[k.replace("_", " ") for k in keys])
    st.markdown(f"**Utility on S_E** ({P(utility['f'].get('n', '?'))} held-out pairs; zero-shot prompt "
                f"'{P(utility.get('prompt_template', '?'), None)}')")
    c1, c2 = st.columns([2, 3])
    c1.dataframe(util.style.format("{:.3f}"), width="stretch")
    c2.caption("Recall@K: share of held-out images whose own caption ranks in the top K (and the reverse). "
               "Memorization in contrastive models tends to come with worse, not better, utility (METHOD.md §4).")

# ---- distributions as in the paper
st.subheader("Normalised MultiMem by subset")
fig = go.Figure()
scored = table["multimem"].to_numpy(float)
for subset in (CANDIDATE, INDEPENDENT, SHARED):
    values = app_cache.subset_values(name, subset)
    if len(values):
        x, counts, width = explore.histogram(values, 40, float(scored.min()), float(scored.max()))
        fig.add_bar(x=x, y=counts, width=width, name=explore.SUBSET_LABELS[subset], marker_color=COLOURS[subset],
                    opacity=0.55)
fig.update_layout(barmode="overlay", height=340, margin=dict(t=10, b=40), yaxis_title="pairs",
                  xaxis_title="MultiMem (normalised by the run's range)", legend=dict(orientation="h", y=1.08))
st.plotly_chart(fig, width="stretch")
norm = (m.get("metric") or {}).get("normalisation") or {}
st.caption(f"Raw scores CMC_f − CMC_g divided by their range over the scored set ({app_ui.fmt(norm.get('range'), 5)}; "
           f"min {app_ui.fmt(norm.get('min'), 5)}, max {app_ui.fmt(norm.get('max'), 5)}).")

# ---- breakdowns
st.subheader("Why: breakdowns")
left, right = st.columns(2)
terms = ["own_f", "held_f", "cmc_f", "own_g", "held_g", "cmc_g"]
means_by_subset = table.groupby("subset")[terms + ["sslmem_image", "sslmem_text", "cos_f", "cos_g"]].mean()
means_by_subset = means_by_subset.reindex([s for s in (CANDIDATE, INDEPENDENT, SHARED) if s in means_by_subset.index])
with left:
    st.markdown("**CMC terms of f and g** (mean per subset): own-alignment of the pair's modalities, "
                "its similarity to the held-out set H, and CMC = own − held.")
    cmc = means_by_subset[terms].rename(index=explore.SUBSET_LABELS)
    st.dataframe(cmc.style.format("{:.4f}"), width="stretch")
    st.caption("f saw S_C and S_S, g saw S_I and S_S: a memorized pair has own_f well above own_g.")
with right:
    st.markdown("**Per encoder (SSLMem)**: L(g, x) − L(f, x), the distance between two augmented views by one "
                "encoder alone; positive where f's encoder is more stable on the sample than g's.")
    enc = go.Figure()
    for col, colour in (("sslmem_image", "#9467bd"), ("sslmem_text", "#ff7f0e")):
        enc.add_bar(x=[explore.SUBSET_LABELS[s] for s in means_by_subset.index], y=means_by_subset[col],
                    name=col.replace("sslmem_", ""), marker_color=colour)
    enc.update_layout(barmode="group", height=260, margin=dict(t=10, b=30), yaxis_title="mean SSLMem",
                      legend=dict(orientation="h", y=1.12))
    st.plotly_chart(enc, width="stretch")

# ---- injected mis-captions
cand = table[table["subset"] == CANDIDATE]
if injected and cand["injected"].any() and not cand["injected"].all():
    st.subheader("Does the score find the injected mis-captions?")
    fpr, tpr, auc = explore.roc_curve(cand["injected"], cand["multimem_raw"])
    pk = explore.precision_at_k(cand["injected"], cand["multimem_raw"],
                                explore.default_ks(len(cand), int(cand["injected"].sum())))
    c1, c2 = st.columns(2)
    roc = go.Figure()
    roc.add_scatter(x=fpr, y=tpr, mode="lines", name=f"MultiMem (AUC {auc:.3f})", line=dict(color="#d62728"))
    roc.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="#999"))
    roc.update_layout(height=320, margin=dict(t=10, b=40), xaxis_title="false positive rate",
                      yaxis_title="true positive rate", legend=dict(orientation="h", y=1.1))
    c1.plotly_chart(roc, width="stretch")
    share_injected = float(cand["injected"].mean())
    c2.metric("ROC-AUC (candidates)", f"{auc:.3f}", help="Chance is 0.5")
    precision = pd.DataFrame({"top k by score": list(pk), "precision": list(pk.values())})
    c2.dataframe(precision.style.format({"precision": "{:.3f}"}), hide_index=True, width="stretch")
    c2.caption(f"{int(cand['injected'].sum())} of {len(cand)} candidates had their caption swapped on purpose "
               f"(base rate {share_injected:.3f}). Precision at k: injected share among the k highest scores.")

# ---- training curves
hist = app_cache.history(name)
if not hist.empty:
    st.subheader("Training curves")
    curves = go.Figure()
    for tag, colour in (("f", "#d62728"), ("g", "#1f77b4")):
        h = hist[hist["model"] == tag]
        curves.add_scatter(x=h["step"], y=h["loss"], mode="lines", name=f"{tag} loss", line=dict(color=colour))
    curves.update_layout(height=280, margin=dict(t=10, b=40), xaxis_title="step", yaxis_title="contrastive loss",
                         legend=dict(orientation="h", y=1.1))
    st.plotly_chart(curves, width="stretch")

# ---- settings
with st.expander("Run settings"):
    split, metric = (m.get("split") or {}).get("sizes") or {}, m.get("metric") or {}
    st.markdown(
        f"- **Split** (seed {(m.get('split') or {}).get('seed', '?')}): "
        + ", ".join(f"{explore.SUBSET_LABELS.get(k, k)} {v}" for k, v in split.items())
        + f"\n- **Metric**: A = {metric.get('augmentations', '?')} views, |H| = {metric.get('heldout_size', '?')}, "
        f"text views: {metric.get('text_augmentation', '?')}"
        + (f"\n- **Injected mis-captions**: {P(ds.get('n_injected', 0))} "
           f"(fraction {P(ds.get('inject_fraction', 0))})" if injected else "")
        + f"\n- **Skipped samples**: {(ds.get('skipped') or {}).get('count', 0)}"
    )
    st.json(json.loads(json.dumps({k: m.get(k) for k in ("config", "timings", "versions", "lineage")})), expanded=False)

app_ui.attribution(m)
