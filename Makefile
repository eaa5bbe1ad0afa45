# make test: everything CI runs — installs what tests need (scripts/deps),
# lints, then runs the library's tests and the integration module's.
GO          ?= go
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
ARTIFACTS   ?= $(CURDIR)/artifacts

.PHONY: test deps lint unit integration fuzz fuzz-short bench load soak soak-short

test: deps lint unit integration fuzz-short soak-short

deps:
	scripts/deps

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	cd integration && $(GO) vet ./... && $(STATICCHECK) ./...
	cd examples/routers && $(GO) vet ./... && $(STATICCHECK) ./...
	cd otelauth && $(GO) vet ./... && $(STATICCHECK) ./...

# Tests that need a service skip outside make test; here OIDCAUTH_STRICT=1
# turns such a skip into a failure, and scripts/gotest fails on any skip.
unit:
	OIDCAUTH_STRICT=1 scripts/gotest $(ARTIFACTS)/unit.log -race -count=1 ./...
	cd examples/routers && OIDCAUTH_STRICT=1 ../../scripts/gotest $(ARTIFACTS)/routers.log -race -count=1 ./...
	cd otelauth && OIDCAUTH_STRICT=1 ../scripts/gotest $(ARTIFACTS)/otelauth.log -race -count=1 ./...

# The interop suite runs under the race detector. The Topaz suite runs
# without it: its code under test (the Authorizer) is race-tested in unit,
# and instrumenting OPA for it cost minutes of every cold build.
integration:
	cd integration && OIDCAUTH_STRICT=1 OIDCAUTH_ARTIFACTS=$(ARTIFACTS) ../scripts/gotest $(ARTIFACTS)/interop.log -race -count=1 -timeout 10m ./interop/...
	cd integration && OIDCAUTH_STRICT=1 OIDCAUTH_ARTIFACTS=$(ARTIFACTS) ../scripts/gotest $(ARTIFACTS)/topaz.log -count=1 -timeout 10m $$(go list ./... | grep -v /interop)

# Every fuzz target for FUZZTIME (make fuzz FUZZTIME=10m); make test runs
# each for 10 s.
FUZZTIME ?= 2m
fuzz:
	scripts/fuzz $(FUZZTIME)

fuzz-short:
	scripts/fuzz 10s

# Go benchmarks of the hot path, several runs each, summarized by benchstat.
BENCHCOUNT ?= 6
bench:
	scripts/bench $(BENCHCOUNT)

# Side-by-side load run with wrk on loopback: bench/bare, examples/basic with
# cookie sessions and with Redis sessions, alternating rounds, every response
# checked. make load LOADFLAGS="-rounds 5 -duration 10s -min-cookie-ratio 0.85 -min-redis-ratio 0.5"
LOADFLAGS ?=
load:
	scripts/load $(LOADFLAGS)

# Bounded soak of examples/basic with its development provider and Redis
# (make soak SOAKTIME=5m SOAKFLAGS="-workers 40 -race"); make test runs 10 s.
SOAKTIME  ?= 60s
SOAKFLAGS ?=
soak:
	scripts/soak $(SOAKTIME) $(SOAKFLAGS)

soak-short:
	scripts/soak 10s
