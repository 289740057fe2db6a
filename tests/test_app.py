"""The dashboard's pages through Streamlit's AppTest, against a small real run (tests/conftest.py)."""
from __future__ import annotations

import html
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from multimem.app import select, views
from multimem.app.region import Region
from multimem.data.images import open_image
from multimem.engine.index import NeighbourIndex
from multimem.engine.pair_score import Scorer

from app_helpers import APP, TIMEOUT, open_app


@pytest.fixture
def app(app_runs, monkeypatch):
    """open(**params) -> an AppTest of app.py run once with those query parameters, reading app_runs."""
    return lambda **params: open_app(app_runs, monkeypatch, **params)


def grid_captions(at: AppTest) -> list[str]:
    """Captions of the image cards, in order, from every grid on the page."""
    body = "".join(h.value for h in at.html)
    return [html.unescape(c) for c in re.findall(r'<div class="mm-cap">(.*?)</div>', body)]


def warnings(at: AppTest) -> str:
    return " ".join(w.value for w in at.warning).lower()


def test_overview_shows_the_runs_figures(app, demo_tables):
    manifest, _, scores = demo_tables
    at = app(page="overview", run="demo")
    metrics = {m.label: m.value for m in at.metric}
    means = manifest["summary"]["mean_multimem"]
    assert metrics["Mean MultiMem on S_C candidates"] == f"{means['candidate']:+.3f}"
    assert metrics["Mean MultiMem on S_I independent"] == f"{means['independent']:+.3f}"
    assert metrics["Mean MultiMem on S_S shared"] == f"{means['shared']:+.3f}"
    # the ROC-AUC the page computes equals the engine's summary
    assert metrics["ROC-AUC (candidates)"] == f"{manifest['summary']['injected_auc']:.3f}"
    # utility table: f and g columns hold the manifest's numbers
    util = next(d.value for d in at.dataframe if "f" in d.value.columns and "g" in d.value.columns)
    assert util.loc["image to text R@5", "f"] == pytest.approx(manifest["utility"]["f"]["image_to_text_R@5"])
    assert util.loc["zero shot top1", "g"] == pytest.approx(manifest["utility"]["g"]["zero_shot_top1"])
    # the CMC breakdown is the table's mean per subset
    cmc = next(d.value for d in at.dataframe if "cmc_f" in d.value.columns)
    cand = scores[scores.subset == "candidate"]
    assert cmc.loc["S_C candidates", "cmc_f"] == pytest.approx(cand["cmc_f"].mean(), rel=1e-5)
    assert any("Twemoji" in c.value for c in at.caption)  # the CC-BY attribution
    assert at.query_params["run"] == "demo" and at.query_params["page"] == "overview"


def test_browse_default_grid_is_the_most_memorized_candidates(app, demo_tables):
    _, _, scores = demo_tables
    at = app(page="browse", run="demo")
    cand = scores[scores.subset == "candidate"].sort_values(["multimem", "id"], ascending=[False, True])
    assert grid_captions(at) == cand["caption"].head(24).tolist()
    assert any(f"**{len(cand)}** of {len(scores)} scored pairs match" in c.value for c in at.caption)
    # least memorized: one click
    at.segmented_control(key="b_order").set_value("asc").run(timeout=TIMEOUT)
    least = scores[scores.subset == "candidate"].sort_values(["multimem", "id"], ascending=[True, True])
    assert grid_captions(at) == least["caption"].head(24).tolist()
    assert at.query_params["order"] == "asc"


