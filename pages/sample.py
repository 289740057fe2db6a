"""Sample: one pair in detail, every score and CMC term for f and g, and its nearest training neighbours."""
import numpy as np
import pandas as pd
import streamlit as st

from multimem import modalities, summary
from multimem.app import cache, curation, explain, select, ui, views
from multimem.app.columns import SUBSET_LABELS, SUBSET_SHORT, columns_for, sorts_for
from multimem.app.views import BrowseView, plain

def browse_order(name: str, table: pd.DataFrame, query: dict, problems: list[str]) -> tuple[BrowseView, str]:
    """The Browse view the pair was opened from (its filters and order travel in the link), else this session's
    last Browse view of this run, else Browse's default; and which of those it is ("browse" or "default")."""
    labels = sorted(table["label"].dropna().astype(str).unique()) if "label" in table else []
    from_link = any(key in query for key in views.BROWSE_KEYS)
    last_browse = st.session_state.get("_url_browse") or {}
    if from_link:
        order_view, order_problems = views.parse_browse(query, labels, columns_for(table))
        problems += order_problems
    elif last_browse.get("run") == [name]:
        order_view, _ = views.parse_browse(last_browse, labels, columns_for(table))
    else:
        order_view = BrowseView()
    return order_view, "browse" if from_link or last_browse.get("run") == [name] else "default"


def picker_section(table: pd.DataFrame, samples: pd.DataFrame, rows_in_order: pd.DataFrame, wanted: str | None,
                   k_wanted: int, order: dict) -> str:
    """The title and the pair picker (the first 100 pairs of the Browse order, plus the pair the link asked for);
    puts the view in the URL. Returns the sample id shown."""
    top = rows_in_order["id"].head(100).astype(str).tolist()
    if not top:
        top = table[table["subset"] == "candidate"].nlargest(100, "multimem")["id"].tolist()
    default = wanted or (top[0] if top else str(table["id"].iloc[0]))
    ui.seed("sample", {"s_id": default, "s_k": k_wanted})
    if st.session_state["s_id"] not in samples.index:
        st.session_state["s_id"] = default
    options = list(dict.fromkeys([st.session_state["s_id"], *top]))
    captions = samples["caption"]

    head, pick, share_col = st.columns([4, 2, 1])
    pick.selectbox("Pair", options, key="s_id", format_func=lambda i: f"{captions.get(i, i)} ({i})",
                   help="The first 100 pairs in the Browse order; open any other pair from Browse or a neighbour")
    sid = st.session_state["s_id"]
    params = {"id": sid, "k": str(st.session_state["s_k"]) if st.session_state["s_k"] != views.NEIGHBOURS else None,
              **order}
    ui.write_view("sample", params)
    with share_col:
        ui.share("sample", params)
    sample = samples.loc[sid]
    if bool(sample.get("injected")):  # its caption is the wrong one on purpose: the title names the sample instead
        head.title(f"Sample {plain(sid, None)}")
        head.caption(f"Caption (swapped in on purpose): {plain(sample['caption'], None)}")
    else:
        head.title(plain(sample["caption"], None))  # a dataset's caption shows as typed, never as Markdown
    return sid


def step_to(other: str) -> None:
    st.session_state["s_id"] = other


def stepper_section(name: str, table: pd.DataFrame, rows_in_order: pd.DataFrame, sid: str, order_view: BrowseView,
                    order_source: str) -> None:
    """Previous / next in the Browse order, where this pair stands in it, and the way back to Browse."""
    where = select.position_in(rows_in_order, sid, order_view.per_page)
    filtered = (order_view.lo > -1 or order_view.hi < 1 or order_view.labels or order_view.text
                or order_view.injected != "any" or order_view.region is not None)
    described = (f"{', '.join(SUBSET_SHORT[x] for x in order_view.subsets)} by "
                 f"{sorts_for(table).get(order_view.sort, order_view.sort)}, "
                 f"{'highest' if order_view.order == 'desc' else 'lowest'} first" + (", filtered" if filtered else "")
                 + (f", only list {plain(order_view.list, None)}" if order_view.only else ""))
    n1, n2, n3, n4 = st.columns([1, 3, 1, 1.4], vertical_alignment="center")
    n1.button("Previous", on_click=step_to, args=(where["previous"] if where else None,),
              disabled=not where or where["previous"] is None, icon=":material/chevron_left:", key="s_prev",
              width="stretch")
    n3.button("Next", on_click=step_to, args=(where["next"] if where else None,),
              disabled=not where or where["next"] is None, icon=":material/chevron_right:", key="s_next",
              width="stretch")
    whose = {"browse": "your Browse view", "default": "Browse's default view"}[order_source]
    if where:
        n2.caption(f"Pair **{where['position']:,}** of {where['count']:,} in {whose} ({described}).")
        back = {"run": name, **views.order_params(order_view),
                **({"p": str(where["page"])} if where["page"] > 1 else {})}
    else:
        n2.caption(f"This pair is not among the {len(rows_in_order):,} pairs of {whose} ({described}); previous / "
                   "next are off.")
        back = {"run": name, **views.order_params(order_view)}
    n4.markdown(f"[:material/grid_view: Back to Browse]({views.link('browse', back)})")


