"""MultiMem Explorer: `streamlit run app.py`. Navigation over pages/, the shared run picker, deep links.

Runs are read from $MULTIMEM_RUNS (default runs/). A link holds the page, the run(s), the sample id and the
filters in its query parameters; see multimem/app/ui.py for how pages keep the URL and their widgets in step.
"""
import streamlit as st

from multimem.app import cache, views

st.set_page_config(page_title="MultiMem Explorer", page_icon=":material/psychology:", layout="wide")

PAGES = {
    "overview": st.Page("pages/overview.py", title="Overview", icon=":material/insights:", url_path="overview",
                        default=True),
    "browse": st.Page("pages/browse.py", title="Browse", icon=":material/grid_view:", url_path="browse"),
    "sample": st.Page("pages/sample.py", title="Sample", icon=":material/image_search:", url_path="sample"),
    "compare": st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    "runs": st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs"),
}
STATUS_NOTES = {"incomplete": "stopped before it finished; run the same command again to resume it",
                "running": "a job is still writing it; figures may change"}


def deep_link(current) -> None:
    """A link opened at the app root (or with a page parameter) goes to its page, once per browser session."""
    if st.session_state.get("_opened"):
        return
    st.session_state["_opened"] = True
    wanted = views.parse_page(st.query_params.get("page"))
    if wanted and PAGES[wanted].url_path != current.url_path:
        st.switch_page(PAGES[wanted], query_params={k: st.query_params.get_all(k) for k in st.query_params})


def pick_run() -> list[str]:
    """The run every page shows: the one a link names when the URL changed from outside, else the session's, else
    the first scored run. What the link got wrong goes to the pages as `_link_problems`. Returns the scored runs."""
    problems: list[str] = []
    runs = cache.scored_runs()
    asked = st.query_params.get("run")
    # a run that exists but has nothing to show (failed, still running, stopped early) is named as such
    url_run = views.parse_run_name(asked, runs, problems,
                                   cache.unscored_runs() if asked and asked not in runs else None)
    if url_run and url_run != st.session_state.get("_url_run"):
        st.session_state["run"] = url_run
    if st.session_state.get("run") not in runs:
        st.session_state["run"] = runs[0] if runs else None
    if problems and runs:
        problems[-1] += f"; showing run '{views.plain(st.session_state['run'], None)}' instead"
    st.session_state["_link_problems"] = problems
    return runs


def sidebar_section(runs: list[str]) -> None:
    """The run picker shared by every page, the run's status, and the runs folder with what it skipped."""
    with st.sidebar:
        if runs:
            st.selectbox("Run", runs, key="run", help="The run every page shows (Compare: one of its two runs)")
            status = cache.status(st.session_state["run"])  # as `multimem runs` says it: a killed run is incomplete
            if status != "complete":
                error = cache.manifest(st.session_state["run"]).get("error") if status == "failed" else None
                note = views.plain(error, 200) if error else STATUS_NOTES.get(status)
                st.caption(f"Status: {views.plain(status)}" + (f" ({note})" if note else ""))
        else:
            st.caption("No scored runs yet.")
        skipped = cache.skipped_runs()
        if skipped:  # folders that are not usable runs: named here, while every other run still opens
            st.caption(f":material/folder_off: Skipped {len(skipped)} folder{'s' if len(skipped) > 1 else ''} of "
                       "the runs folder (see the Runs page):\n\n" + "\n\n".join(views.plain(n, 160) for n in skipped))
        st.caption(f"Runs folder: `{cache.runs_root()}`")


def run_page(current) -> None:
    st.session_state["_via_app"] = True  # pages check it: see multimem.app.ui.through_app
    try:
        current.run()
    finally:
        st.session_state["_via_app"] = False


current = st.navigation(list(PAGES.values()))
deep_link(current)
sidebar_section(pick_run())
run_page(current)
