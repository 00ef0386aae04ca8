# rebound — build, guests, test, run, bench.
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2

.PHONY: all build guests test run bench fmt clippy check golden-bless fuzz

all: build

build:
	$(CARGO) build

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

test: guests
	$(CARGO) test

# The main job on embedded defaults: classify the project's own sample messages, then run
# the daemon (SQLite store, the example policies, the admin API on 127.0.0.1:8025).
run: export REBOUND_API_TOKEN ?= dev-token
run: build guests
	@mkdir -p .rebound
	$(CARGO) run -q -- classify --format table samples/
	@echo "rebound serve: admin API on http://127.0.0.1:8025, token \$$REBOUND_API_TOKEN ($(REBOUND_API_TOKEN)); Ctrl-C stops it"
	$(CARGO) run -q -- --config rebound.example.toml serve

bench: guests
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
