# rebound — build, guests, test, run, bench.
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2

.PHONY: all build guests test run bench fmt clippy check golden-bless fuzz clean

all: build

build:
	$(CARGO) build

# Policy components: the SDK examples and the hostile test guests, built for wasm32-wasip2.
# One target dir for every guest crate; the .wasm files land in $(GUEST_OUT), where the
# policy tests and benches look for them.
GUEST_TARGET := $(CURDIR)/target/guests
GUEST_OUT := $(GUEST_TARGET)/$(WASM_TARGET)/release
guests:
	cd guest-examples && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --release --target $(WASM_TARGET)
	cd tests/guests && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --release --target $(WASM_TARGET)
	@ls $(GUEST_OUT)/*.wasm

test: guests
	$(CARGO) test

run: build
	$(CARGO) run -- classify --format table samples/

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
