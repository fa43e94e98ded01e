# rds-csi: see README.md for the two commands that matter (make demo, make test).
SHELL := /bin/bash
GO        ?= go
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)

.PHONY: all build test unit lint e2e proofs fixtures bench fuzz tidy-check lab-deps demo

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/rds-csi .

## image-binary: the binary exactly as the Dockerfile builds it (same env and flags; deploy/image_test.go keeps them in step).
TARGETARCH ?= $(shell $(GO) env GOARCH)
.PHONY: image-binary
image-binary:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(TARGETARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/image/rds-csi .

## test: everything CI runs: lint, the image binary, alert rules, unit tests (race), short fuzzing, the QEMU lab on 6.1 and 6.12.
test: lint image-binary monitoring-check unit fuzz e2e

unit:
	$(GO) test -race -count=1 $(PKGS)

lint: tidy-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=darwin $(GO) vet ./fabrics/... ./sysfs/... ./daemon/... ./csi/...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

tidy-check:
	@$(GO) mod tidy
	@if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum:"; git --no-pager diff -- go.mod go.sum; exit 1; fi

## promtool: the pinned promtool (for monitoring-check), built once into a cache outside the repo.
PROMTOOL_VERSION ?= v0.316.0
TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rds-csi/bin
PROMTOOL  ?= $(TOOLS_DIR)/promtool-$(PROMTOOL_VERSION)
.PHONY: promtool monitoring-check
promtool: $(PROMTOOL)

$(PROMTOOL):
	@mkdir -p $(TOOLS_DIR)/.build
	GOBIN=$(TOOLS_DIR)/.build $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(TOOLS_DIR)/.build/promtool $@

## monitoring-check: deploy/monitoring's alert rules (promtool check and unit tests), and package metrics' tests with promtool required (exposition lint, names used by the alerts and the dashboard).
monitoring-check: promtool
	cd deploy/monitoring && $(PROMTOOL) check rules alerts.yaml && $(PROMTOOL) test rules alerts_test.yaml
	PROMTOOL=$(PROMTOOL) RDS_CSI_REQUIRE_PROMTOOL=1 $(GO) test -race -count=1 ./metrics/...

## demo: the main job: the daemon attaching a real volume in the QEMU lab through an outage.
DEMO_KERNEL ?= 6.12
demo: lab-deps
	$(GO) run ./e2e/cmd/demo -kernel $(DEMO_KERNEL)

## e2e: the real-kernel lab (QEMU, Debian 6.1 and 6.12 kernels, nvmet on loopback).
e2e: lab-deps
	RDS_CSI_E2E=1 $(GO) test -count=1 -timeout 45m -v ./e2e/ 2>&1 | tee e2e.log | grep -E '^(=== RUN|\s*--- (PASS|FAIL|SKIP)|PASS|FAIL|ok)|lab_test' ; test $${PIPESTATUS[0]} -eq 0

## proofs: only the lab's reliability and performance proofs (TestProof*, one boot per kernel);
## their result tables go to results/<series>/ (RELIABILITY.md and BENCHMARKS.md quote them).
proofs: lab-deps
	rm -rf results && mkdir -p results
	RDS_CSI_E2E=1 RDS_CSI_RESULTS_DIR=$(CURDIR)/results $(GO) test -count=1 -timeout 45m -v -run 'TestLab/.*/proof' ./e2e/ 2>&1 | tee proofs.log | grep -E '^(=== RUN|\s*--- (PASS|FAIL|SKIP)|PASS|FAIL|ok)|lab_test' ; test $${PIPESTATUS[0]} -eq 0

lab-deps:
	@command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null && command -v depmod >/dev/null && command -v cpio >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static kmod cpio xz-utils zstd file)

## fixtures: re-capture testdata/sysfs and daemon/testdata/kmsg/captured-* from the real kernels in the lab.
fixtures: lab-deps
	rm -rf testdata/sysfs.new && mkdir -p testdata/sysfs.new
	RDS_CSI_E2E=1 RDS_CSI_CAPTURE_DIR=$(CURDIR)/testdata/sysfs.new $(GO) test -count=1 -run TestLab ./e2e/
	rm -rf testdata/sysfs && mv testdata/sysfs.new testdata/sysfs

## fuzz: each fuzz target for a short fixed budget.
FUZZTIME ?= 5s
FUZZ_PKGS ?= ./fabrics ./sysfs ./csi ./daemon
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./fabrics ./sysfs
	$(GO) test -run '^$$' -bench 'IdlePoll1000|Resync1000|RegistryMemory|AttachOverhead' -benchtime 20x ./daemon
	$(GO) test -run '^$$' -bench 'IdleDaemon1000' -benchtime 1x ./daemon
