# pptpgw — see README.md. `make test` needs no root; `make e2e` does.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s
BIN      := bin/pptpgw

.PHONY: all build test vet unit race fuzz-seeds fuzz bench e2e clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pptpgw

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

# unit tests, fuzz seed corpora (plain `go test` runs every Fuzz target on
# its seeds), under the race detector
test: vet
	$(GO) test -race -count=1 ./...

# each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./alg/ ./conntrack/ ./nat/

# root: network namespaces, real iptables, pptpd and pptp-linux
e2e: build
	$(GO) test -tags e2e -count=1 -timeout 15m ./e2e/... ./nat/...

clean:
	rm -rf bin
