"""The fast paths of Browse and Compare (docs/benchmarks.md, "Dashboard"), checked by their
values: Browse's scatter as a picture first and the interactive chart when asked for, Compare's per-pair scatter,
and bootstrap draws taken in blocks giving the very numbers of one draw of the whole matrix."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from multimem import summary
from multimem.app import figures
from multimem.app.region import Region

from app_helpers import TIMEOUT, open_app

LOWEST, HIGHEST = "#313695", "#a50026"  # the ends of the colour scale (RdYlBu reversed): −half and +half


def picture(at, css: str = "mm-scatter") -> str:
    """The SVG of a picture the page sends as an image (a data: URI)."""
    tag = next(h.value for h in at.html if f'class="{css}"' in h.value)
    return base64.b64decode(re.search(r"base64,([^\"]+)", tag).group(1)).decode()


def test_browse_draws_the_scatter_as_a_picture_fitted_to_the_data(app_runs, monkeypatch, demo_tables):
    at = open_app(app_runs, monkeypatch, page="browse", run="demo")
    assert not at.get("plotly_chart")  # no chart library on the way to the first paint
    svg = picture(at)
    _, _, scores = demo_tables
    cand = scores[scores.subset == "candidate"]  # the points of the default view: S_C (fewer than 3,000)
    assert svg.count("<circle") == len(cand)
    # colours symmetric around 0 and fitted to the points: the largest |score| takes an end of the scale
    top = cand["multimem"].abs().max()
    assert (HIGHEST if cand["multimem"].max() == top else LOWEST) in svg
    bar = re.findall(r'fill-opacity="0.75">([^<]+)</text>', svg)[-3:]  # the colour bar: +half, 0, −half
    assert bar == [f"{top:.3g}".rstrip("0").rstrip("."), "0", "−" + f"{top:.3g}".rstrip("0").rstrip(".")]
    assert "black rings: injected mis-captions" in " ".join(c.value for c in at.caption)
    assert "chart" not in at.query_params


def test_the_interactive_chart_is_in_the_link_and_keeps_the_selection(app_runs, monkeypatch, demo_tables):
    _, _, scores = demo_tables
    cand = scores[scores.subset == "candidate"]
    x0, x1 = np.quantile(cand["cmc_g"], [0.2, 0.8])
    y0, y1 = np.quantile(cand["cmc_f"], [0.1, 0.9])
    region = Region("box", (float(x0), float(x1)), (float(y0), float(y1)))
    at = open_app(app_runs, monkeypatch, page="browse", run="demo", chart="interactive", sel=region.to_param())
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    marker = spec["data"][0]["marker"]
    assert marker["cmin"] == -marker["cmax"] and marker["cmid"] == 0
    assert marker["cmax"] == pytest.approx(cand["multimem"].abs().max())
    assert spec["layout"]["shapes"][0]["type"] == "rect"  # the selection from the link, drawn
    assert at.query_params["chart"] == "interactive" and at.query_params["sel"] == region.to_param()
    assert any("inside the scatter selection" in c.value for c in at.caption)

    at.toggle(key="b_live").set_value(False).run(timeout=TIMEOUT)  # back to the picture: the selection stays
    assert not at.get("plotly_chart")
    assert "stroke-dasharray" in picture(at)
    assert "chart" not in at.query_params and at.query_params["sel"] == region.to_param()
    assert any("inside the scatter selection" in c.value for c in at.caption)


def test_an_unknown_chart_value_in_a_link_is_named_and_the_picture_shown(app_runs, monkeypatch):
    at = open_app(app_runs, monkeypatch, page="browse", run="demo", chart="bogus")
    assert any("'chart=bogus' is not 'interactive'" in w.value for w in at.warning)
    assert not at.get("plotly_chart") and picture(at)


def test_compare_draws_its_figures_as_pictures_and_charts_when_asked(app_runs, monkeypatch, demo_tables):
    _, _, scores = demo_tables
    cand = scores[scores.subset == "candidate"]
    at = open_app(app_runs, monkeypatch, page="compare", run="demo", vs="halved", norm="raw")
    assert not at.get("plotly_chart")
    bars = picture(at, "mm-bars")
    va = cand["multimem_raw"].to_numpy(float)  # raw scores of S_C in demo (A) and in halved (B): halved
    edges = (min(va.min(), (va / 2).min()), max(va.max(), (va / 2).max()))
    filled = sum(int((figures.histogram(v, 40, *edges)[1] > 0).sum()) for v in (va, va / 2))
    assert bars.count('fill-opacity="0.55"') == filled + 2  # a bar per non-empty bin of each run, 2 legend keys
    assert ">A: demo<" in bars and ">B: halved<" in bars
    pairs = picture(at, "mm-pairs")
    assert pairs.count("<circle") == len(cand)  # under 3,000: every shared candidate once
    assert pairs.count('fill="#d62728"') == int(cand["injected"].sum())  # injected mis-captions in red

    at = open_app(app_runs, monkeypatch, page="compare", run="demo", vs="halved", norm="raw", chart="interactive")
    assert at.query_params["chart"] == "interactive"
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    per_pair = next(s for s in specs if s["layout"]["xaxis"]["title"]["text"].startswith("A: "))
    points = [t for t in per_pair["data"] if t["mode"] == "markers"]
    assert all(t["type"] == "scattergl" for t in points)
    assert sum(len(t["text"]) for t in points) == len(cand)  # a caption each
    injected = next((t for t in points if t["name"] == "injected mis-captions"), None)
    assert (len(injected["text"]) if injected else 0) == int(cand["injected"].sum())


# ---------------------------------------------------------------- bootstrap draws in blocks

def whole_matrix_means(values: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """K × B means over B draws of sample indices (B × N), from the whole index matrix at once."""
    return values[:, samples].mean(axis=2)


def reference_change(before, after, paired, same_models=False, seed=0, resamples=summary.RESAMPLES):
    a, b = np.atleast_2d(np.asarray(before, float)), np.atleast_2d(np.asarray(after, float))
    (ka, na), (kb, nb) = a.shape, b.shape
    rng = np.random.default_rng(seed)
    sa = rng.integers(0, na, size=(resamples, na))
    sb = sa if paired else rng.integers(0, nb, size=(resamples, nb))
    pa = rng.integers(0, ka, size=(resamples, ka))
    pb = pa if same_models and ka == kb else rng.integers(0, kb, size=(resamples, kb))
    draws = (summary._pick_replicas(whole_matrix_means(b, sb), pb)
             - summary._pick_replicas(whole_matrix_means(a, sa), pa))
    return summary._interval(b.mean() - a.mean(), draws, min(na, nb), min(ka, kb))


def reference_mean(values, seed=0, resamples=summary.RESAMPLES):
    values = np.atleast_2d(np.asarray(values, float))
    k, n = values.shape
    rng = np.random.default_rng(seed)
    means = whole_matrix_means(values, rng.integers(0, n, size=(resamples, n)))
    return summary._interval(values.mean(), summary._pick_replicas(means, rng.integers(0, k, size=(resamples, k))),
                             n, k)


@pytest.mark.parametrize("chunk", [summary.CHUNK, 997])  # 997: many blocks of a few draws, odd sizes
@pytest.mark.parametrize("k_a, k_b, n", [(1, 1, 1), (1, 1, 7), (1, 1, 3001), (3, 3, 250), (2, 4, 401)])
def test_bootstrap_in_blocks_gives_the_numbers_of_one_whole_draw(monkeypatch, chunk, k_a, k_b, n):
    monkeypatch.setattr(summary, "CHUNK", chunk)
    rng = np.random.default_rng(n + 10 * k_a + k_b)
    before = rng.normal(size=(k_a, n))
    after = rng.normal(size=(k_b, n)).T.copy().T  # a strided array, as replica_values gives
    other = rng.normal(0.1, 1, size=(k_b, n + 5))
    for seed in (0, 5):
        assert summary.mean_interval(before, seed) == reference_mean(before, seed)
        assert summary.change_interval(before, after, True, seed=seed) == reference_change(before, after, True,
                                                                                          seed=seed)
        assert summary.change_interval(before, other, False, seed=seed) == reference_change(before, other, False,
                                                                                           seed=seed)
        if k_a == k_b:
            assert (summary.change_interval(before, after, False, same_models=True, seed=seed)
                    == reference_change(before, after, False, same_models=True, seed=seed))
        assert (summary.change_interval(before, after, True, seed=seed, resamples=37)
                == reference_change(before, after, True, seed=seed, resamples=37))


def test_a_paired_change_is_the_same_whichever_order_the_runs_keep_their_samples_in():
    rng = np.random.default_rng(3)
    n = 500
    before = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "subset": rng.choice(["candidate", "shared"], n),
                           "multimem_raw": rng.normal(size=n)})
    after = before.assign(multimem_raw=before["multimem_raw"] + rng.normal(0.1, 0.2, n))
    same = summary.paired_change(before, after, "candidate", seed=4)  # the same order: no reindexing
    shuffled = summary.paired_change(before, after.sample(frac=1, random_state=1), "candidate", seed=4)
    assert same == shuffled
    extra = pd.concat([after, pd.DataFrame({"id": ["new"], "subset": ["candidate"], "multimem_raw": [9.0]})])
    assert summary.paired_change(before, extra, "candidate", seed=4) == same  # only the ids both runs have
