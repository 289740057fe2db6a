# The two commands: `make run` (dashboard on the embedded demo) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test demo bench clean chromium

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Train and score the demo run once (resumes if interrupted), then open the dashboard.
run: $(VENV)/.installed
	$(PY) -m multimem demo
	$(PY) -m streamlit run app.py --server.port $(PORT)

demo: $(VENV)/.installed
	$(PY) -m multimem demo

# The browser test drives Debian's Chromium; installed here when missing (root), else that test is skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "chromium is not installed: the browser test will be skipped"

test: $(VENV)/.installed chromium
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/demo_end_to_end.py

clean:
	rm -rf $(VENV) .pytest_cache
