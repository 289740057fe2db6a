"""The Runs page's mitigation form, generated from the strategy registry (multimem.mitigation.base): the
strategies with their one-line summaries, each strategy's settings as fields (main ones first), and Start, which
runs `multimem mitigate` as a job after the same checks the command makes."""
from __future__ import annotations

import streamlit as st

from multimem import jobs, modalities
from multimem.app import cache, ui
from multimem.errors import DataError
from multimem.mitigation import base as strategies
from multimem.store import review_mode


def flag(name: str) -> None:
    st.session_state[name] = True


def setting_field(col, strategy: str, setting, run_modalities: tuple[str, ...]) -> str:
    """One strategy setting as a form field (a choice list where it has one); returns the text entered."""
    key, default = f"mit_{strategy}_{setting.name}", setting.text(setting.default)
    if setting.kind == "modalities":
        options = ["all", *run_modalities]
        chosen = "all" if set(setting.default) >= set(run_modalities) else default
        return col.selectbox(setting.label, options, index=options.index(chosen) if chosen in options else 0,
                             key=key, help=setting.help)
    if setting.kind == "choice":
        return col.selectbox(setting.label, setting.choices, index=setting.choices.index(default), key=key,
                             help=setting.help)
    return col.text_input(setting.label, default, key=key, help=setting.help)


def mitigation_form(complete: list[str]) -> None:
    """The chosen strategy's settings as a form, generated from the strategy registry; Start runs `multimem
    mitigate --from PARENT --strategy ...` as a job, after the same checks the command makes."""
    root = cache.runs_root()
    c1, c2 = st.columns([1, 3])
    current = ui.current_run()
    parent = c1.selectbox("Parent run", complete, index=complete.index(current) if current in complete else 0,
                          key="mit_parent", help="A complete run; the derived run keeps its data, split and settings")
    known = strategies.strategies()
    strategy = c2.radio("Strategy", list(known), key="mit_strategy", captions=[s.summary for s in known.values()])
    settings = sorted(known[strategy].settings(), key=lambda s: not s.main)  # main ones first, four a row
    run_modalities = modalities.of(cache.manifest(parent).get("config"))
    texts = {}
    with st.form("mitigate"):
        for setting, col in zip(settings, [c for _ in range(0, len(settings), 4) for c in st.columns(4)]):
            texts[setting.name] = setting_field(col, strategy, setting, run_modalities)
        name = st.text_input("Run name (optional)", key="mit_name", placeholder="default: PARENT.STRATEGY-SETTINGS")
        st.form_submit_button("Start mitigation", type="primary", icon=":material/play_arrow:", key="mit_start",
                              on_click=flag, args=("_start_mitigation",), disabled=review_mode.readonly())
    if not st.session_state.pop("_start_mitigation", False):
        return
    try:
        review_mode.refuse_if_readonly("start a mitigation")
        values = {s.name: s.parse(texts[s.name], flag=s.label) for s in settings}
        defaults = {s.name: s.default for s in settings}
        if values.get("modalities") is not None and set(values["modalities"]) == set(run_modalities):
            values["modalities"] = defaults["modalities"]  # all of them: the default, as a user would leave it
        options = {k: v for k, v in values.items() if v != defaults[k]}  # the flags a user would type
        new, proc = jobs.start_mitigation(root, parent, strategy, options, name.strip() or None)
    except (DataError, OSError) as exc:  # MitigationError and RunError are DataErrors
        st.error(str(exc), icon=":material/error:")
        return
    cache.jobs()[new] = proc
    st.success(f"Started {new}, a {strategy} mitigation of {parent}; its progress appears under Jobs above.",
               icon=":material/rocket_launch:")
    st.caption("Command (paste it into a shell to run or resume the same run):")
    st.code(jobs.shell_command(jobs.mitigation_command(root, parent, strategy, options, new)), language="bash",
            wrap_lines=True)
