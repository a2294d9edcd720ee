# claude-relay — see README.md. `make run` starts dev mode, `make test` runs every test.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/claude-relay/claude-relay/internal/app.Version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build run test vet fmt-check bench clean

all: build

## build: the relay binary and the fake upstream into bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/claude-relay ./cmd/claude-relay
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/fake-anthropic ./cmd/fake-anthropic

## run: dev mode (control plane + sidecar, in-memory store unless REDIS_URL/REDIS_HOST is set)
run: build
	$(BIN)/claude-relay dev

## test: formatting, vet, and the whole suite with the race detector
test: fmt-check vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: Go benchmarks (ratios are printed against baselines measured in the same run)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

clean:
	rm -rf $(BIN)
