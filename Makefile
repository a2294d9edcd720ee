# claude-relay — see README.md. `make run` starts dev mode, `make test` runs every test.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/claude-relay/claude-relay/internal/app.Version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build run test vet fmt-check bench bench-limits bench-ledger clean proto screenshots

all: build

## build: the relay binary, the fake upstream and the provider plugins (bin/plugins/) into bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/claude-relay ./cmd/claude-relay
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/fake-anthropic ./cmd/fake-anthropic
	$(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/plugins/auth-apikey ./plugins/auth-apikey
	$(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/plugins/crypto-aesgcm ./plugins/crypto-aesgcm

## run: dev mode (control plane + sidecar, in-memory store unless REDIS_URL/REDIS_HOST is set)
run: build
	$(BIN)/claude-relay dev

## test: formatting, vet, the whole suite with the race detector, and a few seconds of fuzzing
## the request scanner's model against encoding/json's
test: fmt-check vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -run='^$$' -fuzz=FuzzScanModel -fuzztime=5s ./sidecar/request

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## screenshots: every web console page at 1280 and 390 px wide into docs/screenshots/ (needs
## Debian's chromium; the browser test drives dev mode against the fake upstream)
screenshots:
	CLAUDE_RELAY_TEST_BROWSER=required CLAUDE_RELAY_SCREENSHOTS=$(CURDIR)/docs/screenshots \
		$(GO) test -count=1 -run '^TestConsoleInAHeadlessBrowser$$' ./controlplane/console/

## bench: the load harness (bench/): relay vs direct, httputil.ReverseProxy and nginx on
## loopback; prints a markdown table and the relay's Redis cost per request of every phase
## beside the Redis floor (a ReverseProxy doing one INCR and one DECR per request), what the
## request ledger adds (switched off and on in the same relay), and writes
## bench/results/latest.json. BENCH_FLAGS=-h lists flags.
bench:
	$(GO) run ./bench $(BENCH_FLAGS)

## bench-limits: the limit scripts' Go benchmarks against a real Redis (CLAUDE_RELAY_TEST_REDIS):
## admission vs a PING, auto-pipelined vs not, reserve-mode admission vs today's (charge)
## admission, and admission of a queued policy that does not wait vs one without a queue,
## each printed as a ratio measured in the same run; and what a request's limits cost Redis
## (CPU, commands, round trips, on a redis-server of its own with AOF) before vs after issue 19
bench-limits:
	$(GO) test -run='^$$' -bench='BenchmarkAdmit|BenchmarkRedisCostPerRequest' -benchtime=2x ./sidecar/limits

## bench-ledger: the request ledger's cost against a real Redis: relay CPU per recorded request
## ledger off vs on (ns/record; the ledger adds on - off), the batch write with Redis, and the
## Redis memory of 100,000 records scaled to a million (MiB/1M_records)
bench-ledger:
	$(GO) test -run='^$$' -bench='BenchmarkLedger(RelayCPU|BatchWrite)' -benchtime=200x ./store
	$(GO) test -run='^$$' -bench='BenchmarkLedgerMemory' -benchtime=1x ./store

## proto: regenerate the plugin contracts' Go code (needs protoc from Debian's protobuf-compiler,
## protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.2 on PATH; go install them from the Go proxy)
proto:
	protoc --go_out=. --go_opt=module=github.com/claude-relay/claude-relay \
		--go-grpc_out=. --go-grpc_opt=module=github.com/claude-relay/claude-relay \
		plugins/contract/contract.proto

clean:
	rm -rf $(BIN)
