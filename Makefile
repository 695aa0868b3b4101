# remotelog: `make demo` to watch it work, `make test` to check it. Everything runs from node_modules;
# run `npm ci` first on a fresh clone (the targets do it for you when node_modules is missing).
BIN := node_modules/.bin
NODE := node
# buf runs protoc-gen-es from node_modules/.bin by name.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: all install harness helia-client build gen check-gen lint typecheck test docs demo bench bench-summary bench-peers bench-many bench-rtt bench-follow bench-follow-trace bench-explorer bench-kubo bench-million bench-write bench-backup bench-browser chaos soak bench-abuse clean

all: build

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

# The js-ipfs RPC server the Kubo backend tests start: its own package, so a plain `npm ci` stays small.
test/ipfs-harness/node_modules/.package-lock.json: test/ipfs-harness/package-lock.json
	npm ci --prefix test/ipfs-harness --no-audit --no-fund
	@touch $@

harness: test/ipfs-harness/node_modules/.package-lock.json

# Helia's verified-fetch, the independent IPFS client of test/interop: its own package, since it pulls in libp2p.
test/helia-client/node_modules/.package-lock.json: test/helia-client/package-lock.json
	npm ci --prefix test/helia-client --no-audit --no-fund
	@touch $@

helia-client: test/helia-client/node_modules/.package-lock.json

