"""The dashboard in a real browser: `streamlit run app.py` on a free localhost port, driven by Playwright and
Debian's Chromium. Screenshots of every page are saved to test-artifacts/ at the repository root."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
BROWSE_CARD = "[class*=st-key-mmcard_] .mm-cap"  # Browse's cards (st.page_link in a keyed container), drawn

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium) to run the "
                "real-browser test", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, folder: Path, **env: str):
    """`streamlit run app.py` on a free port over `runs`; yields its base URL, stops it (by its pid) after."""
    port = free_port()
    log = open(folder / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**os.environ, "MULTIMEM_RUNS": str(runs), **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start (exit code {proc.poll()}; log: {log.name})")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(app_runs, tmp_path_factory):
    """Base URL of a Streamlit server on the test runs."""
    yield from start_server(app_runs, tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def review_server(app_runs, tmp_path_factory):
    """The same runs served for reviewers (MULTIMEM_READONLY=1)."""
    yield from start_server(app_runs, tmp_path_factory.mktemp("review"), MULTIMEM_READONLY="1")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def settle(page, ready: str, timeout: float = 90_000) -> None:
    """Wait for the page's own content, then for Streamlit to finish running and plotly to draw."""
    page.wait_for_selector(ready, timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout)
    page.wait_for_timeout(1200)


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to the content first."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stMainBlockContainer]')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": int(min(max(900, height + 80), 8000))})
    page.wait_for_timeout(800)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    return path


def test_deep_link_to_a_sample_shows_image_caption_and_neighbours(server, browser, demo_tables, app_runs):
    from multimem.engine.index import NeighbourIndex

    _, samples, scores = demo_tables
    row = scores[(scores.subset == "candidate") & scores.injected].iloc[0]
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # a fresh browser session: nothing cached
    page.goto(f"{server}/sample?page=sample&run=demo&id={row['id']}")
    settle(page, "a.mm-card")
    # an injected pair's caption is wrong on purpose: the title is the sample id, the caption is shown below it
    assert page.locator("h1").first.inner_text().strip() == f"Sample {row['id']}"
    assert row["caption"] in page.inner_text("body")
    image = page.locator("[data-testid=stImage] img").first
    assert image.is_visible() and image.evaluate("img => img.complete && img.naturalWidth > 0")
    assert row["original_caption"] in page.inner_text("body")  # the injected pair says what its image shows
    expected = [samples["caption"].iloc[r] for r, _ in
                NeighbourIndex.from_run_dir(app_runs / "demo").search(int(row["row"]), "image", 8)]
    cards = page.locator("a.mm-card:visible")
    assert cards.count() == 8
    assert [c.strip() for c in cards.locator(".mm-cap").all_inner_texts()] == expected
    assert all(img.evaluate("i => i.naturalWidth >= 128") for img in cards.locator("img").all())  # readable thumbnails
    assert page.locator("[data-testid=stException]").count() == 0
    assert f"id={row['id']}" in page.url and "run=demo" in page.url
    screenshot(page, "sample")
    # a neighbour card opens that neighbour's own Sample page
    cards.first.click()
    settle(page, "a.mm-card")
    assert page.locator("h1").first.inner_text().strip() == expected[0]
    page.close()


