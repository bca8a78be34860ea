# The two commands of the README: `make demo` and `make test`.
SWIFT ?= swift
SEED ?=

.PHONY: demo test deps build lint format bench bench-quick

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
	$(BENCH_BUILD)
	"$$($(BENCH_BUILD) --show-bin-path)/partitiondb-bench" --engine all --records 1000000 --runs 3 \
		--output Benchmarks/results/latest.json $(BENCH_ARGS)

# The same with 100,000 records, in under two minutes once built: for checking a change.
bench-quick: deps
	@./Benchmarks/install-deps.sh
	$(BENCH_BUILD)
	"$$($(BENCH_BUILD) --show-bin-path)/partitiondb-bench" --engine all --records 100000 --runs 3 \
		--output Benchmarks/results/latest.json $(BENCH_ARGS)

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
