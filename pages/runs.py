"""Runs: every run with status and headline figures, new runs as background jobs, scoring one pair on demand."""
import pandas as pd
import streamlit as st

from multimem import app_cache, app_ui, explore, jobs
from multimem.images import ImageError, decode
from multimem.runs import RunError

app_ui.through_app()
app_ui.show_problems(app_ui.link_problems())
app_ui.write_view("runs", {})
root = app_cache.runs_root()
head, share_col = st.columns([5, 1])
head.title("Runs")
with share_col:
    app_ui.share("runs", {})

def flag(name: str) -> None:
    st.session_state[name] = True


# ---- the list
table = app_cache.run_table()
if table.empty:
    app_ui.no_runs()
else:
    shown = table.assign(open=[explore.link("overview", {"run": n}) for n in table["name"]])
    number = st.column_config.NumberColumn
    columns = {
        "name": st.column_config.TextColumn("run"), "status": st.column_config.TextColumn("status"),
        "model": st.column_config.TextColumn("model"), "parent": st.column_config.TextColumn("derived from"),
        "mean_candidate": number("mean S_C", format="%+.3f"), "mean_independent": number("mean S_I", format="%+.3f"),
        "mean_shared": number("mean S_S", format="%+.3f"), "injected_auc": number("injected AUC", format="%.3f"),
        "f_i2t_R@5": number("f i→t R@5", format="%.3f"), "g_i2t_R@5": number("g i→t R@5", format="%.3f"),
        "open": st.column_config.LinkColumn("overview", display_text="open"),
    }
    columns = {c: v for c, v in columns.items() if c in shown.columns}
    st.dataframe(shown[list(columns)], hide_index=True, width="stretch", column_config=columns)


# ---- jobs: live progress of running ones, the error of failed ones
def job_names() -> list[str]:
    """Jobs this server started, and runs that are running or failed (started here or from the CLI)."""
    now = app_cache.run_table()
    listed = now.loc[now["status"].isin(["running", "failed"]), "name"].tolist() if not now.empty else []
    return list(dict.fromkeys([*app_cache.jobs(), *listed]))


def job_panel() -> None:
    procs = app_cache.jobs()
    names = job_names()
    if not names:
        return
    st.subheader("Jobs")
    for name in names:
        proc = procs.get(name)
        state = jobs.state(root, name, None if proc is None else proc.poll())
        with st.container(border=True):
            st.markdown(f"**{name}**: {state['status']}")
            if state["status"] in ("starting", "running"):
                stage, fraction, text = jobs.describe(state)
                st.progress(fraction, text=text)
            if state["status"] == "complete":
                st.markdown(f"[Open its overview]({explore.link('overview', {'run': name})})")
            if state["status"] == "failed":
                st.error(f"Failed: {state['error']}", icon=":material/error:")
            log = jobs.log_tail(root, name)
            if log:
                with st.expander("Log", expanded=state["status"] == "failed"):
                    st.code(log, language=None)


active = any(p.poll() is None for p in app_cache.jobs().values()) or (
    not table.empty and (table["status"] == "running").any())
st.fragment(job_panel, run_every=2 if active else None)()  # polls the manifests only while something runs

