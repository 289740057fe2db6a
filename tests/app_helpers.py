"""Opening the dashboard in streamlit.testing.v1.AppTest, shared by the app tests."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60


def open_app(root: Path, monkeypatch, **params) -> AppTest:
    """app.py run once on the runs folder `root` with these query parameters; fails on any exception."""
    monkeypatch.setenv("MULTIMEM_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at
