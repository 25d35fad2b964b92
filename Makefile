# Stagedoor. `make run` starts the whole stack; `make test` runs every test, e2e included.
MEDIAMTX_VERSION ?= v1.21.0
MEDIAMTX_BIN     := bin/mediamtx-$(MEDIAMTX_VERSION)
GO               ?= go
GOLANGCI_VERSION ?= v2.15.0
GOLANGCI         := bin/golangci-lint-$(GOLANGCI_VERSION)
BENCH_COUNT      ?= 5
# hls.js for the channel pages: the npm version MediaMTX v1.21.0 embeds, checked against
# the SHA-256 of its dist/hls.min.js. Change both together.
HLSJS_VERSION    ?= 1.7.2
HLSJS_SHA256     ?= afcde07437ec84b072fe8782e772ceb5046eac751b2719f73ae0d83d763bc3f5
HLSJS_CACHE      := build/hls.js-$(HLSJS_VERSION).min.js

.PHONY: all build stagedoor hlsjs mediamtx run test-deps test unit e2e bench fuzz lint fmt clean

all: build

build: stagedoor mediamtx

# Always handed to `go build`: its own cache makes a no-change build instant.
stagedoor: hlsjs
	$(GO) build -o bin/stagedoor ./cmd/stagedoor

# hls.js from npm into web/static/, where the binary embeds it (go:embed); fetched once
# per version into build/. Needs node/npm, like the MediaMTX build.
hlsjs: web/static/hls.min.js

$(HLSJS_CACHE):
	@mkdir -p build
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/hlsjs.XXXXXX") && \
	(cd "$$tmp" && npm pack --silent "hls.js@$(HLSJS_VERSION)" >/dev/null && \
		tar xzf "hls.js-$(HLSJS_VERSION).tgz" package/dist/hls.min.js) && \
	echo "$(HLSJS_SHA256)  $$tmp/package/dist/hls.min.js" | sha256sum -c --quiet && \
	cp "$$tmp/package/dist/hls.min.js" $@.tmp && mv $@.tmp $@; \
	status=$$?; rm -rf "$$tmp"; exit $$status

web/static/hls.min.js: $(HLSJS_CACHE)
	cp $< $@

# MediaMTX from its Go module (see scripts/build-mediamtx.sh). Built once per version.
mediamtx: bin/mediamtx

$(MEDIAMTX_BIN): scripts/build-mediamtx.sh
	scripts/build-mediamtx.sh $(MEDIAMTX_VERSION) $@

bin/mediamtx: $(MEDIAMTX_BIN)
	ln -sf $(notdir $(MEDIAMTX_BIN)) $@

run: build
	mkdir -p data
	bin/stagedoor run --db data/stagedoor.db

# The programs the tests run (ffmpeg, chromium, chattr, mount, ps): installed with
# apt-get when missing, silent when present. See scripts/test-deps.sh.
test-deps:
	@scripts/test-deps.sh

# Everything: unit tests, the mediamtx.yml lint, fuzz seeds and the e2e suite. The e2e
# suite runs after the other packages, not beside them (go test runs packages in
# parallel): its encoders, MediaMTX and Chromium take a core or so, and the load tests in
# cmd/stagedoor are the T20/T21/T29 loads on 2 cores, so together, on a machine already
# busy, the suite would overload itself and the load tests measure that instead. Like
# one go test, it runs both halves whatever the first one's result.
test: test-deps build
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/e2e$$'); \
	status=$$?; $(GO) test -race -count=1 -timeout 30m ./e2e/ && exit $$status

unit: hlsjs
	$(GO) test -race -short -count=1 ./...

e2e: test-deps build
	$(GO) test -race -count=1 -timeout 30m -v ./e2e/

# BENCH_BASE=REF also measures P1 and P4 of REF beside this tree (scripts/bench-compare.sh).
bench: test-deps build
	BENCH_BASE=$(BENCH_BASE) scripts/bench.sh $(BENCH_COUNT)

# Each fuzz target for FUZZTIME (their seeds run in every `go test`).
FUZZTIME ?= 60s
FUZZ_TARGETS := policy:FuzzDecodeAndDecide .:FuzzParsePath rtmpfront:FuzzRoutableName rtmpfront:FuzzChunkReader plugin:FuzzHookPayload cmd/stagedoor:FuzzRedactGuards authserver:FuzzDecodeRequestMatchesEncodingJSON
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test ./$$pkg/ -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s || exit 1; \
	done

# go vet, the import rules of the layout (scripts/importrules; its test shows that a
# broken rule fails), formatting, and golangci-lint at a pinned version (.golangci.yml).
lint: $(GOLANGCI)
	$(GO) vet ./...
	$(GO) run ./scripts/importrules
	$(GO) test -count=1 ./scripts/importrules/
	$(GOLANGCI) run ./...

$(GOLANGCI):
	@mkdir -p bin
	GOBIN=$(CURDIR)/build/golangci-$(GOLANGCI_VERSION) GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	cp build/golangci-$(GOLANGCI_VERSION)/golangci-lint $@

fmt: $(GOLANGCI)
	$(GOLANGCI) fmt ./...

clean:
	rm -rf bin build web/static/hls.min.js
