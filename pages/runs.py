"""Runs: every run with status and headline figures, new runs as background jobs, scoring one pair on demand."""
import pandas as pd
import streamlit as st

from multimem import jobs
from multimem.store import review_mode
from multimem.app import cache, strategy_form, ui
from multimem.app.views import link, plain
from multimem.data.images import ImageError, decode
from multimem.store.runs import RunError
from multimem.errors import DataError
from multimem.mitigation import base as strategies


def flag(name: str) -> None:
    st.session_state[name] = True


def header_section() -> None:
    head, share_col = st.columns([5, 1])
    head.title("Runs")
    if review_mode.readonly():
        st.info(review_mode.NOTE, icon=":material/visibility:")
    with share_col:
        ui.share("runs", {})


def run_list_section(table) -> None:
    """Every run with its status and headline figures; a selected row opens its run's Overview."""
    for note in cache.skipped_runs():  # a folder that is not a usable run never hides the others
        st.warning(f"Skipped {plain(note, 300)}", icon=":material/folder_off:")
    if table.empty:
        ui.no_runs()
        return
    # empty cells, not "None", where a run has no parent or no figure yet
    shown = table.assign(**{c: table[c].fillna("") for c in ("model", "parent", "dataset") if c in table})
    number = st.column_config.NumberColumn
    columns = {
        "name": st.column_config.TextColumn("run"), "status": st.column_config.TextColumn("status"),
        "model": st.column_config.TextColumn("model"), "parent": st.column_config.TextColumn("derived from"),
        "mean_candidate": number("mean S_C", format="%+.3f"), "mean_independent": number("mean S_I", format="%+.3f"),
        "mean_shared": number("mean S_S", format="%+.3f"), "injected_auc": number("injected AUC", format="%.3f"),
        "f_i2t_R@5": number("f i→t R@5", format="%.3f"), "g_i2t_R@5": number("g i→t R@5", format="%.3f"),
    }
    columns = {c: v for c, v in columns.items() if c in shown.columns}
    # a row opens its run's Overview in this tab (a link column would open a new tab and a new session)
    picked = st.dataframe(shown[list(columns)], hide_index=True, width="stretch", column_config=columns,
                          on_select="rerun", selection_mode="single-row", key="runs_table").selection.rows
    st.caption("Select a row to open its run's Overview.")
    if picked and shown.iloc[picked[0]]["name"] in cache.scored_runs():
        del st.session_state["runs_table"]  # coming back to this page must not open the run again
        st.switch_page("pages/overview.py", query_params={"page": "overview", "run": shown.iloc[picked[0]]["name"]})


def job_names() -> list[str]:
    """Jobs this server started, and runs that are running or failed (started here or from the CLI), running
    ones first; failed ones dismissed in this session are left out."""
    now = cache.run_table()
    listed = now.loc[now["status"].isin(["running", "failed"]), "name"].tolist() if not now.empty else []
    return list(dict.fromkeys([*cache.jobs(), *listed]))


def dismiss(name: str) -> None:
    st.session_state.setdefault("_dismissed", set()).add(name)


def cancel(name: str, force: bool) -> None:
    try:
        sent = jobs.cancel(cache.runs_root(), name, cache.jobs().get(name), force=force)
    except RunError as exc:
        st.session_state["_job_note"] = (name, str(exc))
        return
    st.session_state.setdefault("_cancelling", set()).add(name)
    st.session_state["_job_note"] = (name, ("Stopping: the run is marked incomplete, and the same command resumes "
                                            "it." if sent else "The job had already ended."))