def test_browse_filters_change_the_grid(app, demo_tables):
    _, _, scores = demo_tables
    at = app(page="browse", run="demo")
    at.selectbox(key="b_injected").set_value("yes").run(timeout=TIMEOUT)
    injected = scores[(scores.subset == "candidate") & scores.injected]
    assert sorted(grid_captions(at)) == sorted(injected["caption"])
    assert at.query_params["injected"] == "yes"

    at.selectbox(key="b_injected").set_value("any")
    at.multiselect(key="b_subsets").set_value(["candidate", "independent", "shared"])
    word = scores["caption"].iloc[0].split()[0].lower()
    at.text_input(key="b_q").set_value(word).run(timeout=TIMEOUT)
    expected = scores[scores["captions"].map(lambda cs: any(word in c.lower() for c in cs))]
    assert any(f"**{len(expected)}** of" in c.value for c in at.caption)
    assert set(grid_captions(at)) <= set(expected["caption"])
    assert at.query_params["q"] == word


def test_browse_view_is_restored_from_the_url(app, demo_tables):
    _, _, scores = demo_tables
    params = {"page": "browse", "run": "demo", "subset": ["independent", "shared"], "order": "asc", "sort": "cmc_f",
              "n": "12", "p": "2", "lo": "-0.5", "hi": "0.9"}
    at = app(**params)
    view, problems = views.parse_browse(params, [])
    assert problems == []
    expected = select.page_of(select.select(scores, view), 2, 12)[0]
    assert grid_captions(at) == expected["caption"].tolist()
    assert at.multiselect(key="b_subsets").value == ["independent", "shared"]
    assert at.selectbox(key="b_sort").value == "cmc_f"
    assert at.slider(key="b_range").value == (-0.5, 0.9)
    assert at.number_input(key="b_page").value == 2
    # the URL written back holds the same view
    assert at.query_params["p"] == "2" and at.query_params["subset"] == ["independent", "shared"]


def test_browse_scatter_selection_in_the_url_filters_the_grid(app, demo_tables):
    _, _, scores = demo_tables
    cand = scores[scores.subset == "candidate"]
    x0, x1 = np.quantile(cand["cmc_g"], [0.2, 0.8])
    y0, y1 = np.quantile(cand["cmc_f"], [0.1, 0.9])
    region = Region("box", (float(x0), float(x1)), (float(y0), float(y1)))
    at = app(page="browse", run="demo", sel=region.to_param(), n="96")
    inside = Region.from_param(region.to_param()).contains(cand["cmc_g"], cand["cmc_f"])
    assert 0 < inside.sum() < len(cand)
    assert sorted(grid_captions(at)) == sorted(cand.loc[inside, "caption"])
    assert any("inside the scatter selection" in c.value for c in at.caption)


