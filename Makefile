# The two commands: `make run` (dashboard on the embedded demo) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test demo bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Train and score the demo run once (resumes if interrupted), then open the dashboard.
run: $(VENV)/.installed
	$(PY) -m multimem demo
	$(PY) -m streamlit run app.py --server.port $(PORT)

demo: $(VENV)/.installed
	$(PY) -m multimem demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/demo_end_to_end.py

clean:
	rm -rf $(VENV) .pytest_cache
