"""Overview: how much the run's f memorized, the score distributions, why (breakdowns), utility, settings."""
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from multimem import modalities, summary
from multimem.app import cache, figures, plots, ui
from multimem.app.columns import SCORED_SUBSETS, SUBSET_LABELS, SUBSET_SHORT
from multimem.app.compare import scaled
from multimem.app.views import link, plain
from multimem.data.splits import CANDIDATE, SHARED
from multimem.summary import Interval

WARNING_HEADS = {"The models differ as a whole": "Model-level offset.",
                 "S_C does not score above S_S": "No signal beyond noise.",
                 "Labels differ more than samples do": "Label effects."}
report_figures: list = []  # the figures of this view, for its report


def chart(fig, where=st) -> None:
    where.plotly_chart(fig, width="stretch")
    report_figures.append(fig)


def interval_of(d) -> Interval | None:
    return Interval.from_dict(d) if isinstance(d, dict) and "estimate" in d else None


def minus(text: str) -> str:
    return text.replace("-", "−")


def header_section(name: str, m: dict):
    """The run's name, data, model, status and parent; samples the dataset skipped. Returns the report's column."""
    head, report_col, share = st.columns([4, 1, 1], vertical_alignment="bottom")
    head.title(f"Run {name}")
    with share:
        ui.share("overview", {})
    ds, model, lineage = m.get("dataset") or {}, m.get("model") or {}, m.get("lineage") or {}
    st.caption(
        f"{plain((ds.get('source') or {}).get('kind', '?'), None)} data, {plain(ds.get('n_samples', '?'))} samples · "
        f"model {plain(model.get('name', '?'), None)} · status {plain(cache.status(name))}"
        + (f" · derived from {plain(lineage['parent'], None)} ({plain(lineage.get('mitigation'), None)})"
           if lineage.get("parent") else "")
    )
    skipped = ds.get("skipped") or {}
    if skipped.get("count"):
        st.warning(f"{skipped['count']} samples of the dataset were unusable and skipped (not in any subset).",
                   icon=":material/warning:")
        with st.expander("The first skipped samples"):
            st.dataframe(pd.DataFrame(skipped.get("examples") or []), hide_index=True, width="stretch")
    return report_col


def memorization_section(m: dict, intervals: dict) -> None:
    """How much did f memorize: the mean score of each subset with its 95% interval."""
    stored = m.get("summary") or {}
    means, raw_means = stored.get("mean_multimem") or {}, stored.get("mean_multimem_raw") or {}
    norm = (m.get("metric") or {}).get("normalisation") or {}
    value_range = norm.get("range") if isinstance(norm.get("range"), (int, float)) and norm.get("range") else None
    replicas = int((intervals.get(CANDIDATE) or {}).get("replicas") or 1)
    st.subheader("How much did f memorize?")
    cols = st.columns(3)
    for col, subset, note in zip(cols, SCORED_SUBSETS,
                                 ("f trained on these, g did not: the memorization figure",
                                  "g trained on these, f did not: expected negative",
                                  "both trained on these: expected about 0")):
        col.metric(f"Mean MultiMem on {SUBSET_LABELS[subset]}", ui.fmt(means.get(subset), signed=True),
                   help=f"{note}. Normalised by the run's range; raw mean {ui.fmt(raw_means.get(subset), 5, True)}.")
        iv = interval_of(intervals.get(subset))
        if iv is not None:
            shown = scaled(iv.to_dict(), value_range) if value_range else iv
            col.caption("95% interval " + minus(f"[{shown.low:+.3f}, {shown.high:+.3f}]")
                        + (" · within noise (covers 0)" if iv.within_noise else "")
                        + ("" if value_range else " (raw)"))
    st.caption("95% bootstrap intervals over the scored samples"
               + (f" and the {replicas} replicas" if replicas > 1 else
                  " (one replica: training noise is not inside them; `--replicas K` adds it)")
               + ". \"Within noise\": the interval covers 0, so the mean cannot be told apart from 0.")


