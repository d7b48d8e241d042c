# Infinity X One Gateway — everyday commands.
#   make tools   install redis-server, consul and docker-compose if missing
#   make test    tools, then go vet, the race-enabled tests and the compose test (what CI runs)
#   make run     the gateway in dev mode
#   make build   bin/gateway, stamped with the git version
#   make bench   Go benchmarks and the end-to-end load table (bench/e2e)
#   make lint    gofmt and go vet
#   make fuzz    every Go fuzz target for FUZZTIME each (default 20s); their seed corpora
#                already run as ordinary tests in make test
#   make stack   the docker-compose topology as local processes (no Docker needed)
#   make stack-mesh  the same, with users and orders behind Consul Connect sidecars
#   make soak    ten minutes of load on the local stack with faults (not part of make test)
#   make compose-test  docker-compose.yml for real, under podman (docs/compose.md)

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: tools test run build bench lint stack stack-mesh soak fuzz compose-test

tools:
	bash scripts/install-tools.sh

test: tools
	@if command -v docker-compose >/dev/null 2>&1; then docker-compose -f docker-compose.yml config -q && docker-compose -f docker-compose.yml -f deploy/compose.podman.yml config -q && echo "docker-compose.yml: ok"; elif [ "$(CI)" = true ]; then echo "docker-compose missing" >&2; exit 1; else echo "warning: docker-compose missing: docker-compose.yml not checked" >&2; fi
	$(GO) vet ./...
	$(GO) vet -tags composetest ./deploy/composetest
	$(GO) test -race -count=1 ./...
	$(COMPOSE_TEST)

# The compose smoke test (docs/compose.md): a podman service of its own, images built
# on this host, docker-compose.yml up, checks through HAProxy, down. Needs root.
COMPOSE_TEST = $(GO) test -tags composetest -count=1 -v -timeout 30m ./deploy/composetest

compose-test: tools
	$(COMPOSE_TEST)

run:
	$(GO) run ./cmd/gateway dev

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gateway ./cmd/gateway

# E2E_FLAGS passes flags to the load harness, e.g. make bench E2E_FLAGS=-quick
# (go run ./bench/e2e -h lists them).
bench:
	bash scripts/install-tools.sh wrk
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	cd tools/breakereval && GOWORK=off $(GO) test -run='^$$' -bench=. -benchmem
	$(GO) run ./bench/e2e $(E2E_FLAGS)

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Each fuzz target (func FuzzXxx in a _test.go file) runs for FUZZTIME, one after the
# other: go test -fuzz takes one target of one package at a time. New inputs that fail
# land in the package's testdata/fuzz/FuzzXxx/ and then run in every make test.
FUZZTIME ?= 20s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for fn in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== $$dir $$fn ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$dir; \
		done; \
	done

# Consul, Redis, users x2, orders x2 and three gateway replicas on deploy/gateway.hcl,
# as processes on loopback; prints the addresses and a token; Ctrl-C stops them all.
# STACK_FLAGS passes flags, e.g. make stack STACK_FLAGS=-port=0 (free ports; -h lists them).
stack: tools
	$(GO) build -o bin/stack ./scripts/stack
	./bin/stack $(STACK_FLAGS)

# The mesh variant (docker-compose.mesh.yml): every echo instance on loopback behind
# `consul connect proxy -sidecar-for ID`, the replicas on deploy/gateway-mesh.hcl.
stack-mesh: tools
	$(GO) build -o bin/stack ./scripts/stack
	./bin/stack -mesh $(STACK_FLAGS)

# The local stack under load for ten minutes, an echo instance restarted every 20 s and
# Redis every 2 min; prints RSS, open fds, goroutines and statuses every 30 s and fails on
# a failed request or a resource that keeps growing. Not part of make test.
# SOAK_FLAGS passes flags, e.g. make soak SOAK_FLAGS="-duration 2m -cluster" (-h lists them).
soak: tools
	$(GO) run ./scripts/soak $(SOAK_FLAGS)
