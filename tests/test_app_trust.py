"""Scores that hold up, on the dashboard: the offset and gaps with intervals and warnings (Overview), changes
between runs with intervals and the baseline as run A (Compare), standard errors, calibrated scores, a collapsed
neighbourhood and the Browse order (Sample). Runs are copies of the session's demo run, edited to known values."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from multimem import summary
from multimem.app import compare, explain, select, views
from multimem.engine import index

from app_helpers import TIMEOUT, open_app
OFFSET = 0.05  # added to every S_S raw score of 'offset': a model-level offset far above the S_C − S_S gap
SHIFT = -0.01  # added to every S_C raw score of 'demo.less': less memorized than its parent, by a known amount
SE = 0.004  # the standard error given to every score of 'rep'


def copy_run(source: Path, root: Path, name: str) -> Path:
    folder = root / name
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".lock"))
    return folder


def edit(folder: Path, scores=None, manifest=None) -> None:
    """Rewrite a copied run's scores table and manifest with the given functions."""
    if scores is not None:
        path = folder / "scores.parquet"
        scores(table := pd.read_parquet(path))
        table.to_parquet(path)
    m = json.loads((folder / "manifest.json").read_text())
    m["name"] = folder.name
    if manifest is not None:
        manifest(m)
    (folder / "manifest.json").write_text(json.dumps(m))