def job_panel() -> None:
    """Jobs: live progress of running ones (first), the error of failed ones, each with its command and log."""
    root = cache.runs_root()
    procs = cache.jobs()
    dismissed = st.session_state.get("_dismissed", set())
    states = {}
    for name in job_names():
        proc = procs.get(name)
        states[name] = jobs.state(root, name, None if proc is None else proc.poll())
    names = sorted((n for n in states if not (states[n]["status"] == "failed" and n in dismissed)),
                   key=lambda n: jobs.STATUS_ORDER.get(states[n]["status"], 9))  # stable: running first
    if names:
        st.subheader("Jobs")
    live = set()
    seen = st.session_state.setdefault("_progress_seen", {})
    note = st.session_state.pop("_job_note", None)
    for name in names:
        state = states[name]
        with st.container(border=True):
            head, act = st.columns([5, 1], vertical_alignment="center")
            head.markdown(f"**{name}**: {state['status']}")
            if state["status"] in ("starting", "running"):
                live.add(name)
                stage, fraction, text = jobs.describe(state)
                progress = state.get("progress") or {}
                key = (name, progress.get("stage"))
                if progress.get("total") and progress.get("time"):
                    obs = seen.setdefault(key, [])
                    point = (float(progress["time"]), int(progress.get("done", 0)))
                    if not obs or obs[-1] != point:
                        obs.append(point)
                        del obs[:-30]
                    left = jobs.eta_text(jobs.eta(obs, int(progress["total"])))
                    text += f" · {left}" if left else ""
                st.progress(fraction, text=text)
                forcing = name in st.session_state.get("_cancelling", set())
                act.button("Stop now" if forcing else "Cancel", key=f"cancel_{name}", icon=":material/stop_circle:",
                           on_click=cancel, args=(name, forcing), disabled=review_mode.readonly(),
                           help=("Stops the job with SIGTERM (the run stays resumable)" if forcing else
                                 "Stops the job (Ctrl-C): the run is marked incomplete; the same command resumes it"))
            if state["status"] == "complete":
                links = [f"[Open its overview]({link('overview', {'run': name})})"]
                parent = (cache.manifest(name).get("lineage") or {}).get("parent")
                if parent:  # a mitigated run: before and after on one scale
                    links.append(f"[Compare with its parent {parent}]"
                                 f"({link('compare', {'run': name, 'vs': parent})})")
                st.markdown(" · ".join(links))
            if state["status"] == "failed":
                st.error(f"Failed: {plain(state['error'], None)}", icon=":material/error:")
                act.button("Dismiss", key=f"dismiss_{name}", icon=":material/close:", on_click=dismiss, args=(name,),
                           help="Hide this card for this session (the run folder stays; run its command again to "
                                "resume it)")
            if note and note[0] == name:
                st.caption(plain(note[1], None))
            argv = jobs.info(root, name).get("argv")
            if isinstance(argv, list) and argv:
                st.caption("Command (resumes the run when run again):")
                st.code(jobs.shell_command(argv), language="bash", wrap_lines=True)
            log = jobs.log_tail(root, name)
            if log:
                with st.expander("Log", expanded=state["status"] == "failed"):
                    st.code(log, language=None)
    ended = st.session_state.get("_live_jobs", set()) - live
    st.session_state["_live_jobs"] = live
    if ended:  # a job just ended: the whole page again, so that the list and the run picker show its run
        st.session_state["_cancelling"] = st.session_state.get("_cancelling", set()) - ended
        st.rerun()


def new_run_section() -> None:
    """Start a new run as a background job, after the CLI's own checks."""
    root = cache.runs_root()
    st.subheader("Start a new run")
    with st.form("new_run"):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Run name", placeholder="letters, digits, . _ -")
        source = c1.selectbox("Dataset source", jobs.SOURCES, help="twemoji: the embedded demo data")
        path = c1.text_input("Path (CSV/TSV, tar shards or COCO JSON)", help="Not needed for twemoji")
        cols = c1.text_input("CSV columns: image, caption[, label]", placeholder="filepath, title",
                             help="CSV/TSV only: the image path column, the caption column and optionally a label "
                                  "column")
        limit = c1.number_input("Twemoji: first N emoji (0 = all)", 0, 10_000, 400, step=100)
        fast = c2.checkbox("Start from the fast preset", value=True, help="tiny model, 2 epochs, A = 2")
        models = jobs.shipped_models()
        model = c2.selectbox("Model config", models, index=models.index("mm-tiny") if "mm-tiny" in models else 0)
        epochs = c2.number_input("Epochs", 1, 500, 2)
        batch = c2.number_input("Batch size", 8, 4096, 64, step=8)
        seed = c2.number_input("Seed", 0, 10_000, 0)
        candidate = c3.number_input("|S_C| = |S_I| (count, or fraction < 1)", 0.0, 1e6, 60.0, format="%g")
        extra = c3.number_input("|S_E| (count, or fraction < 1)", 0.0, 1e6, 80.0, format="%g")
        inject = c3.number_input("Injected mis-caption fraction", 0.0, 0.5, None, step=0.01, placeholder="default",
                                 help="Empty: 0.05 on the embedded Twemoji set, 0 on your own data (your captions are "
                                      "never changed unless you set this)")
        augs = c3.number_input("A: augmentations per sample", 1, 64, 2)
        held = c3.number_input("|H|: held-out samples", 1, 100_000, 80)
        # actions are flagged by callbacks (they run before the script), so a rerun cannot lose the click
        st.form_submit_button("Start run", type="primary", icon=":material/play_arrow:", on_click=flag,
                              args=("_start_run",), disabled=review_mode.readonly(), key="run_start")
    if st.session_state.pop("_start_run", False):
        try:
            req = jobs.JobRequest(
                name=name.strip(), source=source, path=path.strip() or None,
                limit=(int(limit) or None) if source == "twemoji" else None,
                fast=fast, model=model, candidate=candidate, extra=extra, epochs=int(epochs), batch_size=int(batch),
                augmentations=int(augs), heldout_size=int(held), inject=inject, seed=int(seed),
                **jobs.csv_columns(cols if source == "csv" else ""),
            )
            with st.spinner("Checking the settings and reading the data…"):
                found = jobs.validate(req, root)  # the CLI's own checks: nothing starts (or is written) if one fails
            cache.jobs()[req.name] = jobs.start(req, root)
        except (DataError, OSError) as exc:  # RunError is a DataError
            st.error(f"Not started: {plain(exc, None)}", icon=":material/error:")
        else:
            st.success(f"Started run {req.name} ({found.text()}); its progress appears above.",
                       icon=":material/rocket_launch:")
            st.caption("Command (paste it into a shell to run or resume the same run):")
            st.code(jobs.shell_command(jobs.command(req, root)), language="bash", wrap_lines=True)


