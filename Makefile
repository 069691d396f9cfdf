# siterecovery: the two commands a newcomer needs are `make demo` and `make test`.
GO       ?= go
BIN      := bin/siterecovery
PKGS     := ./...
# Debian packages whose tools the tests drive (command:package).
TEST_TOOLS := qemu-io:qemu-utils qemu-img:qemu-utils qemu-nbd:qemu-utils nbdcopy:libnbd-bin nbdinfo:libnbd-bin \
              chromium:chromium rsync:rsync curl:curl script:bsdutils
# The nats CLI the tests drive with auth init's contexts: go install of natscli's release
# into a cache directory (where the tests look for it), only when missing.
NATS_CLI     := github.com/nats-io/natscli/nats@v0.5.0
NATS_CLI_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/siterecovery/bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build test test-deps demo bench soak fmt lint

build:
	$(GO) build -o $(BIN) ./cmd/siterecovery

## test: installs the test tools when missing, vets, then runs every test with the race detector.
test: test-deps
	$(GO) vet $(PKGS)
	SR_REQUIRE_BROWSER=1 SR_REQUIRE_NATS_CLI=1 $(GO) test -race -timeout 14m $(PKGS)

## test-deps: install the Debian packages and the nats CLI the tests need, only when missing.
test-deps:
	@if [ ! -x "$(NATS_CLI_DIR)/nats" ]; then \
		echo "installing the nats CLI ($(NATS_CLI)) into $(NATS_CLI_DIR)"; \
		mkdir -p "$(NATS_CLI_DIR)" && GOBIN="$(NATS_CLI_DIR)" $(GO) install $(NATS_CLI); \
	fi
	@missing=""; \
	for t in $(TEST_TOOLS); do \
		cmd=$${t%%:*}; pkg=$${t##*:}; \
		command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		pkgs=$$(printf '%s\n' $$missing | sort -u | tr '\n' ' '); \
		echo "installing test tools: $$pkgs"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$pkgs; \
	fi

## demo: the whole two-site system in one process on the embedded default.
demo:
	$(GO) run ./cmd/siterecovery demo

## bench: the Go benchmarks, each with its raw baseline measured in the same run, then the
## end-to-end benchmarks (`siterecovery bench`), whose figures rewrite the generated section of
## docs/benchmarks.md. BENCH_FLAGS=--quick for a short run.
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 2s -timeout 30m $(PKGS)
	$(GO) run ./cmd/siterecovery bench $(BENCH_FLAGS) --markdown docs/benchmarks.md

## soak: 10 VMs for 10 minutes: random writes, failovers and failbacks, bytes checked at every step (not in make test).
soak:
	$(GO) run ./cmd/siterecovery soak --duration 10m

## fmt: fails when a file is not gofmt-formatted (run gofmt -w to fix).
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

## lint: go vet, plus staticcheck when the module proxy serves it.
lint:
	$(GO) vet $(PKGS)
	@if $(GO) run $(STATICCHECK) -version >/dev/null 2>&1; then \
		$(GO) run $(STATICCHECK) $(PKGS); \
	else echo "staticcheck not available from the module proxy: skipped"; fi
