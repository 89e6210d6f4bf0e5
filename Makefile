# tcpkeep: build, run, test, bench, fuzz, lint, install.
# `make test` is what CI runs (.ci/run): it installs what the tests need, lints, and
# runs every test, the privileged ones included (TCPKEEP_REQUIRE_ROOT=1 turns their
# skips into failures).

GO          ?= go
BIN         ?= tcpkeep
PREFIX      ?= /usr/local
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 10s
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -X github.com/tcpkeep/tcpkeep/internal/cli.version=$(VERSION) -X github.com/tcpkeep/tcpkeep/internal/cli.commit=$(COMMIT)

# Debian packages the tests use: ss and ip (iproute2), nft (nftables), promtool
# (prometheus: checks audit -o prom, deploy/'s rules and dashboard); GNU time (the
# benchmarks' peak RSS); setpriv (util-linux: kill's test without CAP_NET_ADMIN,
# deploy/'s units' capabilities); systemd-analyze (systemd: verifies deploy/'s units).
TEST_TOOLS  := ss:iproute2 ip:iproute2 nft:nftables promtool:prometheus /usr/bin/time:time setpriv:util-linux systemd-analyze:systemd

.PHONY: all build run test test-deps lint bench fuzz install clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

# The audit of this host with its defaults. audit exits 1 for a warning and 2 for
# a critical finding (for cron and monitoring); here the findings are the output,
# so only 3, "could not audit", fails make.
run: build
	@./$(BIN) audit; rc=$$?; [ $$rc -le 2 ] || exit $$rc

# Installs the tools the tests need where they are missing (as root, with apt-get).
test-deps:
	@missing=""; for t in $(TEST_TOOLS); do \
	  command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: test-deps lint
	TCPKEEP_REQUIRE_ROOT=1 $(GO) test -race -count=1 ./...

# Benchmarks: Go benchmarks with allocation counts, and tcpkeep against ss on the
# same namespace (see docs/performance.md).
# BENCH_SOCKETS sets the sizes of the namespaces tcpkeep and ss are compared on:
# The targets (docs/performance.md) are for 200,000 sockets. A whole run takes some minutes;
# BenchmarkWatch watches each size for TCPKEEP_BENCH_WATCH_FOR (default 5 x 30 s) and soaks
# the largest for TCPKEEP_BENCH_SOAK (default 3m; the one-hour soak: TCPKEEP_BENCH_SOAK=1h).
BENCH_SOCKETS ?= 20000,200000
bench: test-deps
	TCPKEEP_REQUIRE_ROOT=1 TCPKEEP_BENCH_SOCKETS=$(BENCH_SOCKETS) $(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

# A short run of every fuzz target.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  pkg=$$(dirname $$f); \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)

clean:
	rm -f $(BIN)