def pair_section(name: str, table: pd.DataFrame, sample: pd.Series, sid: str, scored: pd.Series | None) -> None:
    """The image enlarged, its subset, label and captions, and, when it was scored, its scores."""
    img_col, info_col = st.columns([1, 2], gap="large")
    with img_col:
        try:
            st.image(cache.large_image(str(sample["image_ref"])), caption=f"sample {plain(sid, None)}", width=320)
        except Exception as exc:  # a moved or unreadable image file must not break the page
            st.warning(f"The image cannot be shown ({type(exc).__name__}).")
    with info_col:
        label = sample.get("label")
        st.markdown(f"**Subset:** {plain(SUBSET_LABELS.get(sample['subset'], sample['subset']), None)} · "
                    f"**Label:** {plain(label, None) if isinstance(label, str) else '–'}")
        st.markdown("**Captions**\n" + "\n".join(f"{i + 1}. {plain(c, None)}"
                                                  for i, c in enumerate(sample["captions"])))
        if bool(sample.get("injected")):
            st.error(f"Injected mis-caption: this caption was swapped in on purpose. The image's own caption is "
                     f"'{plain(sample.get('original_caption'), None)}'.", icon=":material/swap_horiz:")
        if scored is None:
            st.info("This pair is not in the scored set (only S_C, S_I and a sample of S_S are scored); its "
                    "neighbours are still shown below.", icon=":material/info:")
        else:
            scores_section(name, table, scored)


def scores_section(name: str, table: pd.DataFrame, scored: pd.Series) -> None:
    """The pair's normalised and raw score (± its standard error over replicas), its percentile in its subset, its
    calibrated scores, what they mean in words, and the CMC terms of f and g."""
    manifest = cache.manifest(name)
    subset_name = SUBSET_LABELS[scored["subset"]]
    same = table[table["subset"] == scored["subset"]]["multimem"]
    pct = float((same < scored["multimem"]).mean() * 100)
    norm = (manifest.get("metric") or {}).get("normalisation") or {}
    value_range = norm.get("range") or summary.shared_range(table)
    se = scored.get("multimem_se")
    se = float(se) if se is not None and np.isfinite(float(se)) else None
    k = int((manifest.get("metric") or {}).get("replicas") or 1)
    calibrated = explain.calibrated_row(table, scored)
    c1, c2 = st.columns(2)
    c1.metric("MultiMem (normalised)", f"{scored['multimem']:+.3f}"
              + (f" ± {se / value_range:.3f}" if se is not None else ""),
              help="Raw score / the run's range" + ("; ± one standard error over the replicas" if se else ""))
    c2.metric("MultiMem (raw)", f"{scored['multimem_raw']:+.5f}" + (f" ± {se:.5f}" if se is not None else ""),
              help="CMC_f − CMC_g, the paper's score" + ("; ± one standard error over the replicas" if se else ""))
    cols = st.columns(3)
    cols[0].metric(f"Percentile in {subset_name.split()[0]}", f"{pct:.0f}",
                   help=f"Share of {subset_name} that score lower than this pair")
    for col, (label, (value, what)) in zip(cols[1:], calibrated.items()):
        col.metric(label, f"{value:+.5f}", help=what)
    words = [f"This pair scores higher than **{pct:.0f}%** of {subset_name}. MultiMem measures how much better f "
             "aligns this image with its caption than g does: **0 means f and g agree**, positive means f aligns "
             "it better (f trained on it and g did not: memorized), negative means g does."]
    if se is not None:
        near = abs(float(scored["multimem_raw"])) <= 2 * se
        words.append(f"± is one standard error over the run's {k} replicas (seeds of f and g)"
                     + (": this score is within two standard errors of 0, so the replicas do not agree that f and "
                        "g differ on it." if near else
                        ": the score is more than two standard errors from 0."))
    if calibrated:
        words.append("The calibrated scores subtract the run's model-level offset (the mean score of the S_S "
                     "sample, which both models trained on)" + (" and, per label, that label's S_S mean"
                                                                if len(calibrated) > 1 else "")
                     + ": they rank pairs without the offset (README, *Scores that hold up*).")
    st.markdown(" ".join(words))
    terms = pd.DataFrame(
        {
            "f": [scored["cmc_f"], scored["own_f"], scored["held_f"], scored["cos_f"]],
            "g": [scored["cmc_g"], scored["own_g"], scored["held_g"], scored["cos_g"]],
        },
        index=["CMC = own − held", "own: ½E‖φ_image + φ_text‖²", "held: similarity to H",
               "image-text cosine (clean)"],
    )
    terms["f − g"] = terms["f"] - terms["g"]
    st.dataframe(terms.style.format("{:+.5f}"), width="stretch")
    encoders = [(m, scored[modalities.sslmem_column(m)]) for m in modalities.of(manifest.get("config"))
                if modalities.sslmem_column(m) in scored]
    st.caption("SSLMem (per encoder, L(g) − L(f)): " + ", ".join(f"{m} {v:+.4f}" for m, v in encoders) + ".")


