"""The dashboard through a researcher's and a curator's day: job checks and control, Browse, curation lists,
review mode and the HTML report, through Streamlit's AppTest against the small real run of tests/conftest.py."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from multimem import jobs
from multimem.store.runs import Run
from multimem.data.sources.base import DataError

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60


def page(root: Path, monkeypatch, name: str, state: dict | None = None, **params) -> AppTest:
    monkeypatch.setenv("MULTIMEM_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["page"] = name
    for key, value in params.items():
        at.query_params[key] = value
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


def by_label(widgets, label: str):
    return next(w for w in widgets if w.label.startswith(label))


def small_csv(folder: Path, rows: int = 12, cols=("filepath", "title")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",".join(cols)]
    for i in range(rows):
        Image.new("RGB", (8, 8), (i * 20 % 255, 0, 0)).save(folder / f"{i}.png")
        lines.append(f"{i}.png,picture number {i}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    return folder / "data.csv"


# ---------------------------------------------------------------- 1. jobs: checked before they start, controlled

def test_validate_uses_the_clis_checks_before_anything_starts(tmp_path):
    root = tmp_path / "runs"
    csv = small_csv(tmp_path / "data", rows=12)
    req = lambda **kw: jobs.JobRequest(**{"name": "x", "source": "csv", "path": str(csv), "candidate": 2.0,
                                          "extra": 2.0, **kw})
    found = jobs.validate(req(), root)
    assert found.samples == 12 and found.sizes == {"shared": 6, "candidate": 2, "independent": 2, "extra": 2}
    with pytest.raises(DataError, match="missing.csv: file not found"):
        jobs.validate(req(path=str(tmp_path / "missing.csv")), root)
    with pytest.raises(DataError, match="no column 'caption'"):
        jobs.validate(req(caption_col="caption", image_col="filepath"), root)
    with pytest.raises(DataError, match="12 usable samples, too few"):
        jobs.validate(req(candidate=5.0, extra=5.0), root)
    with pytest.raises(DataError, match="unknown model name 'nope'"):
        jobs.validate(req(model="nope"), root)
    with pytest.raises(DataError, match="needs a path"):
        jobs.validate(req(path=None), root)
    assert not root.exists() or not any(root.iterdir())  # nothing written by any check


def test_a_new_run_with_a_missing_csv_is_not_started(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    at = page(root, monkeypatch, "runs")
    by_label(at.text_input, "Run name").set_value("bad")
    by_label(at.selectbox, "Dataset source").set_value("csv")
    by_label(at.text_input, "Path").set_value(str(tmp_path / "missing.csv"))
    at.button(key="run_start").click().run(timeout=TIMEOUT)
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Not started" in errors and "missing.csv" in errors and "file not found" in errors
    assert not at.success and list(root.iterdir()) == []  # no job, no run folder left behind


def test_eta_from_the_progress_rate():
    assert jobs.eta([(0.0, 0)], 100) is None
    assert jobs.eta([(0.0, 10), (10.0, 30)], 100) == pytest.approx(35.0)  # 2 per second, 70 to go
    assert jobs.eta([(0.0, 10), (10.0, 10)], 100) is None
    assert jobs.eta_text(35) == "about 35 s left in this stage" and "min" in jobs.eta_text(600)


def test_the_command_shown_is_a_shell_line_with_the_python_executable(tmp_path):
    import shlex

    argv = jobs.command(jobs.JobRequest(name="a b", source="csv", path="/data/my file.csv"), tmp_path)
    line = jobs.shell_command(argv)
    assert shlex.split(line) == argv and line.startswith(shlex.quote(sys.executable) + " -m multimem train")


def fake_run(root: Path, name: str, status: str, error: str | None = None) -> Run:
    run = Run(root, name)
    run.update(status=status, error=error, stages={})
    return run


def test_jobs_running_first_failed_dismissable(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    fake_run(root, "a-failed", "failed", "RuntimeError: boom")
    running = fake_run(root, "z-running", "running")
    with running.lock():  # a live writer holds the lock: the run is running
        at = page(root, monkeypatch, "runs")
        heads = [m.value for m in at.markdown if m.value.startswith("**")]
        assert heads[:2] == ["**z-running**: running", "**a-failed**: failed"]
        assert at.button(key="cancel_z-running") and not at.button(key="cancel_z-running").disabled
        at.button(key="dismiss_a-failed").click().run(timeout=TIMEOUT)
        heads = [m.value for m in at.markdown if m.value.startswith("**")]
        assert heads == ["**z-running**: running"]
    assert (root / "a-failed").is_dir()  # dismissing hides the card; the run stays resumable


def test_a_cancelled_job_leaves_a_resumable_incomplete_run(tmp_path):
    root = tmp_path / "runs"
    req = jobs.JobRequest(name="stopme", limit=400, epochs=50, candidate=60.0, extra=80.0, augmentations=2,
                          heldout_size=80)
    jobs.validate(req, root)
    proc = jobs.start(req, root)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            state = jobs.state(root, "stopme", proc.poll())
            if (state.get("progress") or {}).get("stage") == "train_f":
                break
            assert proc.poll() is None, jobs.log_tail(root, "stopme")
            time.sleep(0.5)
        assert jobs.cancel(root, "stopme", proc)
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    m = Run(root, "stopme").manifest()
    assert m["status"] == "incomplete" and "resume" in m["error"]
    assert Run(root, "stopme").status() == "incomplete"
    assert "interrupted" in jobs.log_tail(root, "stopme")


# ---------------------------------------------------------------- 2. Browse

@pytest.fixture
def own_demo(app_runs, tmp_path) -> Path:
    """A runs root of its own with a copy of 'demo' (lists and derived runs must not leak into other tests)."""
    root = tmp_path / "runs"
    shutil.copytree(app_runs / "demo", root / "demo", ignore=shutil.ignore_patterns(".lock", "lists"))
    return root


def cards_html(at: AppTest) -> str:
    return "".join(h.value for h in at.html if "mm-card" in h.value)


def test_scatter_colours_are_symmetric_and_fitted_to_the_data(app_runs, monkeypatch, demo_tables):
    """The interactive chart (the picture drawn first is checked in test_app_speed_paths)."""
    at = page(app_runs, monkeypatch, "browse", run="demo", chart="interactive")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    marker = spec["data"][0]["marker"]
    _, _, scores = demo_tables
    top = scores.loc[scores.subset == "candidate", "multimem"].abs().max()  # the points shown: S_C
    assert marker["cmin"] == -marker["cmax"] and marker["cmid"] == 0
    assert marker["cmax"] == pytest.approx(top) and marker["cmax"] < 1


def test_card_scores_say_what_they_are_with_their_standard_error(own_demo, monkeypatch):
    scores = pd.read_parquet(own_demo / "demo" / "scores.parquet")
    scores["multimem_se"] = scores["multimem_raw"].abs() * 0 + 0.001  # as a --replicas K run has it
    scores.to_parquet(own_demo / "demo" / "scores.parquet")
    at = page(own_demo, monkeypatch, "browse", run="demo")
    body = cards_html(at)
    cand = scores[scores.subset == "candidate"].sort_values(["multimem", "id"], ascending=[False, True])
    assert "100th percentile in S_C · 0 = f and g agree" in body
    factor = (cand["multimem"] / cand["multimem_raw"]).median()
    assert f"± {0.001 * factor:.3f}" in body and "standard error over the run" in body


def test_calibrated_scores_sort_and_filter_only_when_the_table_has_them(own_demo, monkeypatch, demo_tables):
    _, _, scores = demo_tables
    assert "multimem_calibrated" in scores
    at = page(own_demo, monkeypatch, "browse", run="demo", sort="multimem_calibrated", order="asc",
              score="multimem_calibrated", lo="0")
    assert at.selectbox(key="b_sort").value == "multimem_calibrated"
    assert "MultiMem calibrated (raw − S_S mean)" in at.selectbox(key="b_sort").options
    from multimem.app import columns

    values = columns.score_values(scores, "multimem_calibrated")
    expected = scores[(scores.subset == "candidate") & (values >= 0)].sort_values(
        ["multimem_calibrated", "id"], ascending=[True, True])
    captions = [c for c in __import__("re").findall(r'<div class="mm-cap">(.*?)</div>', cards_html(at))]
    import html as _html
    assert [_html.unescape(c) for c in captions] == expected["caption"].head(24).tolist()
    # a table without the calibrated columns: not offered, a link asking for them gets a note
    plain = scores.drop(columns=[c for c in scores if c.startswith("multimem_calibrated")])
    plain.to_parquet(own_demo / "demo" / "scores.parquet")
    at = page(own_demo, monkeypatch, "browse", run="demo", sort="multimem_calibrated")
    assert not any("calibrated" in o for o in at.selectbox(key="b_sort").options)
    assert any("sort=multimem" in w.value and "calibrated" in w.value for w in at.warning)


def test_a_huge_page_number_is_clamped_with_a_note(app_runs, monkeypatch):
    at = page(app_runs, monkeypatch, "browse", run="demo", p="99999")
    assert at.number_input(key="b_page").value == 3  # 60 candidates, 24 a page
    assert any("Page 99,999 does not exist" in w.value and "showing page 3" in w.value for w in at.warning)


def test_cards_open_their_sample_inside_the_app(app_runs, monkeypatch):
    at = page(app_runs, monkeypatch, "browse", run="demo")
    links = [e.proto for e in at.get("page_link")]
    assert len(links) == 24 and all(p.page == "sample" for p in links)  # st.page_link: no page load
    assert links[0].query_string.startswith("page=sample&run=demo&id=")
    assert "mm-card" in cards_html(at) and 'target="_blank"' not in cards_html(at)


# ---------------------------------------------------------------- 3. curation lists

def test_tagging_from_cards_makes_a_list_in_the_run_folder_and_filters_browse(own_demo, monkeypatch):
    from multimem.store import lists

    at = page(own_demo, monkeypatch, "browse", run="demo", list="keep")
    boxes = [c for c in at.checkbox if c.key and c.key.startswith("tag_")]
    assert len(boxes) == 24
    first, third = boxes[0].key[4:], boxes[2].key[4:]
    boxes[0].check().run(timeout=TIMEOUT)
    next(c for c in at.checkbox if c.key == f"tag_{third}").check().run(timeout=TIMEOUT)
    assert not at.exception and not at.error
    saved = json.loads((own_demo / "demo" / "lists" / "keep.json").read_text())
    assert saved["ids"] == [first, third] and saved["run"] == "demo"
    at.toggle(key="b_only").set_value(True).run(timeout=TIMEOUT)
    assert at.query_params["list"] == "keep" and at.query_params["only"] == "1"
    assert any("**2** of 2 scored pairs match" in c.value for c in at.caption)
    # a fresh session (a restart) opened from the link sees the same list
    again = page(own_demo, monkeypatch, "browse", run="demo", list="keep", only="1")
    assert sorted(c.key[4:] for c in again.checkbox if c.key and c.key.startswith("tag_")) == sorted([first, third])
    assert all(c.value for c in again.checkbox if c.key and c.key.startswith("tag_"))
    assert lists.list_names(own_demo, "demo") == ["keep"]
    next(c for c in again.checkbox if c.key == f"tag_{first}").uncheck().run(timeout=TIMEOUT)
    assert lists.read_list(own_demo, "demo", "keep") == [third]


def test_list_names_ids_exports_and_id_files(own_demo, tmp_path, demo_tables):
    from multimem.store import lists

    _, _, scores = demo_tables
    ids = scores.loc[scores.subset == "candidate", "id"].head(3).tolist()
    for bad in ("../x", "", "a/b", ".hidden", "x" * 65):
        with pytest.raises(lists.ListError):
            lists.add_to_list(own_demo, "demo", bad, ids)
    with pytest.raises(lists.ListError, match="'nope' is not a sample of run 'demo'"):
        lists.add_to_list(own_demo, "demo", "mine", ["nope"])
    assert lists.add_to_list(own_demo, "demo", "mine", ids + ids[:1]) == ids  # order kept, no repeats
    table = lists.export_table(scores, lists.read_list(own_demo, "demo", "mine"))
    assert table["id"].tolist() == ids
    assert {"id", "caption", "captions", "image_ref", "multimem", "multimem_raw", "cmc_f", "cmc_g"} <= set(table)
    assert pd.read_csv(__import__("io").BytesIO(lists.to_csv_bytes(table)))["id"].tolist() == ids
    assert pd.read_parquet(__import__("io").BytesIO(lists.to_parquet_bytes(table)))["id"].tolist() == ids
    (tmp_path / "a.txt").write_text("\n".join(ids) + "\n\n")
    pd.DataFrame({"id": ids, "x": 1}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"id": ids}).to_parquet(tmp_path / "a.parquet")
    for f in ("a.txt", "a.csv", "a.parquet"):
        assert lists.read_ids(tmp_path / f) == ids
    assert lists.read_ids(lists.list_path(own_demo, "demo", "mine")) == ids
    pd.DataFrame({"key": ids}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(lists.ListError, match="no 'id' column"):
        lists.read_ids(tmp_path / "b.csv")
    opts = lists.removal_options(own_demo, "demo", "mine")
    assert opts["ranking"] == "ids" and opts["n"] == 3 and opts["pool"] == "candidate"
    indep = scores.loc[scores.subset == "independent", "id"].iloc[0]
    lists.add_to_list(own_demo, "demo", "mine", [indep])
    with pytest.raises(lists.ListError, match="never trained on"):
        lists.removal_options(own_demo, "demo", "mine")


def test_cli_removal_ranked_by_an_ids_file(own_demo, tmp_path, demo_tables, capsys):
    from multimem import cli

    _, _, scores = demo_tables
    ids = scores.loc[scores.subset == "candidate"].sort_values("multimem")["id"].head(4).tolist()  # least first
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "bad.txt").write_text(f"{ids[0]}\nno-such-id\n")
    base = ["mitigate", "--from", "demo", "--strategy", "removal", "--runs-root", str(own_demo), "--ranking", "ids",
            "--finetune-epochs", "1"]
    assert cli.main(base + ["--ids", str(tmp_path / "bad.txt"), "--name", "bad"]) == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and "unknown id 'no-such-id'" in err
    assert cli.main(base + ["--n", "9", "--ids", str(tmp_path / "ids.txt")]) == 2
    assert "lists 4 ids" in capsys.readouterr().err
    assert cli.main(base + ["--ids", str(tmp_path / "ids.txt"), "--name", "demo.rm-list"]) == 0
    run = Run(own_demo, "demo.rm-list")
    m = run.manifest()
    assert m["status"] == "complete" and m["lineage"]["mitigation"]["n"] == 4  # --n: the list's length
    ranking = pd.read_parquet(run.path("mitigation", "ranking.parquet"))
    assert ranking.head(4)["id"].tolist() == ids  # the file's order is the ranking


# ---------------------------------------------------------------- 4. review mode

def test_review_mode_turns_off_every_write(own_demo, monkeypatch):
    from multimem.store import review_mode
    from multimem.store import lists
    from multimem.store.runs import RunError

    monkeypatch.setenv("MULTIMEM_READONLY", "1")
    at = page(own_demo, monkeypatch, "browse", run="demo", list="keep")
    tags = [c for c in at.checkbox if c.key and c.key.startswith("tag_")]
    assert tags and all(c.disabled for c in tags)
    assert at.text_input(key="b_new_list").disabled and at.button(key="b_remove").disabled
    assert [p.proto.page for p in at.get("page_link")].count("sample") == 24  # every view and link still works
    runs = page(own_demo, monkeypatch, "runs", run="demo", state={"mit_open": True})
    assert any("Review mode" in i.value for i in runs.info)
    writers = [b for b in runs.button if b.key in ("run_start", "mit_start")] + \
        [b for b in runs.button if b.proto.label == "Score"]
    assert len(writers) == 3 and all(b.disabled for b in writers)
    assert all(u.disabled for u in runs.get("file_uploader"))
    # the library refuses as well, whatever a page draws
    for call in (lambda: lists.add_to_list(own_demo, "demo", "keep", ["x"]),
                 lambda: lists.delete_list(own_demo, "demo", "keep"),
                 lambda: jobs.start(jobs.JobRequest(name="x"), own_demo),
                 lambda: jobs.validate(jobs.JobRequest(name="x"), own_demo),
                 lambda: jobs.cancel(own_demo, "demo")):
        with pytest.raises(review_mode.ReadOnlyError, match="review mode"):
            call()
    assert isinstance(review_mode.ReadOnlyError("x"), RunError)
    assert sorted(p.name for p in own_demo.iterdir()) == ["demo"] and not (own_demo / "demo" / "lists").exists()


# ---------------------------------------------------------------- 5. the report

def resources(doc: str) -> list[str]:
    """src/href values (and CSS url()s) of the document outside its inline scripts: what a browser would fetch."""
    import re

    outside = re.sub(r"(?is)<script\b[^>]*>.*?</script>", "<script></script>", doc)
    found = re.findall(r"""(?i)\b(?:src|href)\s*=\s*["']?([^"' >]+)""", outside)
    found += re.findall(r"""(?i)url\(\s*["']?([^"')]+)""", outside)
    found += re.findall(r"""(?i)<script\b[^>]*\bsrc\s*=\s*["']?([^"' >]+)""", doc)
    return found


def test_browse_report_is_one_self_contained_file(app_runs, monkeypatch, demo_tables, tmp_path):
    import plotly.graph_objects as go

    from multimem.app import report
    from multimem.app.cards import Card, thumbnail_uri

    at = page(app_runs, monkeypatch, "browse", run="demo")
    assert any(b.proto.label == "Download report" for b in at.get("download_button"))
    manifest, _, scores = demo_tables
    cand = scores[scores.subset == "candidate"].sort_values(["multimem", "id"], ascending=[False, True]).head(24)
    cards = [Card(image=thumbnail_uri(Image.open(r)), caption=c, href="./sample?id=1", score=0.1)
             for r, c in zip(cand["image_ref"], cand["caption"])]
    doc = report.view_report("Browse", "demo", manifest, cards=cards, figures=[go.Figure(go.Scattergl(x=[1], y=[2]))],
                             link="http://localhost:8501/browse?page=browse&run=demo")
    assert doc.count('class="mm-card"') == 24 and doc.count("data:image/webp;base64,") == 24
    assert not [r for r in resources(doc) if r.lower().startswith(("http:", "https:", "//"))]
    assert "Plotly.newPlot" in doc and "cdn.plot.ly" not in doc.split("Plotly.newPlot")[1]
    assert "http://localhost:8501/browse?page=browse&amp;run=demo" in doc  # the link it came from, as text
    assert '"epochs": 2' in doc or "config.train.epochs" in doc
    (tmp_path / "report.html").write_text(doc, encoding="utf-8")


@pytest.mark.parametrize("name, query", [("overview", {"run": "demo"}), ("compare", {"run": "demo", "vs": "halved"})])
def test_overview_and_compare_offer_the_report_too(app_runs, monkeypatch, name, query):
    at = page(app_runs, monkeypatch, name, **query)
    assert [b.proto.label for b in at.get("download_button")].count("Download report") == 1
