# make test: everything CI runs. Installs nothing globally that a test
# does not need; see scripts/.
GO          ?= go
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTLOG     ?= $(CURDIR)/artifacts/test.log

.PHONY: test lint unit

test: lint unit

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Tests that need a service skip outside make test; here OIDCAUTH_STRICT=1
# turns such a skip into a failure, and scripts/gotest fails on any skip.
unit:
	OIDCAUTH_STRICT=1 scripts/gotest $(TESTLOG) -race -count=1 ./...
