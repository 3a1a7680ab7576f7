# pptpgw — see README.md. `make test` needs no root; `make e2e` does.
# sudo resets PATH: find the Go toolchain where go.dev's tarball puts it too.
export PATH := $(PATH):/usr/local/go/bin
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s
BIN      := bin/pptpgw

.PHONY: all build test vet unit race fuzz-seeds fuzz bench e2e flood-e2e bench-scale soak clean demo demo-down deploy-check release docs

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

# root: network namespaces, real iptables, pptpd and pptp-linux; the e2e
# tests run the binary just built (PPTPGW_E2E_BIN; without it they build their own)
e2e: build
	PPTPGW_E2E_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -timeout 15m ./e2e/... ./nat/...

# root: e2e's TestFlood at the hardening issue's length, 30 s per flood
# (`make e2e` runs it for 5 s); FLOOD_CONN_RATE new connections a second
FLOOD_DURATION  ?= 30s
FLOOD_CONN_RATE ?= 1000
flood-e2e: build
	E2E_FLOOD_DURATION=$(FLOOD_DURATION) E2E_FLOOD_CONN_RATE=$(FLOOD_CONN_RATE) PPTPGW_E2E_BIN=$(CURDIR)/$(BIN) \
	  $(GO) test -tags e2e -count=1 -timeout 10m -run '^TestFlood$$' -v ./e2e/

# root: GRE packets/s through plain forwarding, the kernel's PPTP helper and
# pptpgw (queue, kernel) side by side in the lab (e2e/bench_test.go); the
# table goes to bench-e2e.md, the chart to docs/bench-e2e.svg. PPTPGW_E2E_BENCH_SECONDS
# per run, default 2; PPTPGW_E2E_BENCH_PATHS=queue,kernel a subset (the helper is kept unless
# PPTPGW_E2E_BENCH_NOREF=1); PPTPGW_E2E_BENCH_DIRS=inbound or outbound one direction.
bench-e2e: build
	PPTPGW_E2E_BENCH=1 PPTPGW_E2E_BENCH_OUT=$(CURDIR)/bench-e2e.md PPTPGW_E2E_BENCH_SVG=$(CURDIR)/docs/bench-e2e.svg \
	  PPTPGW_E2E_BIN=$(CURDIR)/$(BIN) \
	  $(GO) test -tags e2e -count=1 -timeout 10m -run '^TestBenchGRE$$' -v ./e2e/

# root: the scale study (e2e/scale_test.go): the kernel's PPTP helper and
# pptpgw (kernel, queue) with 10, 1 000 and 10 000 calls set up by our own
# PNS (e2e/cmd/pptpload) against our own PAC (e2e/cmd/pacsim); GRE packets/s
# at each size, setup rate, memory per call; the table goes to bench-scale.md.
# PPTPGW_E2E_BENCH_SECONDS per run, default 2. Raises nf_conntrack_expect_max
# (global) for the run and restores it.
bench-scale: build
	PPTPGW_E2E_SCALE=1 PPTPGW_E2E_SCALE_OUT=$(CURDIR)/bench-scale.md PPTPGW_E2E_BIN=$(CURDIR)/$(BIN) \
	  $(GO) test -tags e2e -count=1 -timeout 20m -run '^TestScale$$' -v ./e2e/

# root: the soak (e2e/soak_test.go): pptpload/pacsim call churn (300 calls
# at a time), GRE on the live calls, the daemon restarted every 2 minutes
# (a third of the run if shorter; SIGTERM and SIGKILL in turn), the
# firewall reloaded once; no call may die but by its own teardown, and
# goroutines, fds, heap and RSS may not grow. Prints a summary table
# (also in soak.md). SOAK_GRE_PATH: queue, kernel (default), bpf, auto.
SOAK_DURATION ?= 10m
SOAK_GRE_PATH ?= kernel
soak: build
	E2E_SOAK_DURATION=$(SOAK_DURATION) E2E_SOAK_GRE_PATH=$(SOAK_GRE_PATH) E2E_SOAK_OUT=$(CURDIR)/soak.md \
	  PPTPGW_E2E_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -timeout 3h -run '^TestSoak$$' -v ./e2e/

clean:
	rm -rf bin dist

# root: a throw-away lab (2 clients, pptpgw, pptpd) left running; see README "Demo"
DEMO_DIR  ?= /var/tmp/pptpgw-demo
DEMO_PKGS := iptables iproute2 pptpd pptp-linux conntrack tcpdump curl
demo:
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root: sudo make demo"; exit 1; fi
	@if ! command -v $(GO) >/dev/null; then echo "make demo needs Go $$(sed -n 's/^go //p' go.mod) (go.dev/dl; Debian's golang is older)"; exit 1; fi
	@missing=; for p in $(DEMO_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(MAKE) build
	$(GO) run ./e2e/cmd/demo up --dir $(DEMO_DIR) --pptpgw $(BIN)

demo-down:
	$(GO) run ./e2e/cmd/demo down --dir $(DEMO_DIR)

# docs/architecture.svg from its Graphviz source (apt-get install graphviz);
# the source's hash in the SVG lets `make test` notice a stale picture
docs: docs/architecture.svg docs/dashboard.svg
# docs/dashboard.svg: the Grafana dashboard's schematic (docs/dashboard)
docs/dashboard.svg: deploy/grafana/pptpgw.json docs/dashboard/main.go
	$(GO) run ./docs/dashboard
docs/architecture.svg: docs/architecture.dot
	dot -Tsvg $< -o $@.tmp
	echo "<!-- source: architecture.dot sha256 $$(sha256sum $< | cut -d' ' -f1) -->" >> $@.tmp
	mv $@.tmp $@

# the deploy/ files: Docker build script, systemd-analyze, manifests (deploy/check.sh)
deploy-check:
	GO=$(GO) sh deploy/check.sh

# static binaries in dist/ for servers and routers (NAME:GOARCH:extra environment; mips and
# mipsle soft-float, as OpenWrt builds them), .debs for amd64 and arm64, checked: the
# packages' contents (deploy/check-deb.sh), and the router builds run under qemu-user with the
# same output as amd64 (deploy/check-cross.sh; apt-get install qemu-user-static)
RELEASE_TARGETS := amd64:amd64: arm64:arm64: armv7:arm:GOARM=7 mips:mips:GOMIPS=softfloat mipsle:mipsle:GOMIPS=softfloat
RELEASE_DEBS    := amd64 arm64
release:
	@rm -rf dist && mkdir -p dist
	@set -e; for t in $(RELEASE_TARGETS); do \
	  name=$${t%%:*}; rest=$${t#*:}; arch=$${rest%%:*}; extra=$${rest#*:}; \
	  echo "build linux/$$name"; \
	  env CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $$extra $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	    -o dist/pptpgw-$(VERSION)-linux-$$name ./cmd/pptpgw; \
	done
	@set -e; for a in $(RELEASE_DEBS); do \
	  deb=$$(sh deploy/mkdeb.sh dist/pptpgw-$(VERSION)-linux-$$a $$a $(VERSION) dist); \
	  sh deploy/check-deb.sh $$deb $(VERSION); \
	done
	sh deploy/check-cross.sh dist $(VERSION)
	@cd dist && sha256sum * > SHA256SUMS && cat SHA256SUMS
