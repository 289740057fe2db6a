"""What the dashboard computes, as pure functions: no Streamlit, no caching, no file writes.

- views in the URL: parse and validate query parameters into typed views with defaults, and back;
- Browse: filter, sort and page a scores table, select a region of a scatter;
- injected mis-captions: ROC curve and precision at k;
- Compare: join two runs on their shared candidates, on raw differences or one shared normalisation range;
- the image grid: readable thumbnails as base64 data URIs inside plain HTML cards;
- why a pair scores as it does: how well its image neighbours' captions agree with its own caption.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from PIL import Image

from multimem.runs import RunError, check_name
from multimem.splits import CANDIDATE, INDEPENDENT, SHARED

SCORED_SUBSETS = (CANDIDATE, INDEPENDENT, SHARED)
SUBSET_SHORT = {CANDIDATE: "S_C", INDEPENDENT: "S_I", SHARED: "S_S", "extra": "S_E"}
SUBSET_LABELS = {CANDIDATE: "S_C candidates", INDEPENDENT: "S_I independent", SHARED: "S_S shared", "extra": "S_E extra"}
PAGES = ("overview", "browse", "sample", "compare", "runs")
# columns a user can sort by or put on a scatter axis, with the words the page shows
COLUMNS = {
    "multimem": "MultiMem (normalised)",
    "multimem_raw": "MultiMem (raw)",
    "cmc_f": "CMC_f",
    "cmc_g": "CMC_g",
    "cos_f": "f image-text cosine",
    "cos_g": "g image-text cosine",
    "sslmem_image": "SSLMem image",
    "sslmem_text": "SSLMem text",
}
SORTS = {**COLUMNS, "id": "sample id"}
# calibrated scores (multimem.summary): sortable, on the scatter and filterable only in a table that has them
CALIBRATED = {"multimem_calibrated": "MultiMem calibrated (raw − S_S mean)",
              "multimem_calibrated_label": "MultiMem calibrated per label (raw − S_S mean of its label)"}
SCORE_FILTERS = ("multimem", *CALIBRATED)  # what the score range filters on (URL `score`)


def columns_for(df: pd.DataFrame | None) -> dict[str, str]:
    """COLUMNS, plus the calibrated scores when the table has them."""
    cols = df.columns if df is not None else ()
    return {**COLUMNS, **{c: t for c, t in CALIBRATED.items() if c in cols}}


def sorts_for(df: pd.DataFrame | None) -> dict[str, str]:
    return {**columns_for(df), "id": "sample id"}


def norm_factor(df: pd.DataFrame) -> float:
    """1 / the run's normalisation range, read off the table (multimem = multimem_raw / range)."""
    raw, norm = df["multimem_raw"].to_numpy(float), df["multimem"].to_numpy(float)
    ok = np.isfinite(raw) & np.isfinite(norm) & (np.abs(raw) > 1e-12)
    return float(np.median(norm[ok] / raw[ok])) if ok.any() else 1.0


def score_values(df: pd.DataFrame, column: str = "multimem") -> np.ndarray:
    """A score column on the normalised scale (raw-unit columns divided by the run's range), for the range filter."""
    if column == "multimem" or column not in df.columns:
        return df["multimem"].to_numpy(float)
    return df[column].to_numpy(float) * norm_factor(df)


def subset_percentiles(table: pd.DataFrame, rows: pd.DataFrame, column: str = "multimem") -> np.ndarray:
    """Each row's percentile (0-100) of `column` among the scored pairs of its own subset in `table`."""
    out = np.full(len(rows), np.nan)
    for subset in rows["subset"].unique():
        ref = np.sort(table.loc[table["subset"] == subset, column].to_numpy(float))
        here = (rows["subset"] == subset).to_numpy()
        if len(ref):
            out[here] = np.searchsorted(ref, rows.loc[here, column].to_numpy(float), side="right") / len(ref) * 100
    return out


