# Stagedoor. `make run` starts the whole stack; `make test` runs every test, e2e included.
MEDIAMTX_VERSION ?= v1.21.0
MEDIAMTX_BIN     := bin/mediamtx-$(MEDIAMTX_VERSION)
GO               ?= go
GOLANGCI_VERSION ?= v2.5.0
BENCH_COUNT      ?= 5

.PHONY: all build stagedoor mediamtx run test unit e2e bench fuzz lint fmt clean

all: build

build: stagedoor mediamtx

# Always handed to `go build`: its own cache makes a no-change build instant.
stagedoor:
	$(GO) build -o bin/stagedoor ./cmd/stagedoor

# MediaMTX from its Go module (see scripts/build-mediamtx.sh). Built once per version.
mediamtx: bin/mediamtx

$(MEDIAMTX_BIN): scripts/build-mediamtx.sh
	scripts/build-mediamtx.sh $(MEDIAMTX_VERSION) $@

bin/mediamtx: $(MEDIAMTX_BIN)
	ln -sf $(notdir $(MEDIAMTX_BIN)) $@

run: build
	mkdir -p data
	bin/stagedoor run --db data/stagedoor.db

# Everything: unit tests, the mediamtx.yml lint, fuzz seeds and the e2e suite.
test: build
	$(GO) test -race -count=1 -timeout 30m ./...

unit:
	$(GO) test -race -short -count=1 ./...

e2e: build
	$(GO) test -race -count=1 -timeout 30m -v ./e2e/

bench: build
	scripts/bench.sh $(BENCH_COUNT)

FUZZTIME ?= 60s
fuzz:
	$(GO) test ./authserver/ -run '^$$' -fuzz '^FuzzDecodeAndDecide$$' -fuzztime $(FUZZTIME)

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	@! $(GO) list -deps ./store/ | grep -E 'stagedoor/(authserver|plugin)$$' || (echo "store must not import authserver or plugin"; exit 1)
	@! $(GO) list -deps ./plugin/ | grep -E 'stagedoor/authserver$$|gin-gonic' || (echo "plugin must not import authserver or gin"; exit 1)
	@! $(GO) list -deps ./authserver/ | grep -E 'stagedoor/plugin$$' || (echo "authserver must not import plugin"; exit 1)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
