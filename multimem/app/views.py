"""The view in the URL: query parameters parsed and validated into typed views with defaults, and back into links.

A link holds the page, the run(s), the sample id and the filters; a value a link gets wrong is replaced by its
default with a message that quotes it through `plain` (shown as typed, never as Markdown).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence
from urllib.parse import urlencode

import pandas as pd

from multimem.app.columns import COLUMNS, INJECTED, PER_PAGE, SCORE_FILTERS, SCORED_SUBSETS
from multimem.app.region import Region
from multimem.store.runs import RunError, check_name
from multimem.data.splits import CANDIDATE

PAGES = ("overview", "browse", "sample", "compare", "runs")

ECHO_LIMIT = 80  # characters of a link's value repeated in a message
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~$:^&@])")  # inline Markdown (and Streamlit's :directives:, $math$)
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def plain(value: Any, limit: int | None = ECHO_LIMIT) -> str:
    """`value` (from a link, a dataset or a manifest) as Markdown that Streamlit shows literally, on one line.

    The one rule for echoing a user's text into st.markdown, st.caption, st.title, st.warning and the like: line
    breaks and control characters become spaces, text longer than `limit` characters is cut with an ellipsis, and
    every character Markdown reads as syntax is backslash-escaped, so a link, an image, emphasis, HTML, math, a
    bare URL or a colour directive shows as the characters it is made of."""
    text = _CONTROL.sub(" ", str(value)).strip()
    if limit is not None and len(text) > limit:
        text = text[:limit].rstrip() + "…"
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = re.sub(r"(?i)\b(www)\.", r"\1\\.", text)  # a bare www.host would become a link
    if text.startswith(("-", "+", "=")):
        return "\\" + text
    return re.sub(r"^(\d+)([.)])", r"\1\\\2", text)


Params = Mapping[str, "str | Sequence[str]"]


def _all(params: Params, key: str) -> list[str]:
    """Every value of a parameter (repeated keys allowed), as strings."""
    v = params.get(key)
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def _one(params: Params, key: str) -> str | None:
    values = _all(params, key)
    return values[-1] if values else None


def _float(params: Params, key: str, default: float, problems: list[str], lo: float, hi: float) -> float:
    raw = _one(params, key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"'{key}={plain(raw)}' is not a number; using {default:g}")
        return default
    if not math.isfinite(value):
        problems.append(f"'{key}={plain(raw)}' is not a finite number; using {default:g}")
        return default
    return min(hi, max(lo, value))


def _int(params: Params, key: str, default: int, problems: list[str], lo: int = 1) -> int:
    raw = _one(params, key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"'{key}={plain(raw)}' is not a whole number; using {default}")
        return default
    return max(lo, value)


def _choice(params: Params, key: str, choices: Sequence[str], default: str, problems: list[str]) -> str:
    raw = _one(params, key)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        problems.append(f"'{key}={plain(raw)}' is not one of {plain(', '.join(choices), None)}; using {default}")
        return default
    return raw


def parse_run_name(value: str | None, known: Sequence[str], problems: list[str],
                   unscored: Mapping[str, tuple[str, str | None]] | None = None) -> str | None:
    """A run name from a link: valid as a name and present among `known` runs, else None with a message.

    `unscored`: runs that exist but cannot be shown, as name -> (status, error): the message says why and what to
    do instead of saying that the run does not exist."""
    if value is None or value == "":
        return None
    try:
        check_name(value)
    except RunError:
        problems.append(f"the link names a run '{plain(value)}', which is not a valid run name")
        return None
    if value not in known:
        if unscored and value in unscored:
            problems.append(unscored_note(value, *unscored[value]))
        else:
            problems.append(f"the link names run '{plain(value)}', which does not exist here")
        return None
    return value


def unscored_note(name: str, status: str, error: str | None = None) -> str:
    """Why a run that exists has nothing to show yet, and what to do about it."""
    run = f"run '{plain(name)}'"
    if status == "failed":
        why = f": {plain(error, 300)}" if error else ""
        return (f"{run} failed before it was scored{why}; fix the cause and run the same command again to resume "
                "it, or open the Runs page for its log")
    if status == "running":
        return f"{run} is still running and has no scores yet; open the Runs page to follow its progress"
    if status == "incomplete":
        return (f"{run} stopped before it was scored (incomplete); run the same command again to resume it, or "
                "open the Runs page")
    return f"{run} has no scores yet (status {plain(status)}); open the Runs page"


def parse_page(value: str | None) -> str | None:
    return value if value in PAGES else None


@dataclass(frozen=True)
class BrowseView:
    subsets: tuple[str, ...] = (CANDIDATE,)
    lo: float = -1.0  # normalised score range
    hi: float = 1.0
    labels: tuple[str, ...] = ()
    text: str = ""
    injected: str = "any"
    sort: str = "multimem"
    order: str = "desc"
    page: int = 1
    per_page: int = 24
    x: str = "cmc_g"
    y: str = "cmc_f"
    region: Region | None = None
    score: str = "multimem"  # the column lo..hi filters, on the normalised scale (score_values)
    list: str = ""  # a curation list of the run (multimem.curation): tags go into it
    only: bool = False  # show only the pairs of `list`


def parse_browse(params: Params, labels: Sequence[str] = (),
                 columns: Mapping[str, str] | None = None) -> tuple[BrowseView, list[str]]:
    """The Browse view a link asks for, every value validated; problems say what was replaced by a default.

    `columns`: the sortable columns of the run's table (columns_for), COLUMNS when not given."""
    d, problems = BrowseView(), []
    columns = dict(columns or COLUMNS)
    subsets = tuple(s for s in _all(params, "subset") if s in SCORED_SUBSETS)
    bad = [s for s in _all(params, "subset") if s not in SCORED_SUBSETS]
    if bad:
        problems.append(f"unknown subset {plain(', '.join(bad))}; subsets are {', '.join(SCORED_SUBSETS)}")
    lo = _float(params, "lo", d.lo, problems, -1.0, 1.0)
    hi = _float(params, "hi", d.hi, problems, -1.0, 1.0)
    if lo > hi:
        problems.append(f"score range {lo:g}..{hi:g} is empty; showing all scores")
        lo, hi = d.lo, d.hi
    wanted = _all(params, "label")
    known = [lab for lab in wanted if lab in set(labels)]
    if len(known) < len(wanted):
        problems.append(f"unknown label {plain(', '.join(lab for lab in wanted if lab not in set(labels)))}; ignored")
    text = (_one(params, "q") or "")[:200]
    region = None
    if _one(params, "sel"):
        try:
            region = Region.from_param(_one(params, "sel"))
        except ValueError as exc:
            problems.append(f"scatter selection ignored ({plain(exc, 2 * ECHO_LIMIT)})")
    view = BrowseView(
        subsets=subsets or d.subsets,
        lo=lo,
        hi=hi,
        labels=tuple(known),
        text=text,
        injected=_choice(params, "injected", INJECTED, d.injected, problems),
        sort=_choice(params, "sort", [*columns, "id"], d.sort, problems),
        order=_choice(params, "order", ("desc", "asc"), d.order, problems),
        page=_int(params, "p", d.page, problems),
        per_page=int(_choice(params, "n", [str(n) for n in PER_PAGE], str(d.per_page), problems)),
        x=_choice(params, "x", list(columns), d.x, problems),
        y=_choice(params, "y", list(columns), d.y, problems),
        region=region,
        score=_choice(params, "score", [c for c in SCORE_FILTERS if c in columns], d.score, problems),
        list=_list_name(_one(params, "list"), problems),
        only=_one(params, "only") in ("1", "yes", "true"),
    )
    return view, problems


