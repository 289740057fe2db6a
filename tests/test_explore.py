"""The dashboard's pure logic (multimem.app), on-demand scoring (multimem.ondemand) and job commands."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from multimem import jobs, summary
from multimem.engine import pair_score
from multimem.app import cards, columns, compare, explain, figures, select, views
from multimem.app.region import Region
from multimem.app.views import BrowseView
from multimem.data.images import open_image


def table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subsets = np.array(["candidate", "independent", "shared"])[np.arange(n) % 3]
    df = pd.DataFrame({
        "id": [f"s{i:03d}" for i in range(n)],
        "subset": subsets,
        "caption": [f"{['red', 'blue', 'green'][i % 3]} thing {i}" for i in range(n)],
        "label": np.array(["A", "B"])[np.arange(n) % 2],
        "injected": np.arange(n) % 5 == 0,
        "multimem": np.round(rng.uniform(-1, 1, n), 3),
        "cmc_f": rng.normal(size=n),
        "cmc_g": rng.normal(size=n),
    })
    df["captions"] = [[c, c.upper()] for c in df["caption"]]
    return df


# ---------------------------------------------------------------- query parameters

def test_parse_browse_defaults_and_round_trip():
    view, problems = views.parse_browse({}, ["A", "B"])
    assert view == BrowseView() and problems == []
    assert views.browse_params(view) == {}  # defaults stay out of links
    custom = BrowseView(subsets=("independent", "shared"), lo=-0.5, hi=0.25, labels=("B",), text="red", injected="no",
                        sort="cmc_f", order="asc", page=3, per_page=48, x="cos_f", y="multimem",
                        region=Region("box", (0.0, 1.0), (-1.0, 2.5)))
    back, problems = views.parse_browse(views.browse_params(custom), ["A", "B"])
    assert back == custom and problems == []


@pytest.mark.parametrize("params, fragment, field", [
    ({"lo": "abc"}, "'lo=abc' is not a number", "lo"),
    ({"hi": "nan"}, "not a finite number", "hi"),
    ({"lo": "0.5", "hi": "0.1"}, "is empty", "lo"),
    ({"sort": "__class__"}, "'sort=\\_\\_class\\_\\_' is not one of", "sort"),  # shown as typed, not as Markdown
    ({"n": "1000000"}, "'n=1000000'", "per_page"),
    ({"p": "two"}, "'p=two' is not a whole number", "page"),
    ({"subset": "extra"}, "unknown subset extra", "subsets"),
    ({"label": "Z"}, "unknown label Z", "labels"),
    ({"sel": "circle:1,2"}, "scatter selection ignored", "region"),
    ({"sel": "lasso:1,2,3"}, "scatter selection ignored", "region"),
    ({"x": "id"}, "'x=id' is not one of", "x"),
])
def test_parse_browse_replaces_bad_values_with_defaults(params, fragment, field):
    view, problems = views.parse_browse(params, ["A", "B"])
    assert any(fragment in p for p in problems), problems
    assert getattr(view, field) == getattr(BrowseView(), field)


def test_parse_browse_clamps_scores_and_pages():
    view, problems = views.parse_browse({"lo": "-7", "hi": "3", "p": "-2"})
    assert (view.lo, view.hi, view.page) == (-1.0, 1.0, 1) and problems == []


def test_run_names_and_sample_ids_from_links_are_validated():
    problems: list[str] = []
    assert views.parse_run_name("demo", ["demo"], problems) == "demo"
    assert views.parse_run_name("../etc", ["demo"], problems) is None
    assert views.parse_run_name("other", ["demo"], problems) is None
    assert views.parse_run_name(None, ["demo"], problems) is None
    assert "not a valid run name" in problems[0] and "does not exist here" in problems[1]
    ids = pd.Index(["a", "b"])
    assert views.parse_sample_id("b", ids, problems) == "b"
    assert views.parse_sample_id("/etc/passwd", ids, problems) is None
    assert "not in this run" in problems[-1]
    assert views.parse_page("sample") == "sample" and views.parse_page("../x") is None
    assert views.parse_k({"k": "12"}, problems) == 12 and views.parse_k({"k": "7"}, problems) == 8


def test_link_encodes_the_view_and_never_a_path():
    url = views.link("sample", {"run": "demo", "id": "a&b=c"}, "http://host:8501")
    assert url == "http://host:8501/sample?page=sample&run=demo&id=a%26b%3Dc"
    assert views.link("overview", {"run": "x"}) == "./?page=overview&run=x"
    both = views.link("browse", {"subset": ["candidate", "shared"]})
    assert both == "./browse?page=browse&subset=candidate&subset=shared"


# ---------------------------------------------------------------- Browse

def test_filter_sort_and_page():
    df = table()
    view = BrowseView(subsets=("candidate", "shared"), lo=-0.5, hi=0.8, labels=("A",), injected="no", text="RED")
    got = select.select(df, view)
    want = df[df.subset.isin(["candidate", "shared"]) & df.multimem.between(-0.5, 0.8) & (df.label == "A")
              & ~df.injected & df.caption.str.contains("red")]
    assert set(got["id"]) == set(want["id"]) and len(got) > 0
    assert got["multimem"].is_monotonic_decreasing
    asc = select.select(df, BrowseView(subsets=columns.SCORED_SUBSETS, sort="cmc_f", order="asc"))
    assert asc["cmc_f"].is_monotonic_increasing and len(asc) == len(df)
    rows, page, pages = select.page_of(asc, 9, 12)
    assert (page, pages) == (4, 4) and rows["id"].tolist() == asc["id"].iloc[36:].tolist()


def test_ties_are_broken_by_id():
    df = pd.DataFrame({"id": ["c", "a", "b"], "multimem": [0.5, 0.5, 0.5]})
    assert select.sort_rows(df, "multimem", "desc")["id"].tolist() == ["a", "b", "c"]


def test_caption_search_covers_every_caption():
    df = table()
    got = select.select(df, BrowseView(subsets=columns.SCORED_SUBSETS, text="THING 7"))
    assert got["id"].tolist() == ["s007"]  # matched through the upper-case second caption, case-insensitively


def test_regions_box_and_lasso():
    x = np.array([0.0, 1.0, 2.0, 0.5, 3.0])
    y = np.array([0.0, 1.0, 2.0, 1.5, 0.1])
    box = Region("box", (0.5, 2.0), (0.5, 2.0))
    assert box.contains(x, y).tolist() == [False, True, True, True, False]
    triangle = Region("lasso", (0.0, 3.0, 0.0), (0.0, 0.0, 3.0))  # x + y < 3 in the first quadrant
    assert triangle.contains(x + 0.01, y + 0.01).tolist() == [True, True, False, True, False]
    assert Region.from_param(triangle.to_param()) == triangle


def test_region_from_a_plotly_selection_event():
    assert Region.from_plotly({"box": [], "lasso": [], "points": []}) is None
    box = Region.from_plotly({"box": [{"x": [2.0, 1.0], "y": [0.5, -0.5], "xref": "x", "yref": "y"}]})
    assert box == Region("box", (1.0, 2.0), (-0.5, 0.5))
    xs = list(np.linspace(0, 1, 500))
    lasso = Region.from_plotly({"lasso": [{"x": xs, "y": xs[::-1]}]})
    assert lasso.kind == "lasso" and 3 <= len(lasso.xs) <= 120  # long hand-drawn paths are thinned for the URL


def test_scatter_sample_is_seeded_and_bounded():
    df = table(500)
    a, b = select.scatter_sample(df, 100), select.scatter_sample(df, 100)
    assert len(a) == 100 and a["id"].tolist() == b["id"].tolist()
    assert len(select.scatter_sample(df, 1000)) == 500


# ---------------------------------------------------------------- injected mis-captions

def test_roc_curve_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(1)
    labels = rng.random(300) < 0.2
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes ties
    fpr, tpr, auc = summary.roc_curve(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    with pytest.raises(ValueError):
        summary.roc_curve([True, True], [0.1, 0.2])


def test_precision_at_k_by_hand():
    labels = [True, False, True, False, False]
    scores = [0.9, 0.8, 0.7, 0.1, 0.0]
    assert summary.precision_at_k(labels, scores, [1, 2, 3, 5, 9]) == {1: 1.0, 2: 0.5, 3: pytest.approx(2 / 3), 5: 0.4}
    assert figures.default_ks(200, 10) == [5, 10, 20, 50, 100]


def test_histogram_counts_everything_in_range():
    centres, counts, width = figures.histogram(np.array([0.0, 0.1, 0.1, 1.0, np.nan]), bins=10, lo=0.0, hi=1.0)
    assert counts.sum() == 4 and width == pytest.approx(0.1) and centres[0] == pytest.approx(0.05)


# ---------------------------------------------------------------- Compare

def test_compare_on_raw_or_one_shared_range():
    a = pd.DataFrame({"id": ["x", "y", "z", "w"], "subset": ["candidate"] * 3 + ["independent"],
                      "caption": list("xyzw"), "injected": [False, True, False, False],
                      "multimem_raw": [0.2, 0.4, -0.2, -0.4]})
    b = a.assign(multimem_raw=[0.1, 0.1, -0.1, -0.6]).iloc[[1, 0, 3]]  # z is not scored in b
    r = summary.shared_range(a, b)
    assert r == pytest.approx(1.0)  # 0.4 - (-0.6), over both runs
    joined = compare.compare_join(a, b, "raw", r)
    assert joined["id"].tolist() == ["y", "x"]  # shared candidates, biggest move first
    assert joined["change"].tolist() == pytest.approx([-0.3, -0.1])
    shared = compare.compare_join(a, b, "shared", 2.0)
    assert shared["A"].tolist() == pytest.approx([0.2, 0.1])
    means = compare.compare_means(a, b, "raw", r).set_index("subset")
    assert means.loc["S_C candidates", "A"] == pytest.approx(0.4 / 3)
    assert means.loc["S_C candidates", "relative change"] == pytest.approx((0.1 - 0.4 / 3) / (0.4 / 3))
    # a common scale cancels in the relative change
    scaled = compare.compare_means(a, b, "shared", 7.0).set_index("subset")
    assert scaled.loc["S_C candidates", "relative change"] == pytest.approx(means.loc["S_C candidates", "relative change"])
    assert compare.relative_change(0.0, 1.0) is None and compare.relative_change(-0.2, -0.1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        compare.compare_values(a, "per-run", 1.0)


# ---------------------------------------------------------------- thumbnails, cards, explanations

def test_thumbnail_is_an_enlarged_webp_data_uri():
    uri = cards.thumbnail_uri(Image.new("RGB", (72, 36), (255, 0, 0)), 128)
    assert uri.startswith("data:image/webp;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    assert img.size == (128, 64)
    assert all(abs(a - b) <= 8 for a, b in zip(img.getpixel((64, 32)), (255, 0, 0)))  # lossy, but the same colour


def test_cards_escape_captions_and_link_targets():
    card = cards.Card(image=cards.PLACEHOLDER, caption='<script>alert("x")</script>', score=0.5,
                        href=views.link("sample", {"run": "r", "id": '"><b>'}), badge="injected mis-caption")
    out = cards.grid_html([card])
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'href="./sample?page=sample&amp;run=r&amp;id=%22%3E%3Cb%3E"' in out
    assert "+0.500" in out and "injected mis-caption" in out


def test_caption_overlap_and_the_explanation():
    assert explain.caption_overlap("grinning face", "grinning face: dark skin tone") == 1.0
    assert explain.caption_overlap("red apple", "blue car") == 0.0
    neighbours = [["thumbs up"], ["thumbs up sign"], ["ok hand"], ["thumbs up: light skin tone"]]
    assert explain.neighbour_agreement("thumbs up", neighbours) == 0.75
    row = {"caption": "pile of poo", "subset": "candidate", "cos_f": 0.9, "cos_g": 0.1, "multimem_raw": 0.3,
           "injected": True, "original_caption": "thumbs up"}
    text = explain.explain(row, neighbours)
    assert "0 of its 4 nearest training images" in text and "memorization" in text and "'thumbs up'" in text
    assert "no sign that f memorized it" in explain.explain({**row, "multimem_raw": -0.1, "injected": False}, neighbours)


# ---------------------------------------------------------------- the modality table

def test_columns_and_neighbour_tabs_follow_the_modality_table(monkeypatch):
    from multimem import modalities

    two = table().assign(multimem_raw=0.0, sslmem_image=0.0, sslmem_text=0.0)
    assert columns.columns_for(two) == columns.COLUMNS == columns.columns_for(None)  # two modalities: as always
    assert list(explain.neighbour_tabs(modalities.DEFAULT).values()) == [
        ("By image", "training images f finds most similar to this image; their captions show what the data says "
                     "this image is"),
        ("By text", "training captions f finds most similar to this caption, with their images"),
        ("Image → captions", "training captions f matches to this image (across modalities)"),
        ("Caption → images", "training images f matches to this caption (across modalities)")]
    monkeypatch.setitem(modalities.TABLE, "audio", modalities.Modality("audio", "A", "audio", "clip", "clips"))
    three = two.assign(sslmem_audio=0.0, multimem_it=0.0, multimem_ia=0.0, multimem_ta=0.0)
    assert list(columns.columns_for(three))[6:] == ["sslmem_image", "sslmem_text", "sslmem_audio", "multimem_it",
                                                    "multimem_ia", "multimem_ta"]
    assert columns.columns_for(three)["multimem_ta"] == "MultiMem TA pair"
    view, problems = views.parse_browse({"x": "sslmem_audio"}, [], columns.columns_for(three))
    assert view.x == "sslmem_audio" and problems == []
    tabs = explain.neighbour_tabs(("image", "text", "audio"))
    assert list(tabs)[:3] == ["image", "text", "audio"] and len(tabs) == 3 + 6
    assert tabs["audio"] == ("By audio", "training clips f finds most similar to this clip")
    assert tabs["audio_to_text"] == ("Clip → captions", "training captions f matches to this clip (across modalities)")


# ---------------------------------------------------------------- jobs

def test_job_command_is_an_argument_list_with_the_options_set(tmp_path):
    req = jobs.JobRequest(name="n1", source="csv", path="data/x.csv; rm -rf /", fast=False, epochs=3, candidate=0.1,
                          inject=0.0, model="mm-small")
    argv = jobs.command(req, tmp_path, python="py")
    assert argv[:9] == ["py", "-m", "multimem", "train", "--all", "--name", "n1", "--runs-root", str(tmp_path)]
    assert argv[argv.index("--path") + 1] == "data/x.csv; rm -rf /"  # one argument, no shell
    assert argv[argv.index("--candidate") + 1] == "0.1" and argv[argv.index("--inject") + 1] == "0"
    assert "--fast" not in argv and "--limit" not in argv
    for bad in (jobs.JobRequest(name="../x"), jobs.JobRequest(name="ok", source="csv")):
        with pytest.raises(Exception):
            bad.check(tmp_path)
    assert jobs.progress_fraction({"stage": "train_f", "done": 3, "total": 12}) == 0.25
    assert jobs.progress_fraction(None) == 0.0
    training = {"status": "running", "stages": {"train_f": "done"}, "progress": {"stage": "train_g", "done": 5, "total": 10}}
    assert jobs.describe(training) == ("train_g", 0.5, "train_g: 5/10 steps")
    scoring = {"status": "running", "stages": {"train_f": "done", "train_g": "done"}, "progress": training["progress"]}
    assert jobs.describe(scoring) == ("score", 0.4, "score (stage 3 of 5)")
    embedding = {**scoring, "progress": {"stage": "score", "done": 2500, "total": 10000, "unit": "samples"}}
    assert jobs.describe(embedding) == ("score", 0.25, "score: 2,500/10,000 samples")


def test_jobs_know_the_pipeline_without_importing_it():
    from multimem.model import factory
    from multimem.pipeline import stages

    assert jobs.STAGES == stages.STAGES
    assert jobs.shipped_models() == factory.shipped_models()


def test_job_state_reads_the_manifest_and_exit_code(tmp_path):
    assert jobs.state(tmp_path, "new")["status"] == "starting"
    assert jobs.state(tmp_path, "new", returncode=2)["status"] == "failed"
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "job.log").write_text("a\rb\nmultimem: error: boom\n")
    assert jobs.log_tail(tmp_path, "new").splitlines() == ["a", "b", "multimem: error: boom"]


# ---------------------------------------------------------------- on-demand scoring

@pytest.fixture(scope="module")
def scorer(app_runs):
    from multimem.store.runs import Run

    run = Run(app_runs, "demo")
    return pair_score.Scorer.from_run_dir(run.dir, run.manifest(), run.samples()), run


def test_ondemand_reproduces_the_runs_own_scores(scorer):
    """Given the row's own view draws, scoring a sample again gives the table's raw MultiMem and CMC terms."""
    s, run = scorer
    samples, scores = run.samples(), run.scores()
    for _, row in scores.groupby("subset").head(2).iterrows():
        got = s.score(open_image(row["image_ref"]), list(row["captions"]), n_all=len(samples), row=int(row["row"]))
        assert got.multimem_raw == pytest.approx(row["multimem_raw"], abs=2e-5)
        assert got.own_f == pytest.approx(row["own_f"], abs=2e-5) and got.held_g == pytest.approx(row["held_g"], abs=2e-5)
        assert got.cos_f == pytest.approx(row["cos_f"], abs=2e-5)
        assert got.multimem == pytest.approx(row["multimem"], abs=1e-3)


def test_ondemand_uploaded_pair_is_seeded_and_normalised_with_the_runs_range(scorer):
    s, run = scorer
    image = Image.new("RGB", (50, 40), (200, 30, 30))
    a, b = s.score(image, ["a red square"]), s.score(image, ["a red square"])
    assert a == b  # seeded views
    assert a.multimem_raw == pytest.approx(a.cmc_f - a.cmc_g)
    assert a.cmc_f == pytest.approx(a.own_f - a.held_f)
    assert a.value_range == pytest.approx(run.manifest()["metric"]["normalisation"]["range"])
    assert a.multimem == pytest.approx(a.multimem_raw / a.value_range)
    assert a.augmentations == run.manifest()["metric"]["augmentations"]
    with pytest.raises(ValueError):
        s.score(image, ["  "])


def test_view_draws_match_the_engines_draws():
    """The views of row r of n equal what score.iter_views draws for the whole data set, then slices."""
    import torch

    from multimem.model import augment
    from multimem.engine.score import MetricConfig

    cfg = MetricConfig(augmentations=3, seed=4)
    counts = torch.tensor([1, 3, 2, 4])
    params, choices = pair_score.view_draws(cfg, int(counts[2]), n_all=4, row=2)
    for a in range(3):
        gen = augment.generator(cfg.seed, 7_000_000 + a)
        assert torch.equal(params[a], augment.draw_view_params(4, gen, cfg.augment)[2])
        assert int(choices[a]) == int(augment.draw_caption_choice(counts, gen)[2])