def diagnostics_section(diag: dict, intervals: dict) -> None:
    """How much of the score is signal (README: Scores that hold up): the offset, the gaps, their forest plot and
    the diagnostics' warnings."""
    st.subheader("How much of the score is signal?")
    offset, held = interval_of(diag.get("offset")), diag.get("held_difference")
    gap_cs, gap_si = interval_of(diag.get("gap_candidate_shared")), interval_of(diag.get("gap_shared_independent"))
    d1, d2, d3, d4 = st.columns(4)
    for col, label, iv, what in (
        (d1, "Offset: mean raw on S_S", offset,
         "Both models trained on S_S, so its expected score is 0: a mean away from 0 is a difference between the "
         "models as a whole, inside every score of the run."),
        (d3, "Gap S_C − S_S (raw)", gap_cs,
         "How much more f's own samples score than samples both models saw: the memorization signal."),
        (d4, "Gap S_S − S_I (raw)", gap_si,
         "How much more the shared samples score than g's own samples: g's memorization, mirrored."),
    ):
        col.metric(label, "–" if iv is None else minus(f"{iv.estimate:+.4f}"), help=what)
        if iv is not None:
            col.caption("95% interval " + minus(f"[{iv.low:+.4f}, {iv.high:+.4f}]")
                        + (" · within noise" if iv.within_noise else ""))
    d2.metric("Held-out term held_f − held_g", "–" if held is None else minus(f"{held:+.4f}"),
              help="Mean over the scored samples of the two models' similarity to the held-out set H. A large value "
                   "shifts every score of the run by about the same amount.")
    d2.caption("mean over the scored samples")

    forest = [(f"mean on {SUBSET_SHORT[s]}", interval_of(intervals.get(s))) for s in SCORED_SUBSETS]
    forest += [("gap S_C − S_S", gap_cs), ("gap S_S − S_I", gap_si)]
    forest = [(label, iv) for label, iv in forest if iv is not None and np.isfinite(iv.estimate)]
    if forest:
        fig = go.Figure(go.Scatter(
            x=[iv.estimate for _, iv in forest], y=[label for label, _ in forest], mode="markers",
            marker=dict(size=10, color=["#999" if iv.within_noise else "#d62728" for _, iv in forest]),
            error_x=dict(type="data", symmetric=False, array=[iv.high - iv.estimate for _, iv in forest],
                         arrayminus=[iv.estimate - iv.low for _, iv in forest], thickness=2, width=6,
                         color="#888"),
            hovertemplate="%{y}: %{x:+.5f}<extra></extra>"))
        fig.add_vline(x=0, line=dict(dash="dot", color="#666"))
        fig.update_layout(height=60 + 36 * len(forest), margin=dict(t=10, b=40, l=10, r=10),
                          xaxis_title="raw MultiMem (CMC_f − CMC_g) with its 95% interval",
                          yaxis=dict(autorange="reversed"), showlegend=False)
        chart(fig)
        st.caption("Grey: the interval covers 0 (within noise). The offset is the mean on S_S; the calibrated score "
                   "(`multimem_calibrated`) subtracts it from every score. README, *Scores that hold up*.")
    for w in diag.get("warnings") or []:
        head = next((h for start, h in WARNING_HEADS.items() if str(w).startswith(start)), "Read the scores with care.")
        st.warning(f"**{head}** {plain(w, None)} (README: *Scores that hold up*.)", icon=":material/warning:")


def per_label_section(name: str, table: pd.DataFrame, diag: dict) -> None:
    """Per label: S_C beside S_S as box plots, each label a link to its pairs in Browse."""
    by_label = figures.label_stats(table)
    if by_label.empty:
        return
    st.subheader("Per label: S_C beside S_S")
    labels_shown = list(dict.fromkeys(by_label["label"]))
    n_labels = int(table["label"].nunique())
    links = {lab: link("browse", {"run": name, "label": lab, "subset": [CANDIDATE, SHARED]}) for lab in labels_shown}
    counts = {(lab, sub): int(n) for lab, sub, n in by_label[["label", "subset", "count"]].itertuples(index=False)}
    box = plots.label_boxes(by_label, labels_shown, links, counts)
    chart(box)
    spread = diag.get("label_spread_shared")
    st.caption(
        "Quartiles (box), mean (dashed) and min to max (whiskers) of the raw score per label, with the number of "
        "scored S_C / S_S samples under each label; labels ordered by their S_S mean. S_S should sit near 0 for "
        "every label: labels whose S_S is high or low shift the scores of all their samples, memorized or not"
        + (f" (sd of the S_S means across labels: {spread:.4f})" if isinstance(spread, (int, float)) else "")
        + (f". The {len(labels_shown)} labels with the most scored samples of {n_labels}."
           if n_labels > len(labels_shown) else ".")
        + " Click a label to open its pairs in Browse.")
    st.markdown("**Open a label's pairs in Browse:** " + " · ".join(f"[{plain(lab, 40)}]({links[lab]})"
                                                               for lab in labels_shown))


