# rebound — build, install, guests, test, run, bench.
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
# bash for `set -o pipefail` in the test recipe.
SHELL := /bin/bash

.PHONY: all build install guests guests-python test test-deps run bench fmt clippy check golden-bless fuzz

all: build

build:
	$(CARGO) build

# `rebound` into ~/.cargo/bin (on PATH with rustup's default set-up); a release build.
install:
	$(CARGO) install --path . --locked

# Policy components: the SDK examples and the hostile test guests, built for wasm32-wasip2.
# One target dir for every guest crate; the .wasm files land in $(GUEST_OUT), where the
# policy tests and benches look for them.
GUEST_TARGET := $(CURDIR)/target/guests
GUEST_OUT := $(GUEST_TARGET)/$(WASM_TARGET)/release
guests:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	cd guest-examples && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --release --target $(WASM_TARGET)
	cd tests/guests && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --release --target $(WASM_TARGET)
	@ls $(GUEST_OUT)/*.wasm

# The Python example policies, built with componentize-py from the test environment
# (`make test-deps` installs it; not needed by `make run`). Their .wasm files land beside
# the Rust guests, as <name>_py.wasm (invalid_recipient_py.wasm, ...).
COMPONENTIZE_PY := $(CURDIR)/target/test-venv/bin/componentize-py
PY_POLICIES := invalid-recipient repeated-mailbox-full
guests-python: $(foreach p,$(PY_POLICIES),$(GUEST_OUT)/$(subst -,_,$(p))_py.wasm)
$(GUEST_OUT)/%_py.wasm: sdk/python/rebound_policy.py wit/policy.wit guest-examples/python/*/app.py
	@test -x $(COMPONENTIZE_PY) || { echo "$(COMPONENTIZE_PY) is missing: run make test-deps" >&2; exit 1; }
	@mkdir -p $(GUEST_OUT)
	$(COMPONENTIZE_PY) -d wit -w policy componentize -p guest-examples/python/$(subst _,-,$*) -p sdk/python app -o $@

# What the tests read besides the build (see tests/support/): the Python that has aiosmtpd
# (a virtual environment of the project's, so no system pip is touched), the file every
# skipped test is appended to, and the labelled corpus, which stays outside the project:
# beside the checkout (CI has shared/ there) or in /work/shared.
TEST_VENV := $(CURDIR)/target/test-venv
SKIP_LOG := $(CURDIR)/target/test-skips.txt
TEST_LOG := $(CURDIR)/target/test-output.txt
REBOUND_CORPUS ?= $(abspath $(or $(firstword $(wildcard $(CURDIR)/../shared/corpus/sisimai \
                     /work/shared/corpus/sisimai)),$(CURDIR)/../shared/corpus/sisimai))
export REBOUND_CORPUS
test bench: export REBOUND_PYTHON := $(TEST_VENV)/bin/python
test bench: export REBOUND_SKIP_LOG := $(SKIP_LOG)

# Everything the tests need beyond Rust: the wasm target, Debian's dovecot-pop3d and
# dovecot-imapd, postfix, postgresql, openssl, wrk (apt-get as root, else the command to
# run), the Python environment with aiosmtpd. Quick when it is all there.
test-deps:
	@REBOUND_VENV=$(TEST_VENV) scripts/test-deps

# Every test binary runs (--no-fail-fast), even after a failure. A test that cannot run
# says so on stderr and in $(SKIP_LOG) (and fails under CI=true); the run ends with those
# lines and the totals, and exits with cargo's status. TEST_ARGS='--test send_smtp'
# runs one file.
test: test-deps guests guests-python
	@rm -f $(SKIP_LOG)
	@set -o pipefail; rc=0; \
	echo "$(CARGO) test --no-fail-fast $(TEST_ARGS)"; \
	$(CARGO) test --no-fail-fast $(TEST_ARGS) 2>&1 | tee $(TEST_LOG) || rc=$$?; \
	echo; \
	if [ -s $(SKIP_LOG) ]; then echo "$$(wc -l < $(SKIP_LOG)) tests skipped:"; cat $(SKIP_LOG); \
	else echo "nothing skipped"; fi; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "total: %d passed, %d failed\n", p, f }' $(TEST_LOG); \
	exit $$rc

# The main job on embedded defaults: classify the project's own sample messages, then run
# the daemon (SQLite store, the example policies, the admin API on 127.0.0.1:8025).
run: export REBOUND_API_TOKEN ?= dev-token
run: build guests
	@mkdir -p .rebound
	$(CARGO) run -q -- --config rebound.example.toml classify --format table samples/
	@echo "rebound serve: admin API on http://127.0.0.1:8025, dashboard on http://127.0.0.1:8025/ui, token \$$REBOUND_API_TOKEN ($(REBOUND_API_TOKEN)); Ctrl-C stops it"
	$(CARGO) run -q -- --config rebound.example.toml serve

bench: test-deps guests guests-python
	$(CARGO) bench

fmt:
	$(CARGO) fmt

clippy:
	$(CARGO) clippy --all-targets

check:
	$(CARGO) check --all-targets

golden-bless:
	REBOUND_BLESS=1 $(CARGO) test --test golden

# The detector's fuzz target (not part of CI): needs `cargo install cargo-fuzz`; runs on
# the stable toolchain through RUSTC_BOOTSTRAP. FUZZ_SECONDS=600 by default.
FUZZ_SECONDS ?= 600
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run detect -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
