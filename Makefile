# shoes-scaleset build targets. `make test` is what CI runs.
GO        ?= go
BIN       ?= bin/shoes-scaleset
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -s -w -X github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo.version=$(VERSION)
# Four test binaries at a time on two cores: the slow packages run
# processes and mostly wait on timers (a run uses about 40 % of the CPU at
# -p 2), so more of them overlap without starving the timing-sensitive
# end-to-end tests. Measured on the same suite: 107 s at -p 2, 63 s at -p 4;
# about 73 s at -p 4 since the etcd tests came (docs/development.md).
TESTFLAGS ?= -race -p 4 -timeout 20m
# The longest test binaries first: go test starts packages in the order it
# is given them, and one of these started last would run on alone at the
# end (measured: 80-87 s in alphabetical order, 75-76 s this way).
SLOW_TESTS := ./internal/reliability/ ./internal/cli/ ./internal/store/ ./internal/replica/ ./internal/controller/ ./internal/shoes/ \
              ./internal/sim/scenario/scenariotest/ ./internal/sim/actionsfake/ ./internal/sim/shoesfake/ ./internal/github/

.PHONY: build test lint generate bench clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/shoes-scaleset

test:
	$(GO) test $(TESTFLAGS) $(SLOW_TESTS) ./...

lint:
	@unformatted="$$(gofmt -l cmd internal proto)"; \
	if [ -n "$$unformatted" ]; then echo "not gofmt-ed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

generate:
	bash proto/generate.sh

# The Go benchmarks of the plugin pool and the store, then the figures of
# docs/performance.md (internal/bench, build tag bench): the binary's demo,
# sim serve and run, one at a time. BENCH_QUICK=1 runs one configuration of
# each (a few minutes); BENCH_RUNS=N sets the runs per configuration
# (default 3); BENCH_OUT=FILE also appends the tables to FILE.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 3 ./internal/shoes/... ./internal/store/...
	$(GO) test -tags bench -run . -v -count 1 -p 1 -timeout 60m ./internal/bench/

clean:
	rm -rf bin dist

# The reliability suite: shoes-scaleset run and sim serve as processes,
# killed and restarted; rewrites docs/reliability.md (see that file).
.PHONY: reliability
reliability:
	RELIABILITY_REPORT=1 $(GO) test -tags reliability -race -p 1 -timeout 60m -count=1 ./internal/reliability/...