def utility_section(m: dict) -> None:
    """Retrieval and zero-shot utility of f and g on S_E."""
    utility = m.get("utility") or {}
    if not (utility.get("f") and utility.get("g")):
        return
    keys = [k for k in utility["f"] if "R@" in k or k == "zero_shot_top1"]
    util = pd.DataFrame({tag: [utility[tag].get(k) for k in keys] for tag in ("f", "g")},
                        index=[k.replace("_", " ") for k in keys])
    st.markdown(f"**Utility on S_E** ({plain(utility['f'].get('n', '?'))} held-out pairs; zero-shot prompt "
                f"'{plain(utility.get('prompt_template', '?'), None)}')")
    c1, c2 = st.columns([2, 3])
    c1.dataframe(util.style.format("{:.3f}"), width="stretch")
    c2.caption("Recall@K: share of held-out images whose own caption ranks in the top K (and the reverse). "
               "Memorization in contrastive models tends to come with worse, not better, utility (METHOD.md §4).")


def histograms_section(name: str, m: dict, table: pd.DataFrame) -> None:
    """The normalised score's distribution in each subset, as in the paper."""
    norm = (m.get("metric") or {}).get("normalisation") or {}
    st.subheader("Normalised MultiMem by subset")
    fig = plots.subset_histograms({subset: cache.subset_values(name, subset) for subset in SCORED_SUBSETS},
                                  table["multimem"].to_numpy(float))
    chart(fig)
    st.caption("Raw scores CMC_f − CMC_g divided by their range over the scored set "
               f"({ui.fmt(norm.get('range'), 5)}; min {ui.fmt(norm.get('min'), 5)}, max {ui.fmt(norm.get('max'), 5)}).")


def breakdowns_section(m: dict, table: pd.DataFrame) -> None:
    """Why: the CMC terms of f and g per subset, and SSLMem per encoder (one per modality of the run)."""
    st.subheader("Why: breakdowns")
    left, right = st.columns(2)
    terms = ["own_f", "held_f", "cmc_f", "own_g", "held_g", "cmc_g"]
    encoders = [c for c in map(modalities.sslmem_column, modalities.of(m.get("config"))) if c in table]
    present = [s for s in SCORED_SUBSETS if (table["subset"] == s).any()]
    means_by_subset = pd.DataFrame({c: summary.subset_means(table, c) for c in terms + encoders}).loc[present]
    with left:
        st.markdown("**CMC terms of f and g** (mean per subset): own-alignment of the pair's modalities, "
                    "its similarity to the held-out set H, and CMC = own − held.")
        cmc = means_by_subset[terms].rename_axis("subset").rename(index=SUBSET_LABELS)
        st.dataframe(cmc.style.format("{:.4f}"), width="stretch")
        st.caption("f saw S_C and S_S, g saw S_I and S_S: a memorized pair has own_f well above own_g.")
    with right:
        st.markdown("**Per encoder (SSLMem)**: L(g, x) − L(f, x), the distance between two augmented views by one "
                    "encoder alone; positive where f's encoder is more stable on the sample than g's.")
        enc = plots.encoder_bars(means_by_subset, encoders)
        chart(enc)


def injected_section(m: dict, table: pd.DataFrame) -> None:
    """Does the score find the injected mis-captions: ROC curve, precision at k, and each score's ranking."""
    cand = table[table["subset"] == CANDIDATE]
    if not (cand["injected"].any() and not cand["injected"].all()):
        return
    st.subheader("Does the score find the injected mis-captions?")
    fpr, tpr, auc = summary.roc_curve(cand["injected"], cand["multimem_raw"])
    pk = summary.precision_at_k(cand["injected"], cand["multimem_raw"],
                                figures.default_ks(len(cand), int(cand["injected"].sum())))
    c1, c2 = st.columns(2)
    roc = plots.roc(fpr, tpr, auc)
    chart(roc, c1)
    share_injected = float(cand["injected"].mean())
    c2.metric("ROC-AUC (candidates)", f"{auc:.3f}", help="Chance is 0.5")
    precision = pd.DataFrame({"top k by score": list(pk), "precision": list(pk.values())})
    c2.dataframe(precision.style.format({"precision": "{:.3f}"}), hide_index=True, width="stretch")
    c2.caption(f"{int(cand['injected'].sum())} of {len(cand)} candidates had their caption swapped on purpose "
               f"(base rate {share_injected:.3f}). Precision at k: injected share among the k highest scores.")
    by_score = (m.get("summary") or {}).get("injected_detection")
    if not isinstance(by_score, dict) or not by_score:  # older runs: computed from the scores table
        by_score = summary.detection_by_score(table)
    names = {"multimem_raw": "MultiMem (the paper's score)", "multimem_calibrated": "calibrated (− S_S mean)",
             "multimem_calibrated_label": "calibrated per label (− the label's S_S mean)",
             "cos_f_low": "baseline: f's own image-caption cosine, low first"}
    found = pd.DataFrame([{"score": names.get(c, c), "ROC-AUC": d.get("auc"),
                           "precision at top 5%": d.get("precision_at_top")}
                          for c, d in by_score.items() if isinstance(d, dict)])
    if not found.empty:
        c2.markdown("**Each score's ranking of the injected pairs**")
        c2.dataframe(found.style.format({"ROC-AUC": "{:.3f}", "precision at top 5%": "{:.3f}"}, na_rep="–"),
                     hide_index=True, width="stretch")