def mitigation_section(table) -> None:
    """Derive a run from a complete one with any registered strategy."""
    st.subheader("Mitigate a run")
    complete = table.loc[table["status"] == "complete", "name"].tolist() if not table.empty else []
    if not complete:
        st.caption("Needs a complete run.")
        return
    # on_change="rerun": the form is drawn only once it is opened; it stays open for the rest of the session
    names = list(strategies.strategies())
    box = st.expander(f"Derive a run from a complete one: {', '.join(names[:-1])} or {names[-1]} (docs/mitigation.md)",
                      key="mit_open", on_change="rerun", icon=":material/healing:")
    if box.open:
        with box:
            strategy_form.mitigation_form(complete)


def jobs_section(table) -> None:
    """The jobs panel, refreshed every two seconds while something runs."""
    active = any(p.poll() is None for p in cache.jobs().values()) or (
        not table.empty and (table["status"] == "running").any())
    st.fragment(job_panel, run_every=2 if active else None)()  # polls the manifests only while something runs


def score_pair_section() -> None:
    """Score an uploaded image and caption with the sidebar run's f and g, on the run's own scale."""
    st.subheader("Score your own pair")
    run = ui.current_run()
    if not run:
        st.caption("Needs a scored run.")
        return
    st.caption(f"Against run **{run}**'s f and g (the sidebar's run), with its own A views, held-out set H and "
               "normalisation range, so the score sits on the same scale as the run's table.")
    with st.form("score_pair"):
        upload = st.file_uploader("Image", type=["png", "jpg", "jpeg", "webp", "gif", "bmp"],
                                  disabled=review_mode.readonly())
        caption = st.text_input("Caption", max_chars=300, disabled=review_mode.readonly())
        st.form_submit_button("Score", icon=":material/calculate:", on_click=flag, args=("_score_pair",),
                              disabled=review_mode.readonly())
    if st.session_state.pop("_score_pair", False) and not review_mode.readonly():
        if upload is None or not caption.strip():
            st.warning("Give an image and a caption.")
        else:
            try:
                image = decode(upload.getvalue(), upload.name)
                with st.spinner("Scoring with f and g…"):
                    result = cache.scorer(run).score(image, [caption.strip()])
            except (ImageError, ValueError, OSError) as exc:  # DataError is a ValueError: e.g. no checkpoints
                st.error(str(exc))
            else:
                cand = cache.subset_values(run, "candidate")
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
                st.caption("Neither f nor g trained on this pair, so a score near the S_I/S_S values is expected; a "
                           "pair close to a memorized training pair can score higher.")


ui.through_app()
ui.show_problems(ui.link_problems())
ui.write_view("runs", {})
header_section()
table = cache.run_table()
run_list_section(table)
jobs_slot = st.container()  # filled below, after this run's Start buttons, so that a job just started shows
new_run_section()
mitigation_section(table)
with jobs_slot:
    jobs_section(table)
score_pair_section()