def _list_name(value: str | None, problems: list[str]) -> str:
    if not value:
        return ""
    try:
        return check_name(value)
    except RunError:
        problems.append(f"'list={plain(value)}' is not a valid list name; showing every pair")
        return ""


def browse_params(view: BrowseView) -> dict[str, str | list[str]]:
    """Query parameters of a view: only what differs from the defaults, so links stay short."""
    d, out = BrowseView(), {}
    if view.subsets != d.subsets:
        out["subset"] = list(view.subsets)
    for key, value, default in (("lo", view.lo, d.lo), ("hi", view.hi, d.hi)):
        if value != default:
            out[key] = f"{value:g}"
    if view.labels:
        out["label"] = list(view.labels)
    if view.text:
        out["q"] = view.text
    for key, value, default in (("injected", view.injected, d.injected), ("sort", view.sort, d.sort),
                                ("order", view.order, d.order), ("x", view.x, d.x), ("y", view.y, d.y)):
        if value != default:
            out[key] = value
    if view.page != d.page:
        out["p"] = str(view.page)
    if view.per_page != d.per_page:
        out["n"] = str(view.per_page)
    if view.region is not None:
        out["sel"] = view.region.to_param()
    if view.score != d.score:
        out["score"] = view.score
    if view.list:
        out["list"] = view.list
    if view.list and view.only:
        out["only"] = "1"
    return out


def parse_sample_id(value: str | None, ids: pd.Index, problems: list[str]) -> str | None:
    """A sample id from a link, looked up in the run's table (ids are never used as paths)."""
    if value is None or value == "":
        return None
    if value not in ids:
        problems.append(f"the link names sample '{plain(value)}', which is not in this run")
        return None
    return value


NEIGHBOURS = 8  # per neighbour view on the Sample page; the slider allows 4..24 in steps of 4


def parse_k(params: Params, problems: list[str]) -> int:
    k = _int(params, "k", NEIGHBOURS, problems)
    if k > 24 or k % 4:
        problems.append(f"'k={k}' neighbours is not one of 4, 8, ..., 24; using {NEIGHBOURS}")
        return NEIGHBOURS
    return k


def link(page: str, params: Mapping[str, str | Sequence[str]], base: str = "") -> str:
    """A link to a page with its view: `page` is also a parameter, so the link works from the app root too."""
    path = "" if page == PAGES[0] else page
    query = urlencode({"page": page, **params}, doseq=True)
    return f"{base.rstrip('/')}/{path}?{query}" if base else f"./{path}?{query}"


# every parameter of a Browse view (browse_params): a Sample link that carries any of them names a Browse order
BROWSE_KEYS = ("subset", "lo", "hi", "label", "q", "injected", "sort", "order", "p", "n", "x", "y", "sel", "score",
               "list", "only")


def order_params(view: BrowseView) -> dict[str, str | list[str]]:
    """The parameters of a Browse view that fix its rows and their order (all but the page): a Sample link that
    carries them lets the Sample page step through the same pairs in the same order."""
    return {k: v for k, v in browse_params(view).items() if k != "p"}

