# forecastkit - the two commands a newcomer needs:
#   make reports   run every report on the bundled sample company -> reports/
#   make test      run the whole test suite (what .ci/run calls)
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell cksum pyproject.toml | cut -d' ' -f1)
BASE   := $(VENV)/.base-$(HASH)
DEV    := $(VENV)/.dev-$(HASH)
OUT    ?= reports
DATA   ?= data/sample

.PHONY: reports test lab lint format sample bench system browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(BASE): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (forecastkit)" >/dev/null
	touch $@

$(DEV): $(BASE)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

system:
	bash scripts/system-packages.sh

browser:
	bash scripts/browser-packages.sh

reports: $(BASE)
	$(BIN)/forecastkit report all --data $(DATA) --out $(OUT)
	@echo "Reports written to $(OUT)/ (open the .html files in a browser)"

test: $(DEV) system browser
	$(BIN)/python -m pytest -n 2 --durations=15
	$(BIN)/python -m pytest --nbval-lax notebooks/ -q

lab: $(DEV)
	$(BIN)/jupyter lab notebooks/explore.ipynb

lint: $(DEV)
	$(BIN)/ruff check src tests notebooks benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(DEV)
	$(BIN)/ruff check --fix src tests notebooks benchmarks
	$(BIN)/ruff format src tests benchmarks

sample: $(BASE)
	$(BIN)/forecastkit sample --scenario baseline --seed 0 --out data/sample

bench: $(DEV)
	$(BIN)/python benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) reports build dist .pytest_cache .hypothesis
