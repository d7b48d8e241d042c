# Infinity X One Gateway — everyday commands.
#   make tools   install redis-server, consul and docker-compose if missing
#   make test    tools, then go vet and the race-enabled tests (what CI runs)
#   make run     the gateway in dev mode
#   make build   bin/gateway, stamped with the git version
#   make bench   Go benchmarks and the end-to-end load table (bench/e2e)
#   make lint    gofmt and go vet

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: tools test run build bench lint

tools:
	bash scripts/install-tools.sh

test: tools
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

run:
	$(GO) run ./cmd/gateway dev

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gateway ./cmd/gateway

# E2E_FLAGS passes flags to the load harness, e.g. make bench E2E_FLAGS=-quick
# (go run ./bench/e2e -h lists them).
bench:
	bash scripts/install-tools.sh wrk
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	$(GO) run ./bench/e2e $(E2E_FLAGS)

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
