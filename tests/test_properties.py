"""Property-based tests: loaders never crash on odd captions; names and captions stay well formed."""
import csv
import io
import tarfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from multimem.store.runs import NAME_RE, RunError, check_name
from multimem.data.sources.base import DataError, clean_caption
from multimem.data.sources.csv import CsvSource
from multimem.data.sources.webdataset import WebDatasetSource

captions = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(captions)
def test_clean_caption_is_one_stripped_line_or_none(text):
    out = clean_caption(text)
    assert out is None or (out == out.strip() and "\n" not in out and out != "")
    assert (out is None) == (text.split() == [])


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, "PNG")
    return buf.getvalue()


@FAST
@given(st.lists(captions, min_size=1, max_size=6))
def test_csv_rows_become_pairs_or_counted_skips(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("csv")
    (folder / "a.png").write_bytes(png_bytes())
    with open(folder / "data.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["filepath", "title"])
        for t in texts:
            w.writerow(["a.png", t])
    source = CsvSource(folder / "data.csv")
    try:
        pairs = source.pairs()
    except DataError:
        return  # a clear, named error is an acceptable answer to odd input; a crash is not
    kept = [clean_caption(t) for t in texts if clean_caption(t)]
    assert sum(len(p.captions) for p in pairs) + len(source.skipped) >= len(texts) - texts.count("")
    assert [c for p in pairs for c in p.captions] == kept


@FAST
@given(st.lists(st.tuples(st.sampled_from(["png", "txt", "json", "cls"]), st.binary(max_size=50)), max_size=8))
def test_webdataset_members_never_crash_the_reader(tmp_path_factory, members):
    shard = tmp_path_factory.mktemp("wds") / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for i, (ext, data) in enumerate(members):
            data = png_bytes() if ext == "png" else data
            info = tarfile.TarInfo(f"k{i % 3}.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = WebDatasetSource(shard)
    try:
        pairs = source.pairs()
    except DataError:
        return
    for p in pairs:
        assert p.captions and all(c == c.strip() and c for c in p.captions)
        assert p.image_ref.startswith(str(shard) + "#")


@given(st.text(max_size=120))
def test_run_names_are_accepted_only_when_safe(name):
    try:
        assert check_name(name) == name
    except RunError:
        assert not NAME_RE.fullmatch(name) or ".." in name
    else:
        assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")


# ---- links: whatever a URL holds, parsing gives a valid view or a friendly message, never an exception
from multimem.app import views  # noqa: E402

param_values = st.one_of(st.text(max_size=40), st.lists(st.text(max_size=20), max_size=3))
BROWSE_KEYS = ["subset", "lo", "hi", "label", "q", "injected", "sort", "order", "p", "n", "x", "y", "sel", "page", "run"]


@given(st.dictionaries(st.sampled_from(BROWSE_KEYS), param_values, max_size=8))
def test_browse_links_always_parse_to_a_valid_view(params):
    view, problems = views.parse_browse(params, labels=["Flags", "Objects"])
    assert set(view.subsets) <= {"candidate", "independent", "shared"} and view.subsets
    assert -1.0 <= view.lo <= view.hi <= 1.0
    assert set(view.labels) <= {"Flags", "Objects"}
    assert view.page >= 1 and view.per_page >= 1
    assert all(isinstance(p, str) for p in problems)


@given(st.text(max_size=80))
def test_run_and_sample_links_never_name_unknown_things(value):
    problems: list[str] = []
    run = views.parse_run_name(value, ["demo", "other"], problems)
    assert run in (None, "demo", "other")
    assert (run is None) == (value not in ("demo", "other")) or value == ""
    import pandas as pd

    sid = views.parse_sample_id(value, pd.Index(["1f600", "1f44d"]), problems)
    assert sid in (None, "1f600", "1f44d")
    assert views.parse_page(value) in (None, *views.PAGES)
    assert views.parse_k({"k": value}, problems) >= 1