def training_curves_section(name: str) -> None:
    """The contrastive loss of f and g over training."""
    hist = cache.history(name)
    if hist.empty:
        return
    st.subheader("Training curves")
    curves = go.Figure()
    for tag, colour in (("f", "#d62728"), ("g", "#1f77b4")):
        h = hist[hist["model"] == tag]
        curves.add_scatter(x=h["step"], y=h["loss"], mode="lines", name=f"{tag} loss", line=dict(color=colour))
    curves.update_layout(height=280, margin=dict(t=10, b=40), xaxis_title="step", yaxis_title="contrastive loss",
                         legend=dict(orientation="h", y=1.1))
    chart(curves)


def settings_section(m: dict, injected: bool) -> None:
    """|H|, replicas and unknown caption tokens in one line; the run's settings in an expander."""
    ds, model = m.get("dataset") or {}, m.get("model") or {}
    metric = m.get("metric") or {}
    used, requested = metric.get("heldout_size"), metric.get("heldout_requested")
    held_text = f"|H| = {used if used is not None else '?'} held-out samples used" + (
        f" ({requested} asked for; S_E holds fewer)" if requested is not None and used is not None and requested != used
        else "")
    replicas_text = (f"{metric['replicas']} (seeds of f and of g; scores average them)" if metric.get("replicas")
                     else "1 (not recorded: scored before replicas existed)")
    unknown = model.get("unknown_tokens") if isinstance(model.get("unknown_tokens"), dict) else None
    if unknown is None:
        vocab_text = "unknown tokens not recorded for this run"
    elif unknown.get("all"):
        vocab_text = (f"{unknown['all']:,} caption tokens are outside the model's vocabulary "
                      f"({unknown.get('extra', 0):,} of them in S_E captions; "
                      f"{unknown.get('captions_with_unknown', 0):,} captions have at least one); "
                      "each became the one unknown id, so the text tower cannot tell those words apart. "
                      "See README, *Vocabulary*: train with `--model mm-small-fullvocab` if the count is large.")
    else:
        vocab_text = "every caption token is in the model's vocabulary"
    st.caption(f"{held_text} · replicas: {metric.get('replicas') or 1} · unknown caption tokens: "
               + (f"{unknown.get('all', 0):,} (README, *Vocabulary*)" if unknown is not None else "not recorded"))

    with st.expander("Run settings"):
        split = (m.get("split") or {}).get("sizes") or {}
        st.markdown(
            f"- **Split** (seed {(m.get('split') or {}).get('seed', '?')}): "
            + ", ".join(f"{SUBSET_LABELS.get(k, k)} {v}" for k, v in split.items())
            + f"\n- **Metric**: A = {metric.get('augmentations', '?')} views, {held_text}, "
            f"text views: {metric.get('text_augmentation', '?')}, replicas: {replicas_text}"
            + f"\n- **Vocabulary**: {vocab_text}"
            + (f"\n- **Injected mis-captions**: {plain(ds.get('n_injected', 0))} "
               f"(fraction {plain(ds.get('inject_fraction', 0))})" if injected else "")
            + f"\n- **Skipped samples**: {(ds.get('skipped') or {}).get('count', 0)}"
        )
        st.json(json.loads(json.dumps({k: m.get(k) for k in ("config", "timings", "versions", "lineage")})),
                expanded=False)


def report_section(where, name: str, table: pd.DataFrame) -> None:
    """"Download report": this view's figures and subset means as one HTML file."""
    means = ", ".join(f"{SUBSET_LABELS[s]} {v:+.3f}" for s, v in summary.subset_means(table).items())
    ui.report_button(where, "overview", {}, f"Overview of run {name}", name, figures=report_figures,
                     notes=[f"Mean normalised MultiMem: {means}."])


name = ui.page_run(title="MultiMem Explorer")
manifest = cache.manifest(name)
table = cache.scores(name)
injected = cache.has_injected(name)  # injection is mentioned only for a run that has injected samples
intervals = cache.subset_intervals(name)  # raw, from the manifest or computed from the scores table
diag = cache.diagnostics(name)
ui.write_view("overview", {})

report_col = header_section(name, manifest)
memorization_section(manifest, intervals)
diagnostics_section(diag, intervals)
per_label_section(name, table, diag)
utility_section(manifest)
histograms_section(name, manifest, table)
breakdowns_section(manifest, table)
if injected:
    injected_section(manifest, table)
training_curves_section(name)
settings_section(manifest, injected)
ui.attribution(manifest)
report_section(report_col, name, table)
