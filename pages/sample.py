"""Sample: one pair in detail, every score and CMC term for f and g, and its nearest training neighbours."""
import pandas as pd
import streamlit as st

from multimem import app_cache, app_ui, explore

NEIGHBOUR_KINDS = {
    "image": ("By image", "training images f finds most similar to this image; their captions show what the data "
                          "says this image is"),
    "text": ("By text", "training captions f finds most similar to this caption, with their images"),
    "image_to_text": ("Image → captions", "training captions f matches to this image (across modalities)"),
    "text_to_image": ("Caption → images", "training images f matches to this caption (across modalities)"),
}

name = app_ui.page_run()

samples = app_cache.samples(name)
table = app_cache.scores(name)
by_row = app_cache.scores_by_row(name)
problems: list[str] = []
query = app_ui.page_query("sample")
wanted = explore.parse_sample_id((query.get("id") or [None])[-1], samples.index, problems)
k_wanted = explore.parse_k(query, problems)
app_ui.show_problems(problems)

# the pair picker: the most memorized candidates, plus the pair the link asked for
top = table[table["subset"] == "candidate"].nlargest(100, "multimem")["id"].tolist()
default = wanted or (top[0] if top else str(table["id"].iloc[0]))
app_ui.seed("sample", {"s_id": default, "s_k": k_wanted})
if st.session_state["s_id"] not in samples.index:
    st.session_state["s_id"] = default
options = list(dict.fromkeys([st.session_state["s_id"], *top]))
captions = samples["caption"]

head, pick, share_col = st.columns([4, 2, 1])
pick.selectbox("Pair", options, key="s_id", format_func=lambda i: f"{captions.get(i, i)} ({i})",
               help="The 100 most memorized candidates; open any other pair from Browse or a neighbour")
sid = st.session_state["s_id"]
sample = samples.loc[sid]
row = int(samples.index.get_loc(sid))
scored = by_row.loc[row] if row in by_row.index else None
params = {"id": sid, "k": str(st.session_state["s_k"]) if st.session_state["s_k"] != explore.NEIGHBOURS else None}
app_ui.write_view("sample", params)
with share_col:
    app_ui.share("sample", params)
head.title(explore.plain(sample["caption"], None))  # a dataset's caption shows as typed, never as Markdown

# ---- the pair
img_col, info_col = st.columns([1, 2], gap="large")
with img_col:
    try:
        st.image(app_cache.large_image(str(sample["image_ref"])), caption=f"sample {explore.plain(sid, None)}",
                 width=320)
    except Exception as exc:  # a moved or unreadable image file must not break the page
        st.warning(f"The image cannot be shown ({type(exc).__name__}).")
with info_col:
    label = sample.get("label")
    st.markdown(f"**Subset:** {explore.plain(explore.SUBSET_LABELS.get(sample['subset'], sample['subset']), None)} · "
                f"**Label:** {explore.plain(label, None) if isinstance(label, str) else '–'}")
    st.markdown("**Captions**\n" + "\n".join(f"{i + 1}. {explore.plain(c, None)}"
                                              for i, c in enumerate(sample["captions"])))
    if bool(sample.get("injected")):
        st.error(f"Injected mis-caption: this caption was swapped in on purpose. The image's own caption is "
                 f"'{explore.plain(sample.get('original_caption'), None)}'.", icon=":material/swap_horiz:")
    if scored is None:
        st.info("This pair is not in the scored set (only S_C, S_I and a sample of S_S are scored); its neighbours "
                "are still shown below.", icon=":material/info:")
    else:
        same = table[table["subset"] == scored["subset"]]["multimem"]
        pct = float((same < scored["multimem"]).mean() * 100)
        c1, c2, c3 = st.columns(3)
        c1.metric("MultiMem (normalised)", f"{scored['multimem']:+.3f}", help="Raw score / the run's range")
        c2.metric("MultiMem (raw)", f"{scored['multimem_raw']:+.5f}", help="CMC_f − CMC_g")
        c3.metric(f"Percentile in {explore.SUBSET_LABELS[scored['subset']].split()[0]}", f"{pct:.0f}")
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
        st.caption(f"SSLMem (per encoder, L(g) − L(f)): image {scored['sslmem_image']:+.4f}, "
                   f"text {scored['sslmem_text']:+.4f}.")

# ---- neighbours
index = app_cache.neighbours(name)
st.subheader("Nearest training neighbours (f's FAISS indices)")
if index is None:
    st.info("This run has no neighbour index yet (its index stage has not run).")
    st.stop()
st.caption(explore.index_note(app_cache.manifest(name).get("index")))
st.slider("Neighbours per view", 4, 24, key="s_k", step=4)
k = st.session_state["s_k"]
found = {kind: index.search(row, kind, k) for kind in NEIGHBOUR_KINDS}
image_nbr_caps = [list(samples["captions"].iloc[r]) for r, _ in found["image"]]
if scored is not None:
    st.info(explore.explain({**sample.to_dict(), **scored.to_dict()}, image_nbr_caps), icon=":material/lightbulb:")

tabs = st.tabs([title for title, _ in NEIGHBOUR_KINDS.values()])
for tab, (kind, (title, what)) in zip(tabs, NEIGHBOUR_KINDS.items()):
    with tab:
        st.caption(f"{what}. Similarity is f's cosine; the score is the neighbour's own MultiMem where it was scored.")
        cards = []
        for r, sim in found[kind]:
            nb = samples.iloc[r]
            nb_scored = by_row.loc[r] if r in by_row.index else None
            cards.append(app_ui.sample_card(
                name, nb.to_dict(), score=None if nb_scored is None else float(nb_scored["multimem"]),
                lines=[f"similarity {sim:.4f}", explore.SUBSET_LABELS.get(nb["subset"], nb["subset"])
                       + ("" if nb_scored is not None else " · not scored")],
            ))
        app_ui.grid(cards)
app_ui.attribution(app_cache.manifest(name))