@pytest.fixture(scope="module")
def trust_root(app_runs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    demo = copy_run(app_runs / "demo", root, "demo")

    copy_run(demo, root, "twin")  # the same scores: every change is within noise
    edit(root / "twin")

    def add_offset(t):
        t.loc[t["subset"] == "shared", "multimem_raw"] += OFFSET

    def older(m):  # a run scored before the diagnostics existed: the page computes them from the scores table
        m["summary"].pop("diagnostics", None)
        m["summary"].pop("intervals_raw", None)

    edit(copy_run(demo, root, "offset"), add_offset, older)

    def less(t):
        t.loc[t["subset"] == "candidate", "multimem_raw"] += SHIFT

    def derived(m):
        m["lineage"] = {"parent": "demo", "mitigation": "test: candidates shifted"}

    edit(copy_run(demo, root, "demo.less"), less, derived)

    def replicas(t):
        t["multimem_se"] = SE
        t["multimem_raw_r0"] = t["multimem_raw"] - SE  # two replicas whose mean is the score and whose se is SE
        t["multimem_raw_r1"] = t["multimem_raw"] + SE

    def two(m):
        m["metric"]["replicas"] = 2

    edit(copy_run(demo, root, "rep"), replicas, two)

    # f's embeddings spread out at random (and indices rebuilt on them): a neighbourhood that is not collapsed
    spread = copy_run(demo, root, "spread")
    edit(spread)
    rng = np.random.default_rng(0)
    rows = np.load(spread / "index" / "rows.npy")
    for modality in ("image", "text"):
        path = spread / "embeddings" / f"f_{modality}.npy"
        emb = rng.normal(size=np.load(path).shape).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        np.save(path, emb)
        index.save(index.build(emb[rows]), spread / "index" / f"{modality}.faiss")
    return root


@pytest.fixture
def open_page(trust_root, monkeypatch):
    return lambda **params: open_app(trust_root, monkeypatch, **params)


def scores_of(root: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(root / name / "scores.parquet")


def minus(text: str) -> str:
    return text.replace("-", "−")


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


# ---------------------------------------------------------------- Overview

def test_overview_computes_the_offset_and_gaps_and_warns(open_page, trust_root):
    table = scores_of(trust_root, "offset")
    expected = summary.diagnostics(table)  # what the page must compute: this manifest has no diagnostics
    offset = summary.Interval.from_dict(expected["offset"])
    assert offset.estimate > 0.9 * OFFSET - 0.05 and not offset.within_noise  # the edit made a real offset

    at = open_page(page="overview", run="offset")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Offset: mean raw on S_S"] == minus(f"{offset.estimate:+.4f}")
    assert metrics["Held-out term held_f − held_g"] == minus(f"{expected['held_difference']:+.4f}")
    gap = summary.Interval.from_dict(expected["gap_candidate_shared"])
    assert metrics["Gap S_C − S_S (raw)"] == minus(f"{gap.estimate:+.4f}")
    assert gap.estimate < 0  # S_S was pushed above S_C
    assert minus(f"95% interval [{offset.low:+.4f}, {offset.high:+.4f}]") in captions(at)
    # the subset means carry their intervals (normalised by the run's range), computed from the table too
    value_range = json.loads((trust_root / "offset" / "manifest.json").read_text())["metric"]["normalisation"]["range"]
    shared = summary.subset_intervals(table)["shared"]
    assert minus(f"95% interval [{shared.low / value_range:+.3f}, {shared.high / value_range:+.3f}]") in captions(at)

    warned = " ".join(w.value for w in at.warning)
    assert "Model-level offset." in warned and "The models differ as a whole" in warned
    assert f"averages {offset.estimate:+.4f}" in warned  # the warning names the offset it found
    assert "calibrated score" in warned  # and what to do

    forest = next(s for s in plotly_specs(at) if s["data"][0].get("error_x"))
    points = dict(zip(forest["data"][0]["y"], forest["data"][0]["x"]))
    assert points["mean on S_S"] == pytest.approx(offset.estimate)
    assert points["gap S_C − S_S"] == pytest.approx(gap.estimate)


def test_overview_per_label_plot_links_each_label_to_browse(open_page, trust_root):
    table = scores_of(trust_root, "demo")
    at = open_page(page="overview", run="demo")
    boxes = [s for s in plotly_specs(at) if s["data"] and s["data"][0].get("type") == "box"]
    assert len(boxes) == 1, "one per-label plot"
    traces = {t["name"]: t for t in boxes[0]["data"]}
    assert set(traces) == {"S_C candidates", "S_S shared"}
    flags = table[(table["label"] == "Flags") & (table["subset"] == "shared")]["multimem_raw"]
    shared = traces["S_S shared"]
    at_flags = list(shared["x"]).index("Flags")
    assert shared["mean"][at_flags] == pytest.approx(flags.mean())
    assert shared["median"][at_flags] == pytest.approx(flags.median())
    # each tick label is a link to Browse filtered to that label (and a plain link next to the plot)
    url = views.link("browse", {"run": "demo", "label": "Flags", "subset": ["candidate", "shared"]})
    ticks = boxes[0]["layout"]["xaxis"]["ticktext"]
    assert any(url.replace("&", "&amp;") in t and ">Flags</a>" in t for t in ticks)
    assert any(f"[Flags]({url})" in m.value for m in at.markdown)
    # the run settings name |H|, the replicas and the unknown tokens, with the README pointer
    line = next(c for c in captions(at) if c.startswith("|H| ="))
    assert "replicas: 1" in line and "README, *Vocabulary*" in line


def test_browse_reads_the_label_link(open_page, trust_root):
    table = scores_of(trust_root, "demo")
    at = open_page(page="browse", run="demo", label="Flags", subset=["candidate", "shared"])
    assert at.multiselect(key="b_labels").value == ["Flags"]
    n = int(((table["label"] == "Flags") & table["subset"].isin(["candidate", "shared"])).sum())
    assert any(f"**{n}** of {len(table)} scored pairs match" in c for c in captions(at))


# ---------------------------------------------------------------- Compare

def test_compare_with_parent_puts_the_baseline_first_with_intervals(open_page):
    # the link the Runs page gives a derived run: run = the derived run, vs = its parent
    at = open_page(page="compare", run="demo.less", vs="demo", norm="raw")
    assert any(m.value.startswith("**Run A:** demo (baseline) · **Run B:** demo.less") for m in at.markdown)
    sentences = " ".join(m.value for m in at.markdown)
    # every candidate moved by SHIFT, samples paired by id: the interval is that one value
    assert f"S_C candidates: less memorized in demo.less than in demo: {minus(f'{SHIFT:+.4f}')} " \
           f"[{minus(f'{SHIFT:+.4f}')}, {minus(f'{SHIFT:+.4f}')}]" in sentences
    assert "S_S shared: no change beyond noise from demo to demo.less" in sentences
    assert any("paired by sample id" in c and "training noise" in c for c in captions(at))
    means = next(d.value for d in at.dataframe if "change low" in d.value.columns).set_index("subset")
    assert means.loc["S_C candidates", "change"] == pytest.approx(SHIFT, abs=1e-6)
    assert not means.loc["S_C candidates", "within noise"] and means.loc["S_S shared", "within noise"]
    assert "base" not in at.query_params  # the default order is not spelled out in the link

    at.button(key="c_swap_button").click().run(timeout=TIMEOUT)
    assert any(m.value.startswith("**Run A:** demo.less (derived from demo) · **Run B:** demo") for m in at.markdown)
    sentences = " ".join(m.value for m in at.markdown)
    assert f"S_C candidates: more memorized in demo than in demo.less: {minus(f'{-SHIFT:+.4f}')}" in sentences
    assert at.query_params["base"] == "demo.less"


def test_compare_an_identical_copy_is_within_noise(open_page):
    at = open_page(page="compare", run="demo", vs="twin")
    sentences = " ".join(m.value for m in at.markdown)
    for subset in ("S_C candidates", "S_I independent", "S_S shared"):
        assert f"{subset}: no change beyond noise from demo to twin:" in sentences
    assert sentences.count("within noise") >= 3
    under = [c for c in captions(at) if c.startswith("change B − A")]  # under each subset's figure
    assert len(under) == 3 and all(c.endswith("within noise") for c in under)


# ---------------------------------------------------------------- Sample

def test_sample_shows_the_standard_error_and_calibrated_scores(open_page, trust_root):
    table = scores_of(trust_root, "rep")
    row = table[table["subset"] == "candidate"].sort_values("multimem", ascending=False).iloc[0]
    value_range = json.loads((trust_root / "rep" / "manifest.json").read_text())["metric"]["normalisation"]["range"]
    at = open_page(page="sample", run="rep", id=row["id"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["MultiMem (normalised)"] == f"{row['multimem']:+.3f} ± {SE / value_range:.3f}"
    assert metrics["MultiMem (raw)"] == f"{row['multimem_raw']:+.5f} ± {SE:.5f}"
    assert metrics["Calibrated (− S_S mean)"] == f"{row['multimem_calibrated']:+.5f}"
    assert metrics["Calibrated per label"] == f"{row['multimem_calibrated_label']:+.5f}"
    words = " ".join(m.value for m in at.markdown)
    pct = (table.loc[table["subset"] == "candidate", "multimem"] < row["multimem"]).mean() * 100
    assert f"higher than **{pct:.0f}%** of S_C candidates" in words and "0 means f and g agree" in words
    assert "one standard error over the run's 2 replicas" in words


def test_sample_without_replicas_has_no_error_bar(open_page, trust_root):
    table = scores_of(trust_root, "demo")
    row = table[~table["injected"]].iloc[0]
    at = open_page(page="sample", run="demo", id=row["id"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["MultiMem (raw)"] == f"{row['multimem_raw']:+.5f}" and "±" not in metrics["MultiMem (normalised)"]
    assert at.title[0].value == views.plain(row["caption"], None)  # a clean pair keeps its caption as the title


def test_collapsed_neighbourhood_is_called_out(open_page, trust_root):
    table = scores_of(trust_root, "demo")
    sid = table[table["subset"] == "candidate"]["id"].iloc[0]
    index_demo = index.NeighbourIndex.from_run_dir(trust_root / "demo")
    sims = [s for _, s in index_demo.search(int(table.set_index("id").loc[sid, "row"]), "image", 8)]
    assert min(sims) >= explain.COLLAPSED  # the tiny demo's f hardly separates its samples
    at = open_page(page="sample", run="demo", id=sid)
    collapsed = [w.value for w in at.warning if "nearly collapsed" in w.value]
    assert collapsed and "weakly" in collapsed[0] and "mean little" in collapsed[0]

    at = open_page(page="sample", run="spread", id=sid)  # random embeddings: neighbours far apart
    assert not [w.value for w in at.warning if "nearly collapsed" in w.value]


def test_collapsed_needs_every_neighbour_close():
    assert explain.collapsed([0.999, 0.995, 0.99])
    assert not explain.collapsed([0.999, 0.95])
    assert not explain.collapsed([])


def test_injected_pair_is_titled_by_its_id(open_page, trust_root):
    table = scores_of(trust_root, "demo")
    row = table[table["injected"]].iloc[0]
    at = open_page(page="sample", run="demo", id=row["id"])
    assert at.title[0].value == f"Sample {views.plain(row['id'], None)}"
    assert any(views.plain(row["caption"], None) in c and "swapped in" in c for c in captions(at))


def test_sample_steps_through_the_browse_order(open_page, trust_root):
    table = scores_of(trust_root, "demo")
    view, _ = views.parse_browse({"label": ["Flags"], "subset": ["shared"], "order": ["asc"]}, ["Flags"])
    order = select.select(table, view)["id"].tolist()
    assert len(order) >= 3
    at = open_page(page="sample", run="demo", label="Flags", subset="shared", order="asc")
    assert at.query_params["id"] == order[0]  # no id: the first pair of the Browse view
    assert any(f"Pair **1** of {len(order)}" in c for c in captions(at))
    at.button(key="s_next").click().run(timeout=TIMEOUT)
    at.button(key="s_next").click().run(timeout=TIMEOUT)
    assert at.query_params["id"] == order[2] and any(f"Pair **3** of {len(order)}" in c for c in captions(at))
    assert at.query_params["label"] in ("Flags", ["Flags"]) and at.query_params["order"] == "asc"  # order travels
    at.button(key="s_prev").click().run(timeout=TIMEOUT)
    assert at.query_params["id"] == order[1]
    back = next(m.value for m in at.markdown if "Back to Browse" in m.value)
    assert "label=Flags" in back and "order=asc" in back


def test_position_in_a_browse_order():
    rows = pd.DataFrame({"id": [f"s{i}" for i in range(30)]})
    where = select.position_in(rows, "s24", per_page=12)
    assert where == {"position": 25, "count": 30, "previous": "s23", "next": "s25", "page": 3}
    assert select.position_in(rows, "s0")["previous"] is None and select.position_in(rows, "s29")["next"] is None
    assert select.position_in(rows, "elsewhere") is None


def test_baseline_is_the_ancestor():
    parents = {"a": None, "a.x": "a", "a.x.y": "a.x", "b": None}
    assert compare.baseline_of("a.x.y", "a", parents) == "a"
    assert compare.baseline_of("a", "a.x", parents) == "a"
    assert compare.baseline_of("b", "a", parents) == "b"  # unrelated runs: the sidebar's run


def test_sample_opened_from_a_browse_card_keeps_its_order(open_page, trust_root):
    # a Browse card opens the Sample page inside the app with page, run and id only: the order is the session's
    table = scores_of(trust_root, "demo")
    view, _ = views.parse_browse({"label": ["Flags"], "subset": ["shared"]}, ["Flags"])
    order = select.select(table, view)["id"].tolist()
    at = open_page(page="browse", run="demo", label="Flags", subset="shared")
    for key in list(at.query_params):
        del at.query_params[key]
    at.query_params.update(page="sample", run="demo", id=order[1])
    at.switch_page("pages/sample.py").run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"Pair **2** of {len(order)} in your Browse view" in c for c in captions(at))
    at.button(key="s_next").click().run(timeout=TIMEOUT)
    assert at.query_params["id"] == order[2] and at.query_params["label"] in ("Flags", ["Flags"])