def ordinal(n: float) -> str:
    k = int(round(n))
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def colour_range(values: Sequence[float]) -> float:
    """Half-width of a colour scale symmetric around 0 that fits the data (its largest |value|, never 0)."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    top = float(v.max()) if len(v) else 0.0
    return top if top > 0 else 1.0
INJECTED = ("any", "yes", "no")
PER_PAGE = (12, 24, 48, 96)
COMPARE_MODES = {"shared": "one shared normalisation range", "raw": "raw differences (CMC_f − CMC_g)"}


# ---------------------------------------------------------------- text from links and datasets

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


# ---------------------------------------------------------------- query parameters

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
class Region:
    """A box or lasso drawn on the Browse scatter, in data coordinates of the axes x and y."""

    kind: str  # "box" or "lasso"
    xs: tuple[float, ...]  # box: (x0, x1); lasso: the polygon's x coordinates
    ys: tuple[float, ...]

    def to_param(self) -> str:
        nums = [v for pair in zip(self.xs, self.ys) for v in pair]
        return self.kind + ":" + ",".join(f"{v:.5g}" for v in nums)

    @classmethod
    def from_param(cls, text: str) -> "Region":
        kind, _, rest = text.partition(":")
        if kind not in ("box", "lasso"):
            raise ValueError(f"selection kind must be box or lasso, got {kind!r}")
        nums = [float(v) for v in rest.split(",") if v != ""]
        if len(nums) % 2 or not all(math.isfinite(v) for v in nums):
            raise ValueError("selection needs pairs of finite numbers")
        xs, ys = tuple(nums[0::2]), tuple(nums[1::2])
        if (kind == "box" and len(xs) != 2) or (kind == "lasso" and not 3 <= len(xs) <= 200):
            raise ValueError("a box needs 2 corners, a lasso 3 to 200 points")
        return cls(kind, xs, ys)

    @classmethod
    def from_plotly(cls, selection: Mapping[str, Any]) -> "Region | None":
        """The last box or lasso of a plotly selection event (st.plotly_chart(on_select=...)), or None."""
        for lasso in reversed(selection.get("lasso") or []):
            xs, ys = lasso.get("x") or [], lasso.get("y") or []
            if len(xs) >= 3:
                step = max(1, math.ceil(len(xs) / 120))  # keeps links short; a hand-drawn lasso has many points
                return cls("lasso", tuple(float(v) for v in xs[::step]), tuple(float(v) for v in ys[::step]))
        for box in reversed(selection.get("box") or []):
            xs, ys = box.get("x") or [], box.get("y") or []
            if len(xs) >= 2 and len(ys) >= 2:
                return cls("box", (float(min(xs)), float(max(xs))), (float(min(ys)), float(max(ys))))
        return None

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if self.kind == "box":
            return (x >= self.xs[0]) & (x <= self.xs[1]) & (y >= self.ys[0]) & (y <= self.ys[1])
        return points_in_polygon(x, y, np.asarray(self.xs), np.asarray(self.ys))


def points_in_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over the points (loop over the polygon's edges only)."""
    inside = np.zeros(len(x), dtype=bool)
    j = len(px) - 1
    for i in range(len(px)):
        crosses = (py[i] > y) != (py[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]
        inside ^= crosses & (x < x_cross)
        j = i
    return inside


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


# ---------------------------------------------------------------- Browse

def search_text(df: pd.DataFrame) -> pd.Series:
    """Lower-case text of all captions of each row, for the caption search."""
    if "captions" in df.columns:
        return df["captions"].map(lambda cs: " | ".join(str(c) for c in cs).lower() if cs is not None else "")
    return df["caption"].astype(str).str.lower()


def filter_mask(df: pd.DataFrame, view: BrowseView, text: pd.Series | None = None) -> np.ndarray:
    """Rows matching every filter of the view (the scatter region included)."""
    # combined with `&`, never in place: pandas may hand out read-only arrays
    mask = df["subset"].isin(view.subsets).to_numpy(dtype=bool)
    score = score_values(df, view.score)
    if view.lo > -1.0:
        mask = mask & (score >= view.lo)
    if view.hi < 1.0:
        mask = mask & (score <= view.hi)
    if view.labels:
        mask = mask & df["label"].isin(view.labels).to_numpy()
    if view.injected != "any":
        mask = mask & (df["injected"].to_numpy(dtype=bool) == (view.injected == "yes"))
    if view.text:
        haystack = text if text is not None else search_text(df)
        mask = mask & haystack.str.contains(view.text.lower(), regex=False).to_numpy(dtype=bool)
    if view.region is not None:
        mask = mask & view.region.contains(df[view.x].to_numpy(), df[view.y].to_numpy())
    return mask


def sort_rows(df: pd.DataFrame, sort: str, order: str) -> pd.DataFrame:
    """Stable sort, ties broken by id so that a page always shows the same pairs."""
    if sort == "id":
        return df.sort_values("id", ascending=order == "asc", kind="stable")
    return df.sort_values([sort, "id"], ascending=[order == "asc", True], kind="stable")


def select(df: pd.DataFrame, view: BrowseView, text: pd.Series | None = None) -> pd.DataFrame:
    """Filtered and sorted rows of the view (all pages)."""
    return sort_rows(df[filter_mask(df, view, text)], view.sort, view.order)


def page_of(rows: pd.DataFrame, page: int, per_page: int) -> tuple[pd.DataFrame, int, int]:
    """One page of rows; the page number is clamped to 1..last. Returns rows, page, number of pages."""
    pages = max(1, math.ceil(len(rows) / per_page))
    page = min(max(1, page), pages)
    return rows.iloc[(page - 1) * per_page : page * per_page], page, pages


# every parameter of a Browse view (browse_params): a Sample link that carries any of them names a Browse order
BROWSE_KEYS = ("subset", "lo", "hi", "label", "q", "injected", "sort", "order", "p", "n", "x", "y", "sel", "score",
               "list", "only")


def order_params(view: BrowseView) -> dict[str, str | list[str]]:
    """The parameters of a Browse view that fix its rows and their order (all but the page): a Sample link that
    carries them lets the Sample page step through the same pairs in the same order."""
    return {k: v for k, v in browse_params(view).items() if k != "p"}


def position_in(rows: pd.DataFrame, sid: str, per_page: int = BrowseView.per_page) -> dict[str, Any] | None:
    """Where sample `sid` stands in Browse's selected rows: its 1-based position, the count, the previous and next
    ids (None at the ends) and the Browse page that shows it; None when the view does not hold it."""
    ids = rows["id"].astype(str).to_numpy()
    hits = np.flatnonzero(ids == str(sid))
    if not len(hits):
        return None
    i = int(hits[0])
    return {"position": i + 1, "count": len(ids), "previous": ids[i - 1] if i > 0 else None,
            "next": ids[i + 1] if i + 1 < len(ids) else None, "page": i // per_page + 1}


def scatter_sample(rows: pd.DataFrame, limit: int = 3000, seed: int = 0) -> pd.DataFrame:
    """At most `limit` points for the scatter (seeded); the region still filters every row, not just these."""
    if len(rows) <= limit:
        return rows
    return rows.sample(n=limit, random_state=seed)


# ---------------------------------------------------------------- injected mis-captions

def has_injected(manifest: Mapping[str, Any], table: pd.DataFrame | None = None) -> bool:
    """Whether a run has injected mis-captions: the manifest counts some (dataset.n_injected > 0) or the scores
    table flags some. Pages mention injection (filters, badges, ROC figures) only then."""
    dataset = manifest.get("dataset") if isinstance(manifest, Mapping) else None
    count = dataset.get("n_injected") if isinstance(dataset, Mapping) else None
    try:
        if count is not None and float(count) > 0:
            return True
    except (TypeError, ValueError):
        pass
    if table is None or "injected" not in table.columns:
        return False
    return bool(table["injected"].fillna(False).astype(bool).any())


def roc_curve(labels: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """False and true positive rates at every distinct threshold (ties grouped), and the area under the curve."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("the ROC curve needs both injected and clean samples")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    fpr = np.r_[0.0, fp / neg]
    tpr = np.r_[0.0, tp / pos]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def precision_at_k(labels: Sequence[bool], scores: Sequence[float], ks: Sequence[int]) -> dict[int, float]:
    """Share of injected samples among the k highest scores (ties broken by position)."""
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    return {int(k): float(y[order[:k]].mean()) for k in ks if 0 < k <= len(y)}


def default_ks(n: int, positives: int) -> list[int]:
    ks = sorted({k for k in (5, 10, 20, 50, 100, positives, max(1, round(0.05 * n))) if 0 < k <= n})
    return ks


def histogram(values: np.ndarray, bins: int = 40, lo: float | None = None, hi: float | None = None):
    """Bin centres, counts and width: the page plots bars, so a 100k-row run sends 40 numbers, not 100k."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    lo = float(values.min()) if lo is None and len(values) else (lo if lo is not None else 0.0)
    hi = float(values.max()) if hi is None and len(values) else (hi if hi is not None else 1.0)
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts, edges[1] - edges[0]


# ---------------------------------------------------------------- Compare

def shared_range(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """One normalisation range for two runs (multimem.summary.shared_range)."""
    from multimem import summary

    return summary.shared_range(a, b)


def compare_values(df: pd.DataFrame, mode: str, value_range: float) -> pd.Series:
    """Scores to compare: raw differences, or raw / the shared range (never a per-run range)."""
    if mode not in COMPARE_MODES:
        raise ValueError(f"compare mode must be one of {', '.join(COMPARE_MODES)}")
    raw = df["multimem_raw"].astype(float)
    return raw if mode == "raw" else raw / value_range


def relative_change(a: float, b: float) -> float | None:
    """(b − a) / |a|: the same on raw differences and on a shared range (a common scale cancels)."""
    if a == 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return (b - a) / abs(a)


def subset_means(a: pd.DataFrame, b: pd.DataFrame, mode: str, value_range: float) -> pd.DataFrame:
    rows = []
    va, vb = compare_values(a, mode, value_range), compare_values(b, mode, value_range)
    for s in SCORED_SUBSETS:
        ma, mb = float(va[a["subset"] == s].mean()), float(vb[b["subset"] == s].mean())
        rows.append({"subset": SUBSET_LABELS[s], "A": ma, "B": mb, "change": mb - ma,
                     "relative change": relative_change(ma, mb)})
    return pd.DataFrame(rows)


def compare_join(a: pd.DataFrame, b: pd.DataFrame, mode: str, value_range: float, subset: str = CANDIDATE) -> pd.DataFrame:
    """Samples that are `subset` in both runs, with both scores and the change, biggest move first."""
    ka = a.loc[a["subset"] == subset, ["id", "caption", "injected"]].assign(A=compare_values(a, mode, value_range))
    kb = b.loc[b["subset"] == subset, ["id"]].assign(B=compare_values(b, mode, value_range))
    joined = ka.merge(kb, on="id", how="inner")
    joined["change"] = joined["B"] - joined["A"]
    return joined.reindex(joined["change"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)


def subset_changes(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per scored subset, mean(b) − mean(a) of the raw score with its 95% interval (an Interval dict, plus
    `paired` and each run's replica count). Paired by sample id when both runs scored the same samples of the subset
    (one split: a run and its mitigation), else each run's samples drawn on their own; each run's replicas, when it
    has several, are resampled too (multimem.summary)."""
    from multimem import summary

    out = {}
    for seed, s in enumerate(SCORED_SUBSETS):
        sa, sb = a[a["subset"] == s], b[b["subset"] == s]
        va, vb = summary.replica_values(sa), summary.replica_values(sb)
        paired = len(sa) > 0 and len(sa) == len(sb) and set(sa["id"]) == set(sb["id"])
        if paired:
            iv = summary.paired_change(a, b, s, seed=seed)
        else:
            iv = summary.change_interval(va, vb, paired=False, seed=seed)
        out[s] = {**iv.to_dict(), "paired": bool(paired), "replicas_a": int(va.shape[0]),
                  "replicas_b": int(vb.shape[0])}
    return out


def scaled(interval: Mapping[str, Any], scale: float):
    """An Interval dict divided by a positive scale (raw differences onto a shared range), as an Interval."""
    from multimem.summary import Interval

    iv = Interval.from_dict(interval)
    return Interval(iv.estimate / scale, iv.low / scale, iv.high / scale, iv.n, iv.replicas)


def change_sentence(subset: str, interval: Mapping[str, Any], a: str, b: str, scale: float = 1.0,
                    digits: int = 4) -> str:
    """One sentence naming both runs, e.g. "S_C candidates: less memorized in demo.noise than in demo: −0.0120
    [−0.0200, −0.0040]" (Markdown: run names go through `plain`)."""
    iv = scaled(interval, scale)
    what = SUBSET_LABELS.get(subset, subset)
    ra, rb = plain(a, None), plain(b, None)
    if not math.isfinite(iv.estimate):
        return f"{what}: no samples to compare between {ra} and {rb}"
    text = iv.text(digits).replace("-", "−")
    if iv.within_noise:
        return f"{what}: no change beyond noise from {ra} to {rb}: {text}"
    if subset == CANDIDATE:
        how = "less memorized" if iv.estimate < 0 else "more memorized"
    else:
        how = "scores lower" if iv.estimate < 0 else "scores higher"
    return f"{what}: {how} in {rb} than in {ra}: {text}"


def label_stats(table: pd.DataFrame, column: str = "multimem_raw", subsets: Sequence[str] = (CANDIDATE, SHARED),
                limit: int = 30) -> pd.DataFrame:
    """Per label and subset: count, mean and the quartiles, minimum and maximum of `column`, for a box plot that
    sends a few numbers per box instead of every score. At most `limit` labels (the most scored samples first);
    rows ordered by the S_S mean of their label, highest first (labels without S_S samples last)."""
    cols = ["label", "subset", "count", "mean", "min", "q1", "median", "q3", "max"]
    if "label" not in table.columns or not table["label"].notna().any():
        return pd.DataFrame(columns=cols)
    rows = table[table["subset"].isin(subsets) & table["label"].notna()]
    values = rows[column].astype(float)
    g = values.groupby([rows["label"].astype(str), rows["subset"]])
    stats = pd.DataFrame({"count": g.size(), "mean": g.mean(), "min": g.min(), "q1": g.quantile(0.25),
                          "median": g.median(), "q3": g.quantile(0.75), "max": g.max()}).reset_index()
    stats.columns = cols
    kept = stats.groupby("label")["count"].sum().sort_values(ascending=False, kind="stable").head(limit).index
    stats = stats[stats["label"].isin(kept)]
    shared_mean = stats[stats["subset"] == SHARED].set_index("label")["mean"]
    order = {lab: i for i, lab in enumerate(
        sorted(kept, key=lambda lab: (-shared_mean.get(lab, -np.inf) if lab in shared_mean.index else np.inf, lab)))}
    return stats.sort_values(["label", "subset"], key=lambda c: c.map(order) if c.name == "label" else c,
                             kind="stable").reset_index(drop=True)


def lineage_chain(name: str, parent_of: Mapping[str, Any], limit: int = 50) -> list[str]:
    """The run's ancestors, nearest first (parent, grandparent, ...), from a name -> parent mapping."""
    out: list[str] = []
    current = parent_of.get(name)
    while isinstance(current, str) and current and current not in out and current != name and len(out) < limit:
        out.append(current)
        current = parent_of.get(current)
    return out


def baseline_of(x: str, y: str, parent_of: Mapping[str, Any]) -> str:
    """Which of two runs is the baseline (run A on Compare): the ancestor when one derives from the other (a
    mitigated run is compared against the run it came from), else `x`."""
    if x in lineage_chain(y, parent_of):
        return x
    if y in lineage_chain(x, parent_of):
        return y
    return x


# ---------------------------------------------------------------- thumbnails and cards

def thumbnail_uri(image: Image.Image, size: int = 128) -> str:
    """A WebP data URI of the image fitted into size×size (small emoji are enlarged, so they stay readable).

    WebP keeps a 128 px emoji near 1 KiB (PNG: about 10 KiB), so a page of cards stays small on the wire."""
    img = image.convert("RGB")
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="WEBP", quality=90, method=4)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


PLACEHOLDER = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128"><rect width="128" height="128" '
        b'fill="#eee"/><text x="64" y="70" font-size="14" text-anchor="middle" fill="#888">no image</text></svg>'
    ).decode("ascii")
)


@dataclass
class Card:
    """One tile of an image grid."""

    image: str  # data URI
    caption: str
    href: str | None = None
    score: float | None = None  # normalised MultiMem, coloured
    lines: list[str] = field(default_factory=list)  # small print under the caption (plain text)
    badge: str | None = None  # e.g. "injected"
    score_note: str = ""  # after the score, e.g. "± 0.012" (its standard error over replicas)
    title: str = ""  # tooltip of the score: what the number is


def score_class(score: float | None) -> str:
    """The CSS class that colours a score: high (red), above 0 (orange), at or below 0 (green), none (grey)."""
    if score is None or not math.isfinite(score):
        return "mm-s-na"
    return "mm-s-hi" if score > 0.25 else "mm-s-mid" if score > 0 else "mm-s-lo"


# Cards take the page's text colour and a translucent background, so they read in the light and the dark theme;
# the score colours have a darker set for a light page and a lighter one for a dark page (.mm-dark).
GRID_CSS = """
<style>
.mm-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(168px,1fr));gap:12px;margin:4px 0 12px}
.mm-card{border:1px solid rgba(128,128,128,.35);border-radius:8px;padding:8px;background:rgba(128,128,128,.05);
  display:flex;flex-direction:column;align-items:center;text-decoration:none !important;color:inherit !important;
  min-width:0}
.mm-card:hover,.mm-card:focus-visible{border-color:rgba(128,128,128,.9);box-shadow:0 1px 4px rgba(0,0,0,.2)}
.mm-card img{width:128px;height:128px;object-fit:contain;image-rendering:auto;background:#fafafa;border-radius:4px}
.mm-cap{font-size:.9rem;line-height:1.25;margin-top:6px;text-align:center;overflow-wrap:anywhere;color:inherit}
.mm-score{font-weight:600;font-size:.95rem;margin-top:4px}
.mm-line{font-size:.75rem;opacity:.75;text-align:center;overflow-wrap:anywhere}
.mm-se{font-weight:400;font-size:.8rem;opacity:.8}
.mm-badge{font-size:.7rem;background:#fde7e7;color:#b3261e;border-radius:4px;padding:0 5px;margin-top:3px}
.mm-s-hi{color:#b3261e}.mm-s-mid{color:#a86400}.mm-s-lo{color:#2e6b30}.mm-s-na{color:#777}
.mm-dark .mm-s-hi{color:#ff8a80}.mm-dark .mm-s-mid{color:#ffb74d}.mm-dark .mm-s-lo{color:#81c784}
.mm-dark .mm-s-na{color:#aaa}.mm-dark .mm-badge{background:#5c1d19;color:#ffcdd2}
</style>
"""


def card_html(card: Card) -> str:
    e = html.escape
    parts = [f'<img src="{e(card.image)}" alt="{e(card.caption)}">', f'<div class="mm-cap">{e(card.caption)}</div>']
    if card.score is not None:
        note = f' <span class="mm-se">{e(card.score_note)}</span>' if card.score_note else ""
        tip = f' title="{e(card.title)}"' if card.title else ""
        parts.append(f'<div class="mm-score {score_class(card.score)}"{tip}>{card.score:+.3f}{note}</div>')
    if card.badge:
        parts.append(f'<div class="mm-badge">{e(card.badge)}</div>')
    parts += [f'<div class="mm-line">{e(line)}</div>' for line in card.lines]
    inner = "".join(parts)
    if card.href:
        return f'<a class="mm-card" href="{e(card.href)}" target="_self">{inner}</a>'
    return f'<div class="mm-card">{inner}</div>'


def grid_html(cards: Sequence[Card], dark: bool = False) -> str:
    """The cards as one HTML grid; `dark`: the page has a dark background (lighter score colours)."""
    cls = "mm-grid mm-dark" if dark else "mm-grid"
    return GRID_CSS + f'<div class="{cls}">' + "".join(card_html(c) for c in cards) + "</div>"


# ---------------------------------------------------------------- why a pair scores as it does

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"a", "an", "the", "with", "of", "and", "from", "emoji", "skin", "tone", "light", "medium", "dark", "face"}


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(str(text).lower()) if w not in _STOP}


def caption_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the content words of two captions (0: nothing in common, 1: the same words)."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def neighbour_agreement(caption: str, neighbour_captions: Sequence[Sequence[str]], threshold: float = 0.34) -> float:
    """Share of neighbours with a caption that shares at least a third of its words with `caption`."""
    if not neighbour_captions:
        return 0.0
    hits = [max((caption_overlap(caption, c) for c in caps), default=0.0) >= threshold for caps in neighbour_captions]
    return float(np.mean(hits))


def calibrated_row(table: pd.DataFrame, row: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
    """The calibrated scores of one scored row, as {title: (value, what it is)}: the scores table's columns, or, for
    a run scored before they existed, computed by the rule of multimem.summary.calibration."""
    from multimem.summary import MIN_PER_LABEL

    out: dict[str, tuple[float, str]] = {}
    raw = float(row["multimem_raw"])
    shared = table[table["subset"] == SHARED]
    label = row.get("label")
    has_label = isinstance(label, str) and "label" in table.columns
    if "multimem_calibrated" in table.columns and row.get("multimem_calibrated") is not None:
        value = float(row["multimem_calibrated"])
    elif len(shared):
        value = raw - float(shared["multimem_raw"].mean())
    else:
        return out
    out["Calibrated (− S_S mean)"] = (value, "Raw score minus the mean raw score of the scored S_S sample: the "
                                              "model-level offset removed")
    if "multimem_calibrated_label" in table.columns and row.get("multimem_calibrated_label") is not None:
        by_label = float(row["multimem_calibrated_label"])
    elif has_label:
        same = shared.loc[shared["label"] == label, "multimem_raw"]
        base = float(same.mean()) if len(same) >= MIN_PER_LABEL else float(shared["multimem_raw"].mean())
        by_label = raw - base
    else:
        return out
    if math.isfinite(by_label):
        out["Calibrated per label"] = (by_label, f"Raw score minus the mean raw score of S_S samples with this label "
                                                 f"(the S_S mean when the label has fewer than {MIN_PER_LABEL})")
    return out


COLLAPSED = 0.99  # f's cosine to its nearest training neighbours at or above which they barely differ from each other


def collapsed(similarities: Sequence[float], threshold: float = COLLAPSED) -> bool:
    """Whether every neighbour found is at cosine ≥ threshold: f's embeddings hardly separate samples (a weakly
    trained model), so its nearest neighbours say little about this one."""
    sims = np.asarray(list(similarities), dtype=float)
    return bool(len(sims)) and bool(np.all(sims >= threshold))


def index_note(index: Mapping[str, Any] | None) -> str:
    """One line on how the neighbours were searched: exact, or approximate with its measured recall."""
    if not index:
        return ""
    n = f"{index.get('vectors', 0):,} training samples"
    if index.get("exact", True):
        return f"Exact search over {n}."
    recall = index.get("recall_at_10") or {}
    measured = ", ".join(f"{m} {v:.3f}" for m, v in recall.items())
    return (f"Approximate search over {n} ({index.get('kind')}, {index.get('nlist')} lists, {index.get('nprobe')} "
            f"probed): recall@10 against exact search {measured or 'not measured'}; a true neighbour can be missing.")


def explain(row: Mapping[str, Any], image_neighbour_captions: Sequence[Sequence[str]]) -> str:
    """A few sentences a reviewer can read: why f agrees with this pair more (or less) than g does (Markdown: the
    captions in it go through `plain`)."""
    trained_f = row.get("subset") in (CANDIDATE, SHARED)
    trained_g = row.get("subset") in (INDEPENDENT, SHARED)
    parts = [
        f"f ({'trained' if trained_f else 'not trained'} on this pair) aligns its image and caption at cosine "
        f"{float(row.get('cos_f', float('nan'))):.3f}, g ({'trained' if trained_g else 'not trained'} on it) at "
        f"{float(row.get('cos_g', float('nan'))):.3f}."
    ]
    k = len(image_neighbour_captions)
    agree = neighbour_agreement(str(row["caption"]), image_neighbour_captions)
    memorized = float(row.get("multimem_raw", 0.0)) > 0
    if k:
        parts.append(f"{round(agree * k)} of its {k} nearest training images (by f's image embedding) carry a caption "
                     f"like '{plain(row['caption'], None)}'.")
    if memorized and k and agree < 0.5:
        parts.append("f still ties this image to this caption better than g does, although similar-looking training "
                     "images say otherwise: the pattern of memorization (f learned this pair itself, not a rule the "
                     "data teaches).")
    elif memorized:
        parts.append("f ties this image to this caption better than g does; similar training images carry similar "
                     "captions, so part of that can be generalisation from them.")
    else:
        parts.append("f does not align this pair better than g: no sign that f memorized it.")
    if row.get("injected"):
        parts.append(f"This caption was swapped in on purpose (injected mis-caption); the image shows "
                     f"'{plain(row.get('original_caption'), None)}'.")
    return " ".join(parts)
