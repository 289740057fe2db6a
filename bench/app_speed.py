"""Dashboard speed on a run with 100,000 scored samples (made by bench/synthetic_run.py if missing).

Measures, with Streamlit's AppTest (the real page scripts, in this process):
- Browse first render: cold (fresh process: imports, Parquet read, first thumbnails) and for a new session once
  the server has the run cached (what a reviewer opening a link sees);
- a filter change (caption text, subsets, score range, injected flag, sort, next page);
- the Sample page's first render; neighbour lookups through the FAISS indices (each kind, median and p95);
- the process memory (RSS) with the run's tables and indices loaded.
With --browser it also starts `streamlit run app.py`, times a Browse reload (JavaScript cached) and a caption
filter in Chromium, and reads the server's RSS; cold browsers side by side with a bare page: bench/app_paint.py.
With --write the figures replace the "Dashboard" section of docs/benchmarks.md (up to its first subsection).

    python bench/app_speed.py [--root FOLDER] [--write] [--browser]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARD = "[class*=st-key-mmcard_] .mm-cap"  # a Browse card (tests/test_browser.py)


def rss_mib(pid: str = "self") -> tuple[float, float]:
    """Current and peak resident memory of a process, MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda key: int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) / 1024  # noqa: E731
    return get("VmRSS"), get("VmHWM")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def apptest_figures(name: str) -> dict:
    from streamlit.testing.v1 import AppTest

    app = str(REPO / "app.py")
    out: dict = {}
    # AppTest scans every installed package for Streamlit components once per AppTest object (about 1 s here);
    # a server does that once at start. Share the first scan so the figures are the app's, not the harness's.
    shared: dict = {}

    def new(**params) -> AppTest:
        at = AppTest.from_file(app, default_timeout=120)
        if "manager" in shared:
            at._bidi_component_manager = shared["manager"]
        at.query_params.update(params)
        return at

    def browse() -> AppTest:
        return new(page="browse", run=name)

    warmup = new(page="runs")
    warmup.run()
    shared["manager"] = warmup._bidi_component_manager

    at = browse()
    out["browse_cold"] = timed(lambda: at.run())
    assert not at.exception, [e.value for e in at.exception]
    at = browse()
    out["browse_warm"] = timed(lambda: at.run())
    assert "of 100,000 scored pairs" in " ".join(c.value for c in at.caption)

    changes = {
        "caption text": lambda: at.text_input(key="b_q").set_value("cat"),
        "subsets (all three)": lambda: at.multiselect(key="b_subsets").set_value(["candidate", "independent", "shared"]),
        "score range": lambda: at.slider(key="b_range").set_value((0.0, 1.0)),
        "injected only": lambda: at.selectbox(key="b_injected").set_value("yes"),
        "sort by CMC_f": lambda: at.selectbox(key="b_sort").set_value("cmc_f"),
        "next page": lambda: at.button[-1].click(),
    }
    out["filters"] = {}
    for label, change in changes.items():
        change()
        out["filters"][label] = timed(lambda: at.run())
        assert not at.exception, [e.value for e in at.exception]

    sample = new(page="sample", run=name, id="syn060000")
    out["sample_cold"] = timed(lambda: sample.run())
    assert not sample.exception, [e.value for e in sample.exception]
    sample = new(page="sample", run=name, id="syn070000")
    out["sample_warm"] = timed(lambda: sample.run())
    out["rss"] = rss_mib()
    return out