def test_sample_deep_link_shows_the_pair_its_scores_and_neighbours(app, app_runs, demo_tables):
    _, samples, scores = demo_tables
    row = scores[(scores.subset == "candidate") & scores.injected].iloc[0]
    at = app(page="sample", run="demo", id=row["id"])
    # an injected pair's caption is the wrong one on purpose: the sample id is the title, the caption shown as text
    assert at.title[0].value == f"Sample {views.plain(row['id'], None)}"
    assert any(views.plain(row["caption"], None) in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["MultiMem (normalised)"] == f"{row['multimem']:+.3f}"
    assert metrics["MultiMem (raw)"] == f"{row['multimem_raw']:+.5f}"
    terms = next(d.value for d in at.dataframe if "f − g" in d.value.columns)
    assert terms.iloc[0]["f"] == pytest.approx(row["cmc_f"]) and terms.iloc[0]["g"] == pytest.approx(row["cmc_g"])
    errors = " ".join(e.value for e in at.error)
    assert views.plain(row["original_caption"], None) in errors  # the injected pair says what it shows
    assert len(at.image) == 1
    index = NeighbourIndex.from_run_dir(app_runs / "demo")
    by_image = [samples["caption"].iloc[r] for r, _ in index.search(int(row["row"]), "image", 8)]
    by_text = [samples["caption"].iloc[r] for r, _ in index.search(int(row["row"]), "text", 8)]
    captions = grid_captions(at)
    assert captions[:8] == by_image and captions[8:16] == by_text and len(captions) == 32
    assert "nearest training images" in at.info[-1].value  # the explanation
    assert at.query_params["id"] == row["id"]


def test_unknown_or_bad_link_values_give_friendly_messages(app, demo_tables):
    at = app(page="sample", run="no-such-run", id="../../etc/passwd")
    text = warnings(at)
    assert "run 'no-such-run', which does not exist here" in text and "showing run" in text
    assert "sample '../../etc/passwd', which is not in this run" in text
    assert at.query_params["run"] in ("demo", "halved")  # fell back to an existing run

    at = app(page="browse", run="../outside", lo="abc", sort="bogus", p="-3", sel="box:1,2", label="nope")
    text = warnings(at)
    assert "not a valid run name" in text and "'lo=abc' is not a number" in text and "'sort=bogus'" in text
    assert "scatter selection ignored" in text and "unknown label nope" in text
    assert at.number_input(key="b_page").value == 1


def test_compare_uses_one_scale_and_finds_the_known_change(app, demo_tables):
    _, _, scores = demo_tables
    at = app(page="compare", run="demo", vs="halved", norm="raw")
    # candidates' raw scores were halved in 'halved': the mean moves half-way to 0, a relative change of 50%
    mean = scores.loc[scores.subset == "candidate", "multimem_raw"].mean()
    expected = f"{-50.0 * np.sign(mean):+.1f}%"
    cand_metric = next(m for m in at.metric if m.label.startswith("Mean on S_C"))
    assert cand_metric.delta.startswith(expected)
    assert cand_metric.value == f"{mean / 2:+.4f}"
    assert any("raw differences" in i.value for i in at.info)
    moved = next(d.value for d in at.dataframe if "open_a" in d.value.columns)
    assert (moved["change"] == moved["B"] - moved["A"]).all()
    assert moved["open_a"].iloc[0].startswith("./sample?page=sample&run=demo&id=")
    # a shared range: the values change, the relative change does not
    at.radio(key="c_mode").set_value("shared").run(timeout=TIMEOUT)
    cand_metric = next(m for m in at.metric if m.label.startswith("Mean on S_C"))
    assert cand_metric.delta.startswith(expected)
    assert any("one shared range" in i.value for i in at.info)
    assert at.query_params["vs"] == "halved" and at.query_params["norm"] == "shared"


def test_runs_page_lists_runs_and_scores_an_uploaded_pair(app, app_runs, demo_tables):
    manifest, samples, scores = demo_tables
    at = app(page="runs", run="demo")
    table = at.dataframe[0].value
    assert set(table["name"]) == {"demo", "halved"} and set(table["status"]) == {"complete"}
    mean = manifest["summary"]["mean_multimem"]["candidate"]
    assert table.set_index("name").loc["demo", "mean_candidate"] == pytest.approx(mean)

    ref = scores["image_ref"].iloc[0]
    buf = io.BytesIO()
    open_image(ref).save(buf, format="PNG")
    at.file_uploader[0].upload("pair.png", buf.getvalue(), "image/png")
    at.text_input[-1].set_value("a red apple")
    at.button[-1].click().run(timeout=TIMEOUT)
    assert not at.exception
    expected = Scorer.from_run_dir(app_runs / "demo", manifest, samples).score(open_image(ref), ["a red apple"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["MultiMem (normalised)"] == f"{expected.multimem:+.3f}"
    assert metrics["MultiMem (raw)"] == f"{expected.multimem_raw:+.5f}"


def test_runs_page_shows_a_failed_jobs_error(tmp_path, monkeypatch):
    from multimem import jobs

    root = tmp_path / "runs"  # its own runs folder: the failed run must not show up in other tests
    proc = jobs.start(jobs.JobRequest(name="broken", source="csv", path=str(tmp_path / "missing.csv")), root)
    assert proc.wait(timeout=120) != 0
    monkeypatch.setenv("MULTIMEM_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["page"] = "runs"
    at.run(timeout=TIMEOUT)
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "**broken**: failed" in " ".join(m.value for m in at.markdown) and "Failed:" in errors
    assert "missing.csv" in errors
    assert any("missing.csv" in c.value for c in at.code)  # the job's log


def test_no_runs_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMEM_RUNS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["page"] = "browse"
    at.run(timeout=TIMEOUT)
    assert not at.exception
    assert "python -m multimem demo" in at.info[0].value and "make run" in at.info[0].value


# ---- mitigations from the Runs page (pages/runs.py, multimem.mitigate.start_job)

def runs_page(root: Path, monkeypatch, **state) -> AppTest:
    """The Runs page on `root`, with these session-state values (mit_open=True: the mitigation form is open)."""
    monkeypatch.setenv("MULTIMEM_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["page"] = "runs"
    for key, value in state.items():
        at.session_state[key] = value
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def own_demo(app_runs, tmp_path) -> Path:
    """A runs root of its own with a copy of 'demo': the runs these tests derive must not show up in others."""
    root = tmp_path / "runs"
    shutil.copytree(app_runs / "demo", root / "demo", ignore=shutil.ignore_patterns(".lock"))
    return root


def test_mitigation_form_lists_the_strategies_and_shows_noise_by_default(app_runs, monkeypatch):
    from multimem.mitigation import noise, removal
    from multimem.mitigation.base import options

    closed = runs_page(app_runs, monkeypatch)
    assert any(e.label.startswith("Derive a run") for e in closed.expander)
    assert not [r for r in closed.radio if r.key == "mit_strategy"]  # not drawn (nor torch loaded) until opened

    at = runs_page(app_runs, monkeypatch, mit_open=True)
    strategy = at.radio(key="mit_strategy")
    assert strategy.options == ["noise", "captions", "removal", "regroup", "reseed"] and strategy.value == "noise"
    assert "Gaussian noise" in strategy.proto.captions[0] and "fine-tune f" in strategy.proto.captions[2]
    assert at.selectbox(key="mit_parent").options == ["demo", "halved"]  # complete runs
    assert at.text_input(key="mit_noise_std").value == f"{noise.NoiseParams().std:g}" == "0.1"
    assert at.selectbox(key="mit_noise_modalities").value == "all"
    assert at.selectbox(key="mit_noise_noise_space").value == noise.NoiseParams().noise_space
    assert at.text_input(key="mit_noise_std").help == options()["std"].help
    assert not [t for t in at.text_input if t.key and t.key.startswith("mit_removal_")]

    strategy.set_value("removal").run(timeout=TIMEOUT)
    d = removal.RemovalParams()
    assert at.text_input(key="mit_removal_n").value == str(d.n)
    assert at.selectbox(key="mit_removal_ranking").options == list(removal.RANKINGS)
    assert at.selectbox(key="mit_removal_pool").value == d.pool
    assert at.text_input(key="mit_removal_finetune_epochs").value == str(d.finetune_epochs)
    assert at.text_input(key="mit_removal_folds").value == str(d.folds)  # the multimem-kfold ranking's K
    at.radio(key="mit_strategy").set_value("regroup").run(timeout=TIMEOUT)
    assert [at.text_input(key=f"mit_regroup_{o}").value for o in ("folds", "every", "top")] == ["4", "10", "0.05"]
    at.radio(key="mit_strategy").set_value("captions").run(timeout=TIMEOUT)
    assert at.text_input(key="mit_captions_captions_per_image").value == "all"


def test_mitigation_bad_values_give_a_message_and_start_nothing(own_demo, monkeypatch):
    at = runs_page(own_demo, monkeypatch, mit_open=True)

    def start(**values) -> str:
        for key, value in values.items():
            at.text_input(key=key).set_value(value)
        at.button(key="mit_start").click().run(timeout=TIMEOUT)
        assert not at.exception, [e.value for e in at.exception]
        return " ".join(e.value for e in at.error)

    assert "Noise σ (std) must be a number, got 'abc'" in start(mit_noise_std="abc")
    assert "noise std must be a number in (0, 10]" in start(mit_noise_std="0")
    assert "a name other than its parent's" in start(mit_noise_std="0.1", mit_name="demo")
    at.text_input(key="mit_name").set_value("")
    at.radio(key="mit_strategy").set_value("regroup").run(timeout=TIMEOUT)
    assert "never rescores: the parent trains 2 epochs" in start()  # the fast demo: checked before a job starts
    at.radio(key="mit_strategy").set_value("captions").run(timeout=TIMEOUT)
    assert "'demo' already trains that way" in start()  # all captions: what the parent did
    assert "a whole number or 'all'" in start(mit_captions_captions_per_image="1.5")
    at.radio(key="mit_strategy").set_value("removal").run(timeout=TIMEOUT)
    assert "cannot remove 100000 samples" in start(mit_removal_n="100000").lower()
    assert [p.name for p in own_demo.iterdir()] == ["demo"]  # no job folder left behind
    assert not any("**demo." in m.value for m in at.markdown)  # and no job


def test_starting_a_noise_mitigation_makes_a_run_derived_from_demo(own_demo, monkeypatch):
    from multimem.app import cache
    from multimem.store.runs import Run

    name = "demo.noise-image-0.05"
    at = runs_page(own_demo, monkeypatch, mit_open=True)
    at.text_input(key="mit_noise_std").set_value("0.05")
    at.selectbox(key="mit_noise_modalities").set_value("image")
    at.button(key="mit_start").click().run(timeout=TIMEOUT)
    try:
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        assert f"Started {name}, a noise mitigation of demo" in at.success[0].value
        # the job: `multimem mitigate` with the values given, shown in the job view at once
        argv = json.loads((own_demo / name / "job.json").read_text())["argv"]
        assert argv[1:] == ["-m", "multimem", "mitigate", "--from", "demo", "--strategy", "noise", "--runs-root",
                            str(own_demo), "--name", name, "--std", "0.05", "--modalities", "image"]
        assert any(md.value.startswith(f"**{name}**: ") for md in at.markdown)
        proc = cache.jobs()[name]  # the server's job table (one per process, shared with AppTest)
        assert proc.wait(timeout=600) == 0, (own_demo / name / "job.log").read_text()[-3000:]
        m = Run(own_demo, name).manifest()
        assert m["status"] == "complete"
        assert m["lineage"] == {"parent": "demo", "mitigation": {"strategy": "noise", "std": 0.05,
                                                                  "modalities": ["image"], "noise_space": "raw"}}
        assert m["config"]["train"]["feature_noise"] == {"image": 0.05}
        assert m["comparison"]["parent"] == "demo"

        at.run(timeout=TIMEOUT)  # the job view says complete and links to Compare; the list shows its parent
        assert not at.exception
        assert any(md.value.startswith(f"**{name}**: complete") for md in at.markdown)
        compare = views.link("compare", {"run": name, "vs": "demo"})
        assert any(f"[Compare with its parent demo]({compare})" in md.value for md in at.markdown)
        table = at.dataframe[0].value.set_index("name")
        assert table.loc[name, "parent"] == "demo" and table.loc[name, "status"] == "complete"
    finally:
        proc = cache.jobs().pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()


def test_overview_shows_skipped_samples_and_their_reasons(app_runs, tmp_path, monkeypatch):
    shutil.copytree(app_runs / "demo", tmp_path / "demo", ignore=shutil.ignore_patterns(".lock"))
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    manifest["dataset"]["skipped"] = {"count": 2, "examples": [
        {"where": "data.csv:7", "reason": "data.csv:7: empty caption"},
        {"where": "img/9.png", "reason": "img/9.png: cannot decode image (truncated)"}]}
    (tmp_path / "demo" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("MULTIMEM_RUNS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run(timeout=TIMEOUT)
    assert any("2 samples of the dataset were unusable" in w.value for w in at.warning)
    shown = at.dataframe[0].value
    assert list(shown["where"]) == ["data.csv:7", "img/9.png"] and "cannot decode" in shown["reason"].iloc[1]
