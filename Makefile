# rssn: two commands do everything on a fresh machine: `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
ARGS    ?=

.PHONY: venv demo test test-fast lint bench reliability browser-deps test-deps clean vectors schemas

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## The whole network on one machine: a hub, three nodes, referrals walked through their lifecycle.
demo: $(STAMP)
	$(PY) -m node.demo $(ARGS)

## Every test: unit, property, integration (real processes), fault, browser (chromium installed if root).
test: $(STAMP) test-deps
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check protocol
	$(VENV)/bin/mypy --strict protocol

bench: $(STAMP)
	$(PY) -m bench.run $(ARGS)

## Fault, hostile-input and security tests, long versions; the last line printed is
## "reliability: F faults injected, L lost, ..." (details: test-artifacts/reliability/summary.json).
## `make test` runs the short versions of the same tests and prints the same line.
reliability: $(STAMP)
	RSSN_RELIABILITY_FULL=1 $(PY) -m pytest -q -p no:cacheprovider tests/fault tests/hostile tests/security $(ARGS)

## Tools some tests drive: Debian's chromium (browser tests) and the deploy linters (tests/deploy).
## Installed only when running as root and missing; without them those tests skip with a reason.
test-deps: browser-deps
	@if [ "$$(id -u)" = 0 ] && [ ! -x /opt/rssn-deploy-tools/bin/hadolint ] && command -v apt-get >/dev/null; then \
	  echo "installing deploy lint tools (deploy/tools/install-lint-tools.sh)"; \
	  sh deploy/tools/install-lint-tools.sh >/dev/null || echo "deploy lint tools could not be installed: those tests will skip"; \
	fi

browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian chromium for browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed: browser tests will skip"; \
	fi

vectors: $(STAMP)
	$(PY) -m protocol.vectors.generate

schemas: $(STAMP)
	$(PY) -m protocol.schemas.export

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
