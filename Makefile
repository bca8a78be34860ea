# The two commands of the README: `make demo` and `make test`.
SWIFT ?= swift
SEED ?=

.PHONY: demo test deps build lint format

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