# ---- a new run
st.subheader("Start a new run")
with st.form("new_run"):
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Run name", placeholder="letters, digits, . _ -")
    source = c1.selectbox("Dataset source", jobs.SOURCES, help="twemoji: the embedded demo data")
    path = c1.text_input("Path (CSV/TSV, tar shards or COCO JSON)", help="Not needed for twemoji")
    limit = c1.number_input("Twemoji: first N emoji (0 = all)", 0, 10_000, 400, step=100)
    fast = c2.checkbox("Start from the fast preset", value=True, help="tiny model, 2 epochs, A = 2")
    models = jobs.shipped_models()
    model = c2.selectbox("Model config", models, index=models.index("mm-tiny") if "mm-tiny" in models else 0)
    epochs = c2.number_input("Epochs", 1, 500, 2)
    batch = c2.number_input("Batch size", 8, 4096, 64, step=8)
    seed = c2.number_input("Seed", 0, 10_000, 0)
    candidate = c3.number_input("|S_C| = |S_I| (count, or fraction < 1)", 0.0, 1e6, 60.0, format="%g")
    extra = c3.number_input("|S_E| (count, or fraction < 1)", 0.0, 1e6, 80.0, format="%g")
    inject = c3.number_input("Injected mis-caption fraction", 0.0, 0.5, 0.05, step=0.01)
    augs = c3.number_input("A: augmentations per sample", 1, 64, 2)
    held = c3.number_input("|H|: held-out samples", 1, 100_000, 80)
    # actions are flagged by callbacks (they run before the script), so a rerun cannot lose the click
    st.form_submit_button("Start run", type="primary", icon=":material/play_arrow:", on_click=flag, args=("_start_run",))
if st.session_state.pop("_start_run", False):
    req = jobs.JobRequest(
        name=name.strip(), source=source, path=path.strip() or None,
        limit=(int(limit) or None) if source == "twemoji" else None,
        fast=fast, model=model, candidate=candidate, extra=extra, epochs=int(epochs), batch_size=int(batch),
        augmentations=int(augs), heldout_size=int(held), inject=inject, seed=int(seed),
    )
    try:
        app_cache.jobs()[req.name] = jobs.start(req, root)
        st.success(f"Started run {req.name}; its progress appears above.", icon=":material/rocket_launch:")
        st.caption("Command: `" + " ".join(jobs.command(req, root)[1:]) + "`")
    except (RunError, OSError) as exc:
        st.error(str(exc), icon=":material/error:")

# ---- score one pair on demand
st.subheader("Score your own pair")
run = app_ui.current_run()
if not run:
    st.caption("Needs a scored run.")
    st.stop()
st.caption(f"Against run **{run}**'s f and g (the sidebar's run), with its own A views, held-out set H and "
           "normalisation range, so the score sits on the same scale as the run's table.")
with st.form("score_pair"):
    upload = st.file_uploader("Image", type=["png", "jpg", "jpeg", "webp", "gif", "bmp"])
    caption = st.text_input("Caption", max_chars=300)
    st.form_submit_button("Score", icon=":material/calculate:", on_click=flag, args=("_score_pair",))
if st.session_state.pop("_score_pair", False):
    if upload is None or not caption.strip():
        st.warning("Give an image and a caption.")
    else:
        try:
            image = decode(upload.getvalue(), upload.name)
            with st.spinner("Scoring with f and g…"):
                result = app_cache.scorer(run).score(image, [caption.strip()])
        except (ImageError, ValueError, OSError) as exc:  # DataError is a ValueError: e.g. no checkpoints
            st.error(str(exc))
        else:
            cand = app_cache.subset_values(run, "candidate")
            pct = float((cand < result.multimem).mean() * 100) if len(cand) else float("nan")
            i, m1, m2, m3 = st.columns([1, 1, 1, 1])
            i.image(image, width=160)
            m1.metric("MultiMem (normalised)", f"{result.multimem:+.3f}", help="raw / the run's range")
            m2.metric("MultiMem (raw)", f"{result.multimem_raw:+.5f}")
            m3.metric("Percentile among the run's S_C", f"{pct:.0f}")
            st.dataframe(pd.DataFrame({"f": [result.cmc_f, result.own_f, result.held_f, result.cos_f],
                                       "g": [result.cmc_g, result.own_g, result.held_g, result.cos_g]},
                                      index=["CMC", "own", "held", "image-text cosine"]).style.format("{:+.5f}"),
                         width="stretch")
            st.caption("Neither f nor g trained on this pair, so a score near the S_I/S_S values is expected; a pair "
                       "close to a memorized training pair can score higher.")
