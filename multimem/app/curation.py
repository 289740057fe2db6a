"""Streamlit pieces for curation lists (multimem.curation): the tag toggle on a card, exports, removal from a list.

Any page can tag a pair with `tag_toggle(run, list_name, sample_id, key)`; the writes go through
multimem.curation (atomic, locked, refused in review mode).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from multimem.store import review_mode
from multimem.store import lists
from multimem.app import cache
from multimem.app.views import plain


def list_ids(run: str, name: str) -> list[str]:
    """The list's ids, read from its file at every call (another session may have tagged since)."""
    if not name:
        return []
    try:
        return lists.read_list(cache.runs_root(), run, name)
    except lists.ListError:
        return []


def _toggle(run: str, name: str, sample_id: str, key: str) -> None:
    root = cache.runs_root()
    try:
        if st.session_state.get(key):
            lists.add_to_list(root, run, name, [sample_id])
        else:
            lists.remove_from_list(root, run, name, [sample_id])
    except lists.ListError as exc:  # ReadOnlyError is a RunError, as ListError is
        st.session_state["_tag_error"] = str(exc)


def tag_toggle(run: str, name: str, sample_id: str, tagged: bool, key: str) -> None:
    """A checkbox 'in NAME' that adds the pair to (or takes it off) list NAME of the run; off in review mode."""
    st.session_state[key] = tagged  # the file is the truth: another session may have changed the list
    st.checkbox(f"in {name}", key=key, on_change=_toggle, args=(run, name, sample_id, key),
                disabled=review_mode.readonly(), help=f"Tag this pair into list '{name}' (kept in the run folder)")


def tag_errors() -> None:
    error = st.session_state.pop("_tag_error", None)
    if error:
        st.error(plain(error, None), icon=":material/error:")


def downloads(make, stem: str, key: str, what: str) -> None:
    """CSV and Parquet download buttons for an export table: `make()` builds it (multimem.curation.export_table)
    only when a button is clicked, so a large table costs nothing on every rerun."""
    a, b = st.columns(2)
    tip = f"Download {what}: ids, captions, image references, every score"
    a.download_button("CSV", lambda: lists.to_csv_bytes(make()), file_name=f"{stem}.csv", mime="text/csv",
                      key=f"{key}_csv", icon=":material/download:", on_click="ignore", width="stretch", help=tip)
    b.download_button("Parquet", lambda: lists.to_parquet_bytes(make()), file_name=f"{stem}.parquet",
                      mime="application/octet-stream", key=f"{key}_pq", icon=":material/download:",
                      on_click="ignore", width="stretch", help=tip)


def start_removal(run: str, name: str) -> None:
    """Start `multimem mitigate --strategy removal --ranking ids --ids RUN/lists/NAME.json` as a background job."""
    from multimem import jobs  # torch: only when asked

    root = cache.runs_root()
    try:
        review_mode.refuse_if_readonly("start a removal")
        options = lists.removal_options(root, run, name)
        child = f"{run}.remove-{name}"
        new, proc = jobs.start_mitigation(root, run, "removal", options, child)
    except (lists.ListError, ValueError, OSError) as exc:  # MitigationError, RunError: DataErrors (ValueErrors)
        st.session_state["_removal_note"] = ("error", str(exc), None)
        return
    cache.jobs()[new] = proc
    st.session_state["_removal_note"] = ("ok", f"Started {new}: removes the {options['n']} pairs of list '{name}' "
                                               f"from f's training data and fine-tunes f; follow it on the Runs page.",
                                         jobs.shell_command(jobs.mitigation_command(root, run, "removal", options, new)))


def removal_note() -> None:
    note = st.session_state.pop("_removal_note", None)
    if not note:
        return
    kind, text, command = note
    if kind == "error":
        st.error(f"Not started: {plain(text, None)}", icon=":material/error:")
        return
    st.success(plain(text, None), icon=":material/rocket_launch:")
    st.page_link("pages/runs.py", label="Open the Runs page", icon=":material/list_alt:",
                 query_params={"page": "runs", "run": st.session_state.get("run") or ""})
    st.code(command, language="bash", wrap_lines=True)


def names(run: str) -> list[str]:
    return lists.list_names(cache.runs_root(), run)


def filtered(table: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    return table[table["id"].isin(set(ids))]