def neighbours_section(name: str, samples: pd.DataFrame, by_row: pd.DataFrame, sample: pd.Series, row: int,
                       scored: pd.Series | None) -> None:
    """f's nearest training neighbours of the pair, one tab per kind of lookup, and the sentence built from them."""
    index = cache.neighbours(name)
    st.subheader("Nearest training neighbours (f's FAISS indices)")
    if index is None:
        st.info("This run has no neighbour index yet (its index stage has not run).")
        st.stop()
    manifest = cache.manifest(name)
    names = modalities.of(manifest.get("config"))
    tabs = explain.neighbour_tabs(names)
    st.caption(explain.index_note(manifest.get("index")))
    st.slider("Neighbours per view", 4, 24, key="s_k", step=4)
    k = st.session_state["s_k"]
    found = {kind: index.search(row, kind, k) for kind in tabs}
    tight = [m for m in names if explain.collapsed([sim for _, sim in found[m]])]
    if tight:
        lowest = min(sim for kind in tight for _, sim in found[kind])
        st.warning(f"f's neighbourhood is nearly collapsed: all {k} nearest training "
                   + " and ".join(modalities.TABLE[m].plural for m in tight)
                   + f" are at cosine {lowest:.3f} or more to this pair. f barely tells samples apart (the model is "
                   "weakly trained), so these neighbours, and the sentence built from them, mean little. Train longer "
                   "or a larger model to read neighbours.", icon=":material/blur_on:")
    if scored is not None:
        image_nbr_caps = [list(samples["captions"].iloc[r]) for r, _ in found.get("image", [])]
        st.info(explain.explain({**sample.to_dict(), **scored.to_dict()}, image_nbr_caps), icon=":material/lightbulb:")

    for tab, (kind, (title, what)) in zip(st.tabs([title for title, _ in tabs.values()]), tabs.items()):
        with tab:
            st.caption(f"{what}. Similarity is f's cosine; the score is the neighbour's own MultiMem where it was "
                       "scored.")
            cards = []
            for r, sim in found[kind]:
                nb = samples.iloc[r]
                nb_scored = by_row.loc[r] if r in by_row.index else None
                cards.append(ui.sample_card(
                    name, nb.to_dict(), score=None if nb_scored is None else float(nb_scored["multimem"]),
                    lines=[f"similarity {sim:.4f}", SUBSET_LABELS.get(nb["subset"], nb["subset"])
                           + ("" if nb_scored is not None else " · not scored")],
                ))
            ui.grid(cards)


name = ui.page_run()
samples = cache.samples(name)
table = cache.scores(name)
by_row = cache.scores_by_row(name)
problems: list[str] = []
query = ui.page_query("sample")
wanted = views.parse_sample_id((query.get("id") or [None])[-1], samples.index, problems)
k_wanted = views.parse_k(query, problems)
order_view, order_source = browse_order(name, table, query, problems)
ui.show_problems(problems)
rows_in_order = select.select(table, order_view, cache.scores_search_text(name) if order_view.text else None)
if order_view.only:  # Browse shows only the pairs of its curation list
    rows_in_order = curation.filtered(rows_in_order, curation.list_ids(name, order_view.list))

sid = picker_section(table, samples, rows_in_order, wanted, k_wanted,
                     views.order_params(order_view) if order_source != "default" else {})
row = int(samples.index.get_loc(sid))
scored = by_row.loc[row] if row in by_row.index else None
stepper_section(name, table, rows_in_order, sid, order_view, order_source)
pair_section(name, table, samples.loc[sid], sid, scored)
neighbours_section(name, samples, by_row, samples.loc[sid], row, scored)
ui.attribution(cache.manifest(name))
