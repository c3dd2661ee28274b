# The two commands a newcomer needs are the first two targets: `make run` and `make test`.
CARGO ?= cargo
BIN := secrets-service

.PHONY: run test fmt-check clippy release fmt bench bench-import fuzz soak deploy-check ha help

## run: serve on 127.0.0.1:8080 on the embedded store, with generated development keys
run:
	$(CARGO) run --release --bin $(BIN) -- serve

## test: every check: formatting, clippy (warnings are errors) and all tests on real databases
test: fmt-check clippy
	scripts/with-postgres.sh $(CARGO) test --workspace --all-targets --locked

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## release: build the optimised binary (target/release/secrets-service)
release:
	$(CARGO) build --release --locked --bin $(BIN)

help:
	@grep -E '^## ' Makefile | sed 's/^## /  make /'

## bench: benchmark this service (PostgreSQL, SQLite) against OpenBao and pgbench (docs/benchmarks.md)
bench: release
	bench/run.sh

## bench-import: import-original's speed, release build: generated namespaces into each store, one at a time
IMPORT_BENCH_NAMESPACES ?= 10000
bench-import:
	IMPORT_TEST_NAMESPACES=$(IMPORT_BENCH_NAMESPACES) scripts/with-postgres.sh $(CARGO) test --release --locked \
	  -p secrets-api --test import_original every_secret -- --nocapture --test-threads=1

## fuzz: hostile input: the property tests with many cases, then schemathesis against a local service
PROPTEST_CASES ?= 10000
fuzz:
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --locked -p secrets-adapters --test crypto_props
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --locked -p secrets-api --test parsing_props
	scripts/fuzz-http.sh

## soak: the fault tests at length, release build: many SIGKILL rounds per store, outages, limit races
SOAK_CRASH_ROUNDS ?= 30
SOAK_OUTAGES ?= 8
SOAK_LIMIT_RACES ?= 10
soak:
	FAULTS_CRASH_ROUNDS=$(SOAK_CRASH_ROUNDS) FAULTS_OUTAGES=$(SOAK_OUTAGES) FAULTS_LIMIT_RACES=$(SOAK_LIMIT_RACES) \
	  scripts/with-postgres.sh $(CARGO) test --release --locked -p secrets-api --test faults -- --test-threads=1

## deploy-check: run every command of docs/deploy.md against PostgreSQL with TLS, in a throwaway copy of this machine (root)
deploy-check:
	scripts/deploy-check.sh

## ha: a three-node Patroni cluster (etcd, synchronous mode) on loopback; failover under load, reads on standbys
HA_ROUNDS ?= 5
ha:
	HA_ROUNDS=$(HA_ROUNDS) scripts/ha/run.sh $(CARGO) test --locked -p secrets-api --test ha -- --test-threads=1 --nocapture
