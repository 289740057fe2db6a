"""Users' own data: a folder that is not a usable run never takes the others down, link values and a dataset's
captions show as typed (never as Markdown), run status reads the same everywhere, and injection is mentioned only
for runs that have it. AppTest against copies of the session's demo run (tests/conftest.py)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from multimem import cli
from multimem.app import cache, views
from multimem.store.runs import Run, list_runs

from app_helpers import open_app


def copy_run(app_runs: Path, root: Path, name: str, **manifest) -> Path:
    """The demo run copied to root/name (no lock file), its manifest updated with `manifest`."""
    folder = root / name
    shutil.copytree(app_runs / "demo", folder, ignore=shutil.ignore_patterns(".lock"))
    m = json.loads((folder / "manifest.json").read_text())
    m.update(name=name, **manifest)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def warnings(at: AppTest) -> list[str]:
    return texts(at.warning)


# ---------------------------------------------------------------- A: one odd folder does not take everything down

@pytest.fixture
def odd_root(app_runs, tmp_path) -> Path:
    """A runs root with one good run and four folders that are not usable runs."""
    root = tmp_path / "runs"
    root.mkdir()
    copy_run(app_runs, root, "good")
    elsewhere = tmp_path / "elsewhere" / "stray"
    elsewhere.mkdir(parents=True)
    shutil.copy(app_runs / "demo" / "manifest.json", elsewhere / "manifest.json")
    (root / "outside").symlink_to(elsewhere, target_is_directory=True)  # a link pointing out of the root
    (root / "badjson").mkdir()
    (root / "badjson" / "manifest.json").write_text("{not json")
    (root / "binary").mkdir()
    (root / "binary" / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")  # cannot be read as text
    (root / "listed").mkdir()
    (root / "listed" / "manifest.json").write_text("[1, 2]")  # JSON, but not a manifest
    return root


def test_list_runs_skips_unusable_folders_with_a_note(odd_root):
    table = list_runs(odd_root)
    assert table["name"].tolist() == ["good"] and table["status"].tolist() == ["complete"]
    skipped = table.attrs["skipped"]
    assert [note.split(":")[0] for note in skipped] == ["badjson", "binary", "listed", "outside"]
    assert "outside the runs folder" in skipped[3] and "not valid JSON" in skipped[0]
    assert "not a JSON object" in skipped[2] and "cannot be read" in skipped[1]
    assert all("\n" not in note for note in skipped)


def test_cli_runs_lists_the_others_and_notes_the_skipped(odd_root, capsys):
    assert cli.main(["runs", "--runs-root", str(odd_root)]) == 0
    out, err = capsys.readouterr()
    assert "good" in out and "complete" in out
    assert "outside" not in out and "badjson" not in out
    notes = err.strip().splitlines()
    assert len(notes) == 4 and all(n.startswith("multimem: skipped ") for n in notes)
    assert any("outside" in n and "outside the runs folder" in n for n in notes)


@pytest.mark.parametrize("page", ["overview", "browse", "sample", "compare", "runs"])
def test_every_page_works_beside_unusable_folders(odd_root, monkeypatch, page):
    at = open_app(odd_root, monkeypatch, page=page)
    assert at.selectbox(key="run").options == ["good"]
    side = " ".join(texts(at.sidebar.caption))
    assert "Skipped 4 folders" in side and "outside" in side and "badjson" in side
    if page == "runs":
        assert at.dataframe[0].value["name"].tolist() == ["good"]
        shown = " ".join(warnings(at))
        assert all(f"Skipped {name}" in shown for name in ("outside", "badjson", "binary", "listed"))


# ---------------------------------------------------------------- B: link values and captions are text

LINK = "[CLICK HERE](http://x)"
IMAGE = "![t](http://x/x.png)"


def assert_literal(value: str, raw: str) -> None:
    """`value` (Markdown) holds `raw` escaped so that it renders as typed, and no live link or image."""
    assert views.plain(raw) in value, value
    assert raw not in value
    assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", value), value  # no [text]( with both brackets unescaped


def test_plain_escapes_markdown_and_cuts_long_values():
    assert views.plain(LINK) == r"\[CLICK HERE\]\(http\://x\)"
    assert views.plain(IMAGE) == r"\!\[t\]\(http\://x/x.png\)"
    assert views.plain("a" * 200) == "a" * 80 + "…"
    assert views.plain("a" * 200, None) == "a" * 200
    assert views.plain("two\nlines\r\n# head") == r"two lines \# head"
    assert views.plain("- item") == r"\- item" and views.plain("1. item") == r"1\. item"
    assert views.plain("www.x.com <b>&amp; $x$ :red[y] *e* _u_ `c` ~s~") == \
        r"www\.x.com \<b\>\&amp; \$x\$ \:red\[y\] \*e\* \_u\_ \`c\` \~s\~"
    assert views.plain("grinning face, 2 o'clock / 50%") == "grinning face, 2 o'clock / 50%"  # plain stays plain


def test_browse_link_values_are_echoed_as_text(app_runs, monkeypatch):
    at = open_app(app_runs, monkeypatch, page="browse", run="demo", sort=LINK, p=IMAGE, x="b" * 200)
    shown = warnings(at)
    sort = next(w for w in shown if "'sort=" in w)
    assert_literal(sort, LINK)
    page = next(w for w in shown if "'p=" in w)
    assert_literal(page, IMAGE)
    long = next(w for w in shown if "'x=" in w)
    assert "'x=" + "b" * 80 + "…'" in long and "b" * 81 not in long
    assert at.selectbox(key="b_sort").value == "multimem" and at.number_input(key="b_page").value == 1


def test_run_sample_and_compare_link_values_are_echoed_as_text(app_runs, monkeypatch):
    at = open_app(app_runs, monkeypatch, page="sample", run=LINK, id=IMAGE)
    shown = warnings(at)
    assert_literal(next(w for w in shown if "not a valid run name" in w), LINK)
    assert_literal(next(w for w in shown if "not in this run" in w), IMAGE)

    at = open_app(app_runs, monkeypatch, page="sample", run="demo", id="www.evil.example/" + "c" * 100)
    sample = next(w for w in warnings(at) if "not in this run" in w)
    assert "www\\.evil.example/" + "c" * 63 + "…'" in sample  # 80 characters, then the ellipsis

    at = open_app(app_runs, monkeypatch, page="compare", run="demo", vs="x" + LINK, norm=IMAGE, subset=LINK)
    shown = warnings(at)
    assert_literal(next(w for w in shown if "'norm=" in w), IMAGE)
    assert_literal(next(w for w in shown if "nknown subset" in w), LINK)
    assert_literal(next(w for w in shown if "not a valid run name" in w), "x" + LINK)


def test_a_datasets_captions_show_as_text(app_runs, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    folder = copy_run(app_runs, root, "odd")
    caption = "[win](http://x) ![p](http://x/p.png) **bold** <b>tag</b>"
    samples = pd.read_parquet(folder / "samples.parquet")
    scores = pd.read_parquet(folder / "scores.parquet")
    sid = scores.loc[scores["subset"] == "candidate", "id"].iloc[0]
    samples.loc[samples["id"] == sid, "caption"] = caption
    samples["captions"] = [[caption, *cs[1:]] if i == sid else cs for i, cs in zip(samples["id"], samples["captions"])]
    scores.loc[scores["id"] == sid, "caption"] = caption
    samples.to_parquet(folder / "samples.parquet")
    scores.to_parquet(folder / "scores.parquet")

    at = open_app(root, monkeypatch, page="sample", run="odd", id=sid)
    assert at.title[0].value == views.plain(caption, None)
    listed = next(m.value for m in at.markdown if m.value.startswith("**Captions**"))
    assert f"1. {views.plain(caption, None)}" in listed
    for value in [at.title[0].value, listed, *texts(at.info), *texts(at.error)]:
        assert "](" not in value.replace("\\]\\(", ""), value  # every bracket and parenthesis escaped
        assert "<b>" not in value and "**bold**" not in value


# ---------------------------------------------------------------- C: the sidebar and links tell the truth

def test_a_killed_run_reads_incomplete_in_the_sidebar_as_in_the_cli(app_runs, tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    copy_run(app_runs, root, "killed", status="running")  # the manifest says running; nobody holds its lock
    assert list_runs(root).set_index("name").loc["killed", "status"] == "incomplete"
    at = open_app(root, monkeypatch, page="overview", run="killed")
    side = " ".join(texts(at.sidebar.caption))
    assert "Status: incomplete" in side and "Status: running" not in side
    assert any("status incomplete" in c for c in texts(at.caption))  # the Overview's line under the title
    assert cli.main(["runs", "--runs-root", str(root)]) == 0
    assert "incomplete" in capsys.readouterr().out

    with Run(root, "killed").lock():  # a live job holds the lock: running it is
        cache._run_table.clear()  # the run list is cached for a few seconds
        at = open_app(root, monkeypatch, page="overview", run="killed")
        assert "Status: running" in " ".join(texts(at.sidebar.caption))


def test_a_link_to_a_run_without_scores_says_why(app_runs, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    copy_run(app_runs, root, "demo")
    broken = copy_run(app_runs, root, "broken", status="failed", error="RuntimeError: CUDA out of memory [x](y)")
    (broken / "scores.parquet").unlink()
    stopped = copy_run(app_runs, root, "stopped", status="running")  # killed before scoring
    (stopped / "scores.parquet").unlink()
    live = copy_run(app_runs, root, "live", status="running")
    (live / "scores.parquet").unlink()

    at = open_app(root, monkeypatch, page="browse", run="broken")
    text = " ".join(warnings(at))
    assert "Run 'broken' failed before it was scored: RuntimeError\\: CUDA out of memory \\[x\\]\\(y\\)" in text
    assert "run the same command again to resume" in text and "Runs page" in text
    assert "does not exist" not in text and "showing run 'demo' instead" in text
    assert at.selectbox(key="run").value == "demo"

    at = open_app(root, monkeypatch, page="overview", run="stopped")
    text = " ".join(warnings(at))
    assert "Run 'stopped' stopped before it was scored (incomplete)" in text and "does not exist" not in text

    with Run(root, "live").lock():
        cache._run_table.clear()  # the run list is cached for a few seconds
        at = open_app(root, monkeypatch, page="overview", run="live")
        text = " ".join(warnings(at))
        assert "Run 'live' is still running and has no scores yet" in text and "does not exist" not in text

    at = open_app(root, monkeypatch, page="overview", run="gone")
    assert "run 'gone', which does not exist here" in " ".join(warnings(at))

    copy_run(app_runs, root, "other")  # Compare needs a second scored run
    cache._run_table.clear()
    at = open_app(root, monkeypatch, page="compare", run="demo", vs="broken")
    assert any("Run 'broken' failed before it was scored" in w for w in warnings(at))


# ---------------------------------------------------------------- D: injection only where there is some

def page_text(at: AppTest) -> str:
    """Everything the page shows (every element's content, labels, help and options), less the raw settings JSON
    (the run's own configuration, shown as it is)."""
    def walk(node):
        children = getattr(node, "children", None)
        if children:
            for child in children.values():
                yield from walk(child)
        elif getattr(node, "proto", None) is not None:
            yield node

    return "\n".join(str(el.proto) for part in (at.sidebar, at.main) for el in walk(part) if el.type != "json")


def test_mis_captions_are_mentioned_only_for_runs_that_have_them(app_runs, tmp_path, monkeypatch):
    root = tmp_path / "runs"  # the test's name (and so tmp_path, shown in the sidebar) holds no "inject"
    folder = copy_run(app_runs, root, "clean")
    m = json.loads((folder / "manifest.json").read_text())
    m["dataset"]["n_injected"] = 0
    m["summary"] = {k: v for k, v in m["summary"].items() if not k.startswith("injected")}
    (folder / "manifest.json").write_text(json.dumps(m))
    for table in ("scores.parquet", "samples.parquet"):
        df = pd.read_parquet(folder / table)
        df["injected"] = False
        df.to_parquet(folder / table)

    for page in ("overview", "browse"):
        at = open_app(root, monkeypatch, page=page, run="clean")
        assert "inject" not in page_text(at).lower(), page
    # a link asking for injected pairs only on such a run shows every pair, and says nothing of injection
    at = open_app(root, monkeypatch, page="browse", run="clean", injected="yes")
    assert "inject" not in page_text(at).lower() and "injected" not in at.query_params

    at = open_app(app_runs, monkeypatch, page="overview", run="demo")
    assert "Does the score find the injected mis-captions?" in texts(at.subheader)
    assert "Injected mis-captions" in page_text(at) and "How much did f memorize?" in page_text(at)
    at = open_app(app_runs, monkeypatch, page="browse", run="demo")
    assert at.selectbox(key="b_injected").value == "any" and "Injected mis-captions" in page_text(at)
    assert any("black rings: injected mis-captions" in c for c in texts(at.caption))