def import_figures() -> dict:
    """Seconds a fresh process spends importing what the app's pages import (once per server process), and
    whether that pulls in torch (only on-demand scoring needs it)."""
    code = ("import sys, time; t = time.perf_counter(); import streamlit, plotly.graph_objects, faiss, "
            "multimem.app.cache, multimem.app.ui, multimem.jobs; print(time.perf_counter() - t, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    seconds, torch = res.stdout.split()[-2:]
    return {"app": float(seconds), "torch": torch == "True"}


def neighbour_figures(folder: Path, n: int = 200) -> dict:
    import numpy as np

    from multimem.engine.index import KINDS, NeighbourIndex

    t0 = time.perf_counter()
    index = NeighbourIndex.from_run_dir(folder)
    load = time.perf_counter() - t0
    rows = np.random.default_rng(0).integers(0, len(index.embeddings["image"]), n)
    out = {"load": load, "vectors": index.index["image"].ntotal}
    for kind in KINDS:
        times = []
        for r in rows:
            t0 = time.perf_counter()
            index.search(int(r), kind, 8)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[kind] = (statistics.median(times), times[int(0.95 * len(times)) - 1])
    return out


def function_figures(name: str) -> dict:
    """The Browse page's own data work, without Streamlit: filter + sort + one page of 100k rows."""
    from multimem.app import columns, select, views
    from multimem.store.runs import Run

    table = Run(os.environ["MULTIMEM_RUNS"], name).scores()
    text = select.search_text(table)
    view = views.BrowseView(subsets=columns.SCORED_SUBSETS, text="cat", lo=-0.5)
    t = timed(lambda: select.page_of(select.select(table, view, text), 1, 24))
    return {"select_page": t, "rows": len(table)}


def browser_figures(name: str, root: Path) -> dict | None:
    """Wall time until Browse's first card is visible in Chromium on a reload (JavaScript cached), a caption filter
    typed until the grid is updated, and the server's RSS."""
    if not Path("/usr/bin/chromium").exists():
        return None
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=REPO,
                            env={**os.environ, "MULTIMEM_RUNS": str(root)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    out: dict = {}
    try:
        for _ in range(180):
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            # a reviewer's second visit (Streamlit's JavaScript cached); cold browsers: bench/app_paint.py
            context = browser.new_context()
            for label in ("browser_first", "browser_reload"):
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{base}/browse?run={name}")
                page.wait_for_selector("[data-testid=stSidebar]", timeout=120_000)
                out[label + "_shell"] = time.perf_counter() - t0
                page.wait_for_selector(CARD, timeout=120_000)
                out[label] = time.perf_counter() - t0
                page.close()
            page = context.new_page()
            page.goto(f"{base}/browse?run={name}")
            page.wait_for_selector(CARD, timeout=120_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
            t0 = time.perf_counter()
            page.get_by_label("Caption contains").fill("cat")
            page.keyboard.press("Enter")
            page.wait_for_function("() => location.search.includes('q=cat')", timeout=60_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
            out["browser_filter"] = time.perf_counter() - t0
            page.goto(f"{base}/sample?run={name}&id=syn060000")  # so the memory figure includes the indices
            page.wait_for_selector("a.mm-card", timeout=120_000)
            browser.close()
        out["server_rss"] = rss_mib(str(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out


def report(f: dict) -> str:
    cpu = os.cpu_count()
    lines = [
        "## Dashboard",
        "",
        f"Run: `bench/synthetic_run.py` (100,000 scored samples of 140,000; 90,000 vectors per FAISS index, d = 128; "
        f"Twemoji files as images). Machine: {cpu} CPU cores ({f.get('load', 'shared with training jobs')}), Python "
        f"{platform.python_version()}. Command: `python bench/app_speed.py --write{' --browser' if 'browser' in f else ''}`. "
        "AppTest times are whole script runs of the real pages, including AppTest's own overhead.",
        "",
        "| What | Time | Target |",
        "|---|---|---|",
        f"| Browse first render, first page view after server start (Parquet read, first thumbnails) | {f['browse_cold']:.2f} s | ≤ 2 s (see note) |",
        f"| Browse first render, new session, run cached | {f['browse_warm']:.2f} s | ≤ 2 s |",
    ]
    imp = f["imports"]
    lines.append(f"| Imports of the app's pages in a fresh server (once per process; torch "
                 f"{'included' if imp['torch'] else 'not imported'}) | {imp['app']:.2f} s | |")
    for label, t in f["filters"].items():
        lines.append(f"| Browse filter change: {label} | {t:.2f} s | ≤ 1 s |")
    lines += [
        f"| Filter + sort + page of 100k rows (multimem.app.select, no Streamlit) | {f['select_page'] * 1000:.0f} ms | |",
        f"| Sample page first render, cold (loads the FAISS indices) | {f['sample_cold']:.2f} s | |",
        f"| Sample page first render, indices cached | {f['sample_warm']:.2f} s | |",
        f"| FAISS indices load (once per server) | {f['neighbours']['load'] * 1000:.0f} ms | |",
    ]
    for kind in ("image", "text", "image_to_text", "text_to_image"):
        med, p95 = f["neighbours"][kind]
        lines.append(f"| Neighbour lookup `{kind}`, k = 8 (median / p95) | {med:.1f} / {p95:.1f} ms | ≤ 100 ms |")
    rss, peak = f["rss"]
    lines.append(f"| Memory of the process running the AppTest pages above (RSS / peak) | {rss:.0f} / {peak:.0f} MiB | |")
    if "browser" in f:
        b = f["browser"]
        lines += [
            f"| Chromium: Browse's first card visible on a reload (Streamlit's JavaScript cached; shell at "
            f"{b['browser_reload_shell']:.2f} s) | {b['browser_reload']:.2f} s | ≤ 2 s |",
            f"| Chromium: caption filter typed → grid updated | {b['browser_filter']:.2f} s | ≤ 1 s |",
            f"| `streamlit run` server memory after these visits and a Sample page (RSS / peak) | {b['server_rss'][0]:.0f} / {b['server_rss'][1]:.0f} MiB | |",
        ]
    lines += [
        "",
        "Notes: the first page view after a server start reads the 100k-row Parquet table (and builds the caption "
        "search text) once per server process; after that the tables, indices and thumbnails are "
        "cached (`multimem/app/cache.py`: st.cache_resource for tables, indices and models, st.cache_data for "
        "thumbnails) and never re-read per rerun. The scatter draws at most 3,000 sampled points; the grid sends "
        "only one page of thumbnails (WebP, about 1 KiB each). torch is loaded only when a pair is scored on demand "
        "(Runs page), together with that run's f and g.",
        "",
        "In Chromium the app's part (the script run above) is a fraction of a second; the rest is Streamlit's own "
        "frontend drawing the page. Cold browsers, side by side with a bare Streamlit page: the next subsection.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str, path: Path = REPO / "docs" / "benchmarks.md") -> None:
    """Replace the '## Dashboard' section up to its first subsection or the next section, or append it."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Dashboard\n.*?(?=^##+ |\Z)", re.S | re.M)
    new = pattern.sub(text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(exist_ok=True)
    path.write_text(new, encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "multimem-bench-runs",
                   help="runs folder for the synthetic run (default: %(default)s)")
    p.add_argument("--name", default="synthetic-100k")
    p.add_argument("--write", action="store_true", help="write the figures into docs/benchmarks.md")
    p.add_argument("--browser", action="store_true", help="also time the app in Chromium")
    p.add_argument("--load", default="shared with training jobs", help="the machine's state, for the report")
    args = p.parse_args()
    os.environ["MULTIMEM_RUNS"] = str(args.root)
    if not (args.root / args.name / "scores.parquet").exists():
        print(f"writing the synthetic run to {args.root / args.name} …")
        subprocess.run([sys.executable, str(REPO / "bench" / "synthetic_run.py"), "--root", str(args.root),
                        "--name", args.name], check=True)  # its own process: its imports stay out of the figures
    figures = apptest_figures(args.name)
    figures["load"] = args.load
    figures.update(function_figures(args.name))
    figures["imports"] = import_figures()
    figures["neighbours"] = neighbour_figures(args.root / args.name)
    if args.browser:
        b = browser_figures(args.name, args.root)
        if b:
            figures["browser"] = b
    text = report(figures)
    print(text)
    if args.write:
        write_section(text)
        print("written to docs/benchmarks.md")


if __name__ == "__main__":
    main()
