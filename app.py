"""MultiMem Explorer: `streamlit run app.py`. Navigation over pages/, the shared run picker, deep links.

Runs are read from $MULTIMEM_RUNS (default runs/). A link holds the page, the run(s), the sample id and the
filters in its query parameters; see multimem/app_ui.py for how pages keep the URL and their widgets in step.
"""
import streamlit as st

from multimem import app_cache, explore

st.set_page_config(page_title="MultiMem Explorer", page_icon=":material/psychology:", layout="wide")

PAGES = {
    "overview": st.Page("pages/overview.py", title="Overview", icon=":material/insights:", url_path="overview",
                        default=True),
    "browse": st.Page("pages/browse.py", title="Browse", icon=":material/grid_view:", url_path="browse"),
    "sample": st.Page("pages/sample.py", title="Sample", icon=":material/image_search:", url_path="sample"),
    "compare": st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    "runs": st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs"),
}
current = st.navigation(list(PAGES.values()))

# A link opened at the app root (or with a page parameter) goes to its page, once per browser session.
if not st.session_state.get("_opened"):
    st.session_state["_opened"] = True
    wanted = explore.parse_page(st.query_params.get("page"))
    if wanted and PAGES[wanted].url_path != current.url_path:
        st.switch_page(PAGES[wanted], query_params={k: st.query_params.get_all(k) for k in st.query_params})

# The run picker shared by every page. A run named by the URL wins when the URL changed from outside.
problems: list[str] = []
runs = app_cache.scored_runs()
asked = st.query_params.get("run")
# a run that exists but has nothing to show (failed, still running, stopped early) is named as such in the message
url_run = explore.parse_run_name(asked, runs, problems,
                                 app_cache.unscored_runs() if asked and asked not in runs else None)
if url_run and url_run != st.session_state.get("_url_run"):
    st.session_state["run"] = url_run
if st.session_state.get("run") not in runs:
    st.session_state["run"] = runs[0] if runs else None
if problems and runs:
    problems[-1] += f"; showing run '{explore.plain(st.session_state['run'], None)}' instead"
st.session_state["_link_problems"] = problems

STATUS_NOTES = {"incomplete": "stopped before it finished; run the same command again to resume it",
                "running": "a job is still writing it; figures may change"}

with st.sidebar:
    if runs:
        st.selectbox("Run", runs, key="run", help="The run every page shows (Compare: one of its two runs)")
        status = app_cache.status(st.session_state["run"])  # as `multimem runs` says it: a killed run is incomplete
        if status != "complete":
            error = app_cache.manifest(st.session_state["run"]).get("error") if status == "failed" else None
            note = explore.plain(error, 200) if error else STATUS_NOTES.get(status)
            st.caption(f"Status: {explore.plain(status)}" + (f" ({note})" if note else ""))
    else:
        st.caption("No scored runs yet.")
    skipped = app_cache.skipped_runs()
    if skipped:  # folders that are not usable runs: named here, while every other run still opens
        st.caption(f":material/folder_off: Skipped {len(skipped)} folder{'s' if len(skipped) > 1 else ''} of the "
                   "runs folder (see the Runs page):\n\n" + "\n\n".join(explore.plain(n, 160) for n in skipped))
    st.caption(f"Runs folder: `{app_cache.runs_root()}`")

st.session_state["_via_app"] = True  # pages check it: see app_ui.through_app
try:
    current.run()
finally:
    st.session_state["_via_app"] = False
