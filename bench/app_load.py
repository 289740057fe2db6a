"""Benchmark: 10 concurrent browser sessions browsing and opening samples on the 100k-sample synthetic run.

    python bench/synthetic_run.py --root /tmp/multimem-bench-runs        # once
    python bench/app_load.py --root /tmp/multimem-bench-runs [--sessions 10 --rounds 3]

Starts `streamlit run app.py` on a free localhost port, drives it with Debian Chromium (one browser, one context per
session, all at once): each round opens Browse with a different caption filter and then one Sample page. Reports
per-view latency, errors, and the server's resident memory after the first session and at the end (cached
resources are shared between sessions, so memory must not grow with the number of sessions).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
WORDS = ["face", "cat", "heart", "star", "red", "tree", "music", "car", "moon", "fire"]


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def settle(page, ready: str) -> None:
    await page.wait_for_selector(ready, timeout=120_000)
    await page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=120_000)


async def session(browser, base: str, name: str, ids: list[str], k: int, rounds: int, times: list, errors: list):
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    rng = random.Random(k)
    for r in range(rounds):
        for kind, url, ready in (("browse", f"{base}/browse?run={name}&q={WORDS[(k + r) % len(WORDS)]}", "a.mm-card"),
                                 ("sample", f"{base}/sample?run={name}&id={rng.choice(ids)}", "a.mm-card")):
            t = time.perf_counter()
            try:
                await page.goto(url)
                await settle(page, ready)
                if await page.locator("[data-testid=stException]").count():
                    errors.append(f"{kind}: exception shown")
                times.append((kind, time.perf_counter() - t))
            except Exception as exc:  # a timeout is a failure to answer: counted, the load goes on
                errors.append(f"{kind}: {type(exc).__name__}")
    await context.close()


async def drive(base: str, name: str, ids: list[str], sessions: int, rounds: int, pid: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        warm_times, errors = [], []
        await session(browser, base, name, ids, 0, 1, warm_times, errors)  # fills the caches once
        after_one = rss_mb(pid)
        times: list = []
        t = time.perf_counter()
        await asyncio.gather(*(session(browser, base, name, ids, k + 1, rounds, times, errors) for k in range(sessions)))
        wall = time.perf_counter() - t
        await browser.close()
    return {"times": times, "errors": errors, "wall": wall, "after_one": after_one, "end": rss_mb(pid),
            "warm": warm_times}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "multimem-bench-runs")
    p.add_argument("--name", default="synthetic-100k")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    ids = pd.read_parquet(args.root / args.name / "scores.parquet", columns=["id"])["id"].sample(200, random_state=0).tolist()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=REPO,
                              env={**os.environ, "MULTIMEM_RUNS": str(args.root)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        r = asyncio.run(drive(base, args.name, ids, args.sessions, args.rounds, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"{args.sessions} concurrent sessions × {args.rounds} rounds (Browse with a caption filter, then a Sample "
          f"page), run {args.name}, 2 cores shared by server and browser\n")
    print("| view | count | median s | p95 s | max s |\n|---|---|---|---|---|")
    for kind in ("browse", "sample"):
        ts = sorted(t for k, t in r["times"] if k == kind)
        if ts:
            print(f"| {kind} | {len(ts)} | {statistics.median(ts):.2f} | {ts[int(0.95 * (len(ts) - 1))]:.2f} | {ts[-1]:.2f} |")
    print(f"\nviews answered: {len(r['times'])} of {2 * args.sessions * args.rounds}; errors: {len(r['errors'])} "
          f"{sorted(set(r['errors']))}; wall clock {r['wall']:.0f} s")
    print(f"server memory: {r['after_one'][0]:.0f} MiB after one session, {r['end'][0]:.0f} MiB after "
          f"{args.sessions} concurrent sessions (peak {r['end'][1]:.0f} MiB)")


if __name__ == "__main__":
    main()