def test_copied_browse_link_restores_the_view_in_a_fresh_browser(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{server}/browse?run=demo")
    settle(page, BROWSE_CARD)
    page.get_by_label("Caption contains").fill("face")
    page.keyboard.press("Enter")
    page.wait_for_function("() => location.search.includes('q=face')", timeout=60_000)
    settle(page, BROWSE_CARD)
    captions = page.locator(".mm-cap").all_inner_texts()
    count = page.get_by_text("scored pairs match").first.inner_text()
    assert captions and any("face" in c for c in captions)
    page.get_by_role("button", name=re.compile("Copy link")).click()
    link = page.locator("[data-testid=stPopoverBody] code").first.inner_text().strip()
    assert link.startswith(server) and "q=face" in link and "/tmp" not in link
    fresh = browser.new_context().new_page()
    fresh.set_viewport_size({"width": 1400, "height": 900})
    fresh.goto(link)
    settle(fresh, BROWSE_CARD)
    assert fresh.locator(".mm-cap").all_inner_texts() == captions
    assert fresh.get_by_text("scored pairs match").first.inner_text() == count
    assert fresh.get_by_label("Caption contains").input_value() == "face"
    fresh.close()
    page.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("name, path, ready", [
    ("overview", "/?run=demo", "text=How much did f memorize?"),
    ("browse", "/browse?run=demo&subset=candidate&subset=independent&subset=shared", BROWSE_CARD),
    ("sample", "/sample?run=demo", "a.mm-card"),
    ("compare", "/compare?run=demo&vs=halved", "text=Score distributions"),
    ("runs", "/runs?run=demo", "text=Start a new run"),
])
def test_every_page_renders_without_errors(server, browser, name, path, ready, theme):
    """Every page in the viewer's light and dark theme (the app follows it); screenshots in test-artifacts/."""
    page = browser.new_page(viewport={"width": 1400, "height": 900}, color_scheme=theme)
    page.goto(server + path)
    settle(page, ready)
    assert page.locator("[data-testid=stException]").count() == 0
    assert f"page={name}" in page.url
    background = page.evaluate("() => getComputedStyle(document.querySelector('.stApp')).backgroundColor")
    level = sum(int(v) for v in background[background.index("(") + 1:-1].split(",")[:3]) / 3
    assert (level < 80) if theme == "dark" else (level > 200), background
    screenshot(page, f"{name}-{theme}")
    page.close()


def test_tag_list_export_round_trip_and_keyboard_opening(server, browser, app_runs, tmp_path):
    """Tag two cards into a new list, filter Browse by it, download it as CSV, then open a card with the keyboard
    inside the same browser session (no page load)."""
    import pandas as pd

    from multimem.store import lists

    name = f"rt{int(time.time() * 1000) % 10_000_000}"  # the session's shared runs: a list of its own
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    try:
        page.goto(f"{server}/browse?run=demo")
        settle(page, BROWSE_CARD)
        page.get_by_label("New list").fill(name)
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => location.search.includes('list={name}')", timeout=60_000)
        settle(page, BROWSE_CARD)
        boxes = page.locator("[class*=st-key-mmcard_] [data-testid=stCheckbox] input")
        for i in (0, 1):
            boxes.nth(i).check(force=True)
            page.wait_for_timeout(500)
            settle(page, BROWSE_CARD)
        tagged = lists.read_list(app_runs, "demo", name)
        assert len(tagged) == 2
        page.get_by_text("Only this list").click()
        page.wait_for_function("() => location.search.includes('only=1')", timeout=60_000)
        settle(page, BROWSE_CARD)
        assert page.locator("[class*=st-key-mmcard_]").count() == 2
        with page.expect_download() as info:
            page.locator(".st-key-b_list_export_csv button").first.click()
        path = tmp_path / "list.csv"
        info.value.save_as(path)
        exported = pd.read_csv(path)
        assert exported["id"].astype(str).tolist() == tagged and {"caption", "image_ref", "multimem"} <= set(exported)
        # keyboard: focus a card's link, Enter opens its Sample page in the same session (no full page load)
        page.evaluate("window.__same_document = true")
        link = page.locator("[class*=st-key-mmcard_] [data-testid=stPageLink] a").first
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("() => location.pathname.endsWith('/sample')", timeout=60_000)
        settle(page, "[data-testid=stImage] img")
        assert page.evaluate("window.__same_document === true")
        assert any(f"id={i}" in page.url for i in tagged)
    finally:
        page.close()
        lists.list_path(app_runs, "demo", name).unlink(missing_ok=True)


def test_downloaded_report_renders_offline(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.goto(f"{server}/browse?run=demo")
    settle(page, BROWSE_CARD)
    with page.expect_download() as info:
        page.locator(".st-key-browse_report button").first.click()
    path = tmp_path / "report.html"
    info.value.save_as(path)
    page.close()
    context = browser.new_context(offline=True)
    offline = context.new_page()
    asked = []
    offline.on("request", lambda r: asked.append(r.url))
    offline.goto(path.as_uri())
    offline.wait_for_selector(".mm-card img", timeout=30_000)
    offline.wait_for_selector(".js-plotly-plot", timeout=30_000)
    assert offline.locator(".mm-card").count() == 24
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in offline.locator(".mm-card img").all())
    assert not [u for u in asked if u.startswith(("http:", "https:"))], asked
    ARTIFACTS.mkdir(exist_ok=True)
    offline.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    context.close()


def test_a_row_of_the_runs_table_opens_its_overview_in_the_same_tab(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{server}/runs?run=demo")
    settle(page, "text=Select a row to open its run's Overview")
    box = page.locator("[data-testid=stDataFrame]").first.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 52)  # the first row's selection cell
    page.wait_for_url("**/?page=overview*", timeout=30_000)
    assert len(browser.contexts[-1].pages) == 1  # no new tab
    page.get_by_role("link", name="Runs").first.click()
    settle(page, "text=Select a row to open its run's Overview")
    page.wait_for_timeout(2000)
    assert "page=runs" in page.url  # coming back does not open the run again
    page.close()


def test_review_mode_shows_every_view_and_no_control_that_writes(review_server, browser, app_runs):
    before = sorted(p.relative_to(app_runs).as_posix() for p in app_runs.rglob("*") if ".lock" not in p.name)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{review_server}/browse?run=demo")
    settle(page, BROWSE_CARD)
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator(BROWSE_CARD).count() > 0  # the views work
    assert page.get_by_label("New list").is_disabled()
    page.goto(f"{review_server}/runs?run=demo")
    settle(page, "text=Start a new run")
    for label in ("Start run", "Score"):  # the new-run form and the uploaded-pair form
        buttons = page.get_by_role("button", name=label, exact=True)
        assert buttons.count() == 1 and buttons.first.is_disabled(), label
    page.close()
    after = sorted(p.relative_to(app_runs).as_posix() for p in app_runs.rglob("*") if ".lock" not in p.name)
    assert after == before  # nothing was written
