# The one entry point: every target creates the venv it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/swimmy run --config config/dev.toml

# pytest exits 5 when it collected no test: that is a failure of the suite, not a pass.
# -n auto: one test process per core (at most 4); worksteal rebalances the slow integration tests.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist worksteal; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	@$(BIN)/pip install --quiet -e '.[bench]'
	@for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check swimmy tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The browser tests (tests/browser) drive Debian's `chromium` through Playwright's executable_path; Playwright's own
# browser download is never used. Root installs the package; anyone else is told how, and the tests skip until then.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium) ($$(chromium --version 2>/dev/null || echo 'version unknown'))"; \
	elif [ "$$(id -u)" -eq 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
			&& chromium --version; \
	else \
		echo "chromium is missing: install it with 'sudo apt-get install --no-install-recommends chromium'" >&2; \
		echo "(or 'sudo make browser'); until then the browser tests skip" >&2; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
