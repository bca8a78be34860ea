# The two commands of the README: `make demo` and `make test`.
SWIFT ?= swift
SEED ?=

.PHONY: demo test deps build lint format bench bench-quick bench-replication bench-replication-quick

deps:
	@./scripts/install-deps.sh

build: deps
	$(SWIFT) build

# A scripted tour through `pdb`: a database, partitions, homes, writes, a refused write, check.
demo: deps
	$(SWIFT) build --product pdb
	./scripts/demo.sh "$$($(SWIFT) build --show-bin-path)/pdb"

# The whole test suite (unit, randomized model, concurrency, corruption, end-to-end).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

lint:
	$(SWIFT) format lint --strict -r Sources Tests

format:
	$(SWIFT) format format -i -r Sources Tests

# PartitionDB against SQLite and LMDB (Benchmarks/README.md): a separate package, built in release
# mode, each engine in a process of its own, three rounds with each row the median. Never run by
# CI or the tests.
BENCH_ARGS ?=
BENCH_BUILD = $(SWIFT) build -c release --package-path Benchmarks

bench: deps
	@./Benchmarks/install-deps.sh
	$(BENCH_BUILD) --product partitiondb-bench
	"$$($(BENCH_BUILD) --show-bin-path)/partitiondb-bench" --engine all --records 1000000 --runs 3 \
		--output Benchmarks/results/latest.json $(BENCH_ARGS)

# The same with 100,000 records, in under two minutes once built: for checking a change.
bench-quick: deps
	@./Benchmarks/install-deps.sh
	$(BENCH_BUILD) --product partitiondb-bench
	"$$($(BENCH_BUILD) --show-bin-path)/partitiondb-bench" --engine all --records 100000 --runs 3 \
		--output Benchmarks/results/latest.json $(BENCH_ARGS)

# PartitionDB's log shipping against PostgreSQL 15 streaming replication (Benchmarks/README.md,
# "Replication"): this process the primary, a `pdb serve` replica, PostgreSQL's primary and hot
# standby, all on loopback; 3 rounds with each row the median, a 1 GiB catch-up. Needs root or
# PostgreSQL's account to run the servers as (the `postgres` account when run as root).
REPLICATION_BENCH = "$$($(BENCH_BUILD) --show-bin-path)/partitiondb-replication-bench"

bench-replication: deps
	@./Benchmarks/install-deps.sh
	$(BENCH_BUILD) --product partitiondb-replication-bench
	$(BENCH_BUILD) --product pdb
	$(REPLICATION_BENCH) --runs 3 --output Benchmarks/results/replication-latest.json $(BENCH_ARGS)

# One round of 2-second phases and a 100 MiB catch-up: for checking a change.
bench-replication-quick: deps
	@./Benchmarks/install-deps.sh
	$(BENCH_BUILD) --product partitiondb-replication-bench
	$(BENCH_BUILD) --product pdb
	$(REPLICATION_BENCH) --quick --output Benchmarks/results/replication-latest.json $(BENCH_ARGS)

# Issue 3's reliability harness (spec/testing.md): simulated power loss, real process kills, I/O
# faults, bit flips, the model test, ASan and TSan runs, and libFuzzer; one summary line per kind.
# `reliability` uses larger counts than CI (knobs: PDB_CRASH_STATES, PDB_KILLS, PDB_BITFLIPS,
# PDB_MODEL_OPS, FUZZ_SECONDS, ...; see scripts/reliability.sh); `reliability-ci` is CI's bounded
# run: the suite under ASan, the concurrency tests under TSan, each fuzz target for 60 s.
.PHONY: reliability reliability-ci

reliability: deps
	./scripts/reliability.sh full

reliability-ci: deps
	./scripts/reliability.sh ci