# dist/ is rebuilt only when a source, a tsconfig or the lockfile is newer than the last build:
# a second `make build` (or `make demo`) with nothing changed does nothing.
# tsc compiles everything into dist/; then the CLI is bundled over dist/cli/main.js (scripts/bundle-cli.mjs),
# the browser entry into dist/browser/remotelog.js (scripts/bundle-browser.mjs), and the explorer's page
# (web/explorer/) into dist/web/explorer/ (scripts/bundle-explorer.mjs). package.json is an
# input for its "imports", which pick each platform's modules.
BUILD_SOURCES := $(shell find lib core gen stores services actors backup cli bench examples web -name '*.ts' 2>/dev/null) $(wildcard web/explorer/*.html web/explorer/*.css) tsconfig.json tsconfig.build.json package.json package-lock.json scripts/bundle-cli.mjs scripts/bundle-browser.mjs scripts/bundle-explorer.mjs

dist/.built: $(BUILD_SOURCES) node_modules/.package-lock.json
	$(NODE) $(BIN)/tsc -p tsconfig.build.json
	$(NODE) scripts/bundle-cli.mjs
	$(NODE) scripts/bundle-browser.mjs
	$(NODE) scripts/bundle-explorer.mjs
	@touch $@

build: dist/.built

gen: install
	$(BIN)/buf generate

# Fails when gen/ is not what `buf generate` makes from proto/ now.
check-gen: install
	@rm -rf .tmp/gen-check && mkdir -p .tmp/gen-check
	@$(BIN)/buf generate --output .tmp/gen-check
	@diff -r gen .tmp/gen-check/gen > /dev/null || { echo "gen/ is stale: run 'make gen' and commit it"; diff -r gen .tmp/gen-check/gen | head -20; exit 1; }
	@rm -rf .tmp/gen-check
	@echo "gen/ is up to date"

typecheck: install
	$(NODE) $(BIN)/tsc -p tsconfig.json --noEmit
	$(NODE) $(BIN)/tsc -p tsconfig.web.json

# buf breaking compares proto/ with main's; on main itself (or before main has proto/) it has nothing to compare.
lint: install check-gen typecheck
	$(BIN)/buf lint
	@if git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto 2>/dev/null; then \
		$(BIN)/buf breaking --against '.git#branch=main' && echo "buf breaking: no breaking change against main"; \
	else echo "buf breaking: no main with proto/ to compare against"; fi

# test/kubo and test/package run after everything else: the IPFS node keeps a core busy, and npm
# install writes some 450 MB; the time-bounded fuzzing (test/hostile/fuzz.test.ts) must not share the
# two cores with either. Each run writes its own report.
test: lint harness helia-client
	@mkdir -p .tmp && rm -f .tmp/vitest-report*.json
	$(BIN)/vitest run --exclude 'test/kubo/**' --exclude 'test/package/**' --reporter=default --reporter=json --outputFile.json=.tmp/vitest-report.json
	REMOTELOG_SKIP_BUILD=1 $(BIN)/vitest run test/kubo test/package --reporter=default --reporter=json --outputFile.json=.tmp/vitest-report-kubo.json

# The library's API reference (lib/index.ts and lib/browser.ts, with their TSDoc) as HTML in .tmp/docs/api, not committed.
# Fails on a warning: a type the API uses but does not export, or a doc tag TypeDoc does not know.
docs: install
	$(BIN)/typedoc
	@echo "API docs: .tmp/docs/api/index.html"

demo: build
	$(NODE) dist/cli/main.js demo

# Every bench, then issue 13's table (bench/summary.ts) from the figures each wrote to .tmp/bench/results,
# cleared first: a bench that fails is reported, the others go on, and its rows say "not run". The long
# log runs at BENCH_MILLION_SIZES (here 1000000 unless set: BENCH_MILLION_SIZES=100000 make bench for a
# shorter run, which its rows name); the Kubo rows run when the js-ipfs harness is installed (make harness)
# or KUBO_API names a node.
BENCH_MILLION_SIZES ?= 1000000
bench: build
	@rm -rf .tmp/bench/results
	-$(NODE) dist/bench/remote-log.bench.js
	-$(NODE) dist/bench/many-names.bench.js
	-$(NODE) dist/bench/follow-latency.bench.js
	-$(NODE) dist/bench/catch-up-rtt.bench.js
	-$(NODE) dist/bench/peers/hypercore.bench.js
	-@$(MAKE) --no-print-directory bench-backup
	-BENCH_MILLION_SIZES=$(BENCH_MILLION_SIZES) $(NODE) dist/bench/million.bench.js
	-@if [ -f test/ipfs-harness/node_modules/.package-lock.json ] || [ -n "$$KUBO_API" ]; then $(NODE) dist/bench/kubo.bench.js; \
		else echo "bench-kubo not run: the js-ipfs harness is not installed (make harness)"; fi
	$(NODE) dist/bench/summary.js

# Issue 13's table again from the figures of the benches run last (make bench, or any single bench-*).
bench-summary:
	$(NODE) dist/bench/summary.js

# remotelog beside hypercore (writer and reader processes over TCP) and a bare `node -e 0`, in one run.
bench-peers: build
	$(NODE) dist/bench/peers/hypercore.bench.js

# One receiver process following 1,000 names: catch-up, memory, CPU and latency of new messages.
bench-many: build
	$(NODE) dist/bench/many-names.bench.js

# Append and catch-up through the Kubo backends, on the js-ipfs harness (or a real Kubo at $$KUBO_API).
bench-kubo: build harness
	$(NODE) dist/bench/kubo.bench.js

# A long log through whole send, receive and serve processes: time and peak RSS (BENCH_MILLION_SIZES).
bench-million: build
	$(NODE) dist/bench/million.bench.js

# The write path alone, append+publish of 10,000 in one warm process, profiled with BENCH_WRITE_PROF_DIR (bench/write-profile.ts).
bench-write: build
	$(NODE) dist/bench/write-profile.js

# Backup and restore of 100,000 messages, beside restic on the same data (installed with apt-get when
# missing and we are root; otherwise its rows say "not installed").
bench-backup: build
	@command -v restic >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get install -y -qq restic >/dev/null 2>&1; } || echo "restic is not installed (apt-get install restic); its rows will say so"
	$(NODE) dist/bench/backup.bench.js

# A fresh receiver's catch-up of 100k messages through a proxy that adds 20 ms round trips.
bench-rtt: build
	$(NODE) dist/bench/catch-up-rtt.bench.js

# A signed log read and verified by a page in headless Chromium (/usr/bin/chromium), beside Node (BENCH_BROWSER_SIZES).
bench-browser: build
	$(NODE) dist/bench/browser-verify.bench.js

# Append-to-delivered latency of receive --follow, woken by pushed heads.
bench-follow: build
	$(NODE) dist/bench/follow-latency.bench.js

# One delivery of receive --follow on one clock: sender, server and receiver profiled, the median delivery in 0.5 ms bins (bench/follow-trace.ts).
bench-follow-trace: build
	$(NODE) dist/bench/follow-trace.js

# The explorer in headless Chromium: send-to-shown latency (bench/README.md).
bench-explorer: build
	$(NODE) dist/bench/explorer-latency.bench.js

# 1,000 seeded random SIGKILLs of sender, server, receiver (--out), backup and mirror (CHAOS_KILLS,
# CHAOS_SEED), and a table: kill points by target, acknowledged, lost, duplicated, reordered, longest recovery.
chaos: build
	$(NODE) dist/bench/chaos.js

# 100 senders and 100 following receivers on one server for 10 minutes (SOAK_SECONDS, SOAK_SENDERS):
# throughput, p99 latency, peak RSS and the final counts.
soak: build
	$(NODE) dist/bench/soak.js

# Honest senders and receivers while a hostile client attacks the server in five ways (issue 11).
bench-abuse: build
	$(NODE) dist/bench/abuse.bench.js

clean:
	rm -rf dist .tmp
