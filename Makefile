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
test: lint image-binary monitoring-check unit fuzz e2e k8s-if-cached

unit:
	$(GO) test -race -count=1 $(PKGS)

lint: tidy-check staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=darwin $(GO) vet ./fabrics/... ./sysfs/... ./daemon/... ./csi/... ./internal/... ./routeros/...
	$(STATICCHECK) $(PKGS)

## tidy-check: fails when `go mod tidy` would change go.mod or go.sum, without changing them (it prints the diff).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go mod tidy would change go.mod/go.sum (above); run go mod tidy"; exit 1; }

## Lint and monitoring tools: pinned versions, each built once into a cache outside the repo.
TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rds-csi/bin

## staticcheck: the pinned staticcheck (for lint).
STATICCHECK_VERSION ?= v0.8.2
# staticcheck reads code with the go/types it was built with: one binary per Go version.
STATICCHECK ?= $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)-$(shell $(GO) env GOVERSION)
.PHONY: staticcheck
staticcheck: $(STATICCHECK)

$(STATICCHECK):
	@mkdir -p $(TOOLS_DIR)
	@# A build directory of its own, so that builds in other checkouts do not collide.
	tmp=$$(mktemp -d $(TOOLS_DIR)/.build.XXXXXX) && GOBIN=$$tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) && mv $$tmp/staticcheck $@ && rmdir $$tmp

## promtool: the pinned promtool (for monitoring-check).
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL  ?= $(TOOLS_DIR)/promtool-$(PROMTOOL_VERSION)
.PHONY: promtool monitoring-check
promtool: $(PROMTOOL)

$(PROMTOOL):
	@mkdir -p $(TOOLS_DIR)
	@# A build directory of its own, so that builds in other checkouts do not collide.
	tmp=$$(mktemp -d $(TOOLS_DIR)/.build.XXXXXX) && GOBIN=$$tmp $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) && mv $$tmp/promtool $@ && rmdir $$tmp

## monitoring-check: deploy/monitoring's alert rules (promtool check and unit tests), and package metrics' tests with promtool required (exposition lint, names used by the alerts and the dashboard).
monitoring-check: promtool
	cd deploy/monitoring && $(PROMTOOL) check rules alerts.yaml && $(PROMTOOL) test rules alerts_test.yaml
	PROMTOOL=$(PROMTOOL) RDS_CSI_REQUIRE_PROMTOOL=1 $(GO) test -race -count=1 ./metrics/...

## demo: the main job: the controller provisions a volume on the nvmet-backed RDS emulator, and the daemon attaches it in the QEMU lab through an outage.
DEMO_KERNEL ?= 6.12
demo: lab-deps
	$(GO) run ./e2e/cmd/demo -kernel $(DEMO_KERNEL)

## e2e: the real-kernel lab (QEMU, Debian 6.1 and 6.12 kernels, nvmet on loopback).
## The whole -v output goes to e2e.log, a summary to the terminal; when the lab fails, the failed
## guest tests' output (cut to its last lines) and their own messages are printed last, after it.
LAB_SUMMARY  := '^(=== RUN|\s*--- (PASS|FAIL|SKIP)|PASS|FAIL|ok)|lab_test'
LAB_FAILURES := $(GO) run ./e2e/cmd/labfailures
## E2E_RUN narrows the host tests (e.g. 'TestLab/6.12/multipath$'), RDS_CSI_LAB_RUN the guest tests.
E2E_RUN ?= .

e2e: lab-deps
	RDS_CSI_E2E=1 $(GO) test -count=1 -timeout 60m -v -run '$(value E2E_RUN)' ./e2e/ 2>&1 | tee e2e.log | grep -E $(LAB_SUMMARY) ; rc=$${PIPESTATUS[0]}; \
		if [ $$rc -ne 0 ]; then $(LAB_FAILURES) e2e.log; fi; exit $$rc

## proofs: only the lab's reliability and performance proofs (TestProof*, one boot per kernel);
## their result tables go to results/<series>/ (RELIABILITY.md and BENCHMARKS.md quote them).
proofs: lab-deps
	rm -rf results && mkdir -p results
	RDS_CSI_E2E=1 RDS_CSI_RESULTS_DIR=$(CURDIR)/results $(GO) test -count=1 -timeout 60m -v -run 'TestLab/.*/proof' ./e2e/ 2>&1 | tee proofs.log | grep -E $(LAB_SUMMARY) ; rc=$${PIPESTATUS[0]}; \
		if [ $$rc -ne 0 ]; then $(LAB_FAILURES) proofs.log; fi; exit $$rc

lab-deps:
	@command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null && command -v depmod >/dev/null && command -v cpio >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static kmod cpio xz-utils zstd file)

## k8s-deps: the Kubernetes binaries of the lab's Kubernetes node (kubelet, kube-apiserver,
## kube-controller-manager, kube-scheduler $(K8S_VERSION)), built once from the Go module proxy
## under nice -n 19 into the lab cache beside the kernels, keyed on version and architecture
## (e2e/lab/k8s-bins.sh; the cold build's time is in BENCHMARKS.md), and the sidecars
## csi-attacher, csi-provisioner and csi-resizer (e2e/lab/k8s-sidecar.sh, the same way).
## make test runs the Kubernetes lab only when all of them are cached.
K8S_VERSION ?= v1.37.2
# e2e/k8slab's AttacherVersion, ProvisionerVersion and ResizerVersion, and its sidecars'
# modules (e2e/k8slab/makefile_test.go keeps them equal).
K8S_ATTACHER_VERSION := v4.13.0
K8S_PROVISIONER_VERSION := v6.3.0
K8S_RESIZER_VERSION := v2.3.0
.PHONY: k8s-deps
k8s-deps:
	GO=$(GO) bash e2e/lab/k8s-bins.sh $(K8S_VERSION)
	GO=$(GO) bash e2e/lab/k8s-sidecar.sh csi-attacher github.com/kubernetes-csi/external-attacher/v4 $(K8S_ATTACHER_VERSION)
	GO=$(GO) bash e2e/lab/k8s-sidecar.sh csi-provisioner github.com/kubernetes-csi/external-provisioner/v6 $(K8S_PROVISIONER_VERSION)
	GO=$(GO) bash e2e/lab/k8s-sidecar.sh csi-resizer github.com/kubernetes-csi/external-resizer/v2 $(K8S_RESIZER_VERSION)

## k8s: the Kubernetes lab (e2e/k8slab): the control plane on the host (etcd, kube-apiserver,
## kube-controller-manager, kube-scheduler), one node in the QEMU lab (containerd, kubelet, the
## node agent with the RDS emulator on nvmet), the driver deployed from deploy/ through the lab's
## overlay, and the scenarios. Builds or reuses the cached Kubernetes binaries (k8s-deps) and the
## cached plugin image root. K8S_KERNEL picks the node's kernel series. make test runs it when
## the Kubernetes binaries and the sidecars are cached (k8s-if-cached).
K8S_KERNEL ?= 6.12
.PHONY: k8s k8s-host-deps
k8s: lab-deps k8s-host-deps
	RDS_CSI_K8S=1 RDS_CSI_K8S_KERNEL=$(K8S_KERNEL) RDS_CSI_K8S_VERSION=$(K8S_VERSION) $(GO) test -count=1 -timeout 80m -v -run '^TestKubernetes$$' ./e2e/k8slab/ 2>&1 | tee k8s.log | grep -E $(K8S_SUMMARY); rc=$${PIPESTATUS[0]}; \
		if [ $$rc -ne 0 ]; then echo "--- the Kubernetes lab failed; the last 150 lines of k8s.log:"; tail -150 k8s.log; fi; exit $$rc
K8S_SUMMARY := '^(=== RUN|\s*--- (PASS|FAIL|SKIP)|PASS|FAIL|ok)|k8s_test.go'

## k8s-if-cached (the last step of make test): make k8s when the Kubernetes binaries and the
## sidecars are already in the lab cache (make k8s-deps builds them); otherwise it says so and
## runs nothing, because their cold build (BENCHMARKS.md) would take most of CI's time.
LAB_CACHE := $(or $(RDS_CSI_LAB_CACHE),/var/cache/rds-csi-lab)
K8S_ARCH := $(shell $(GO) env GOARCH)
K8S_CACHED := $(LAB_CACHE)/kubernetes-$(K8S_VERSION)-$(K8S_ARCH)/ready \
	$(LAB_CACHE)/csi-attacher-$(K8S_ATTACHER_VERSION)-$(K8S_ARCH)/ready \
	$(LAB_CACHE)/csi-provisioner-$(K8S_PROVISIONER_VERSION)-$(K8S_ARCH)/ready \
	$(LAB_CACHE)/csi-resizer-$(K8S_RESIZER_VERSION)-$(K8S_ARCH)/ready
.PHONY: k8s-if-cached
k8s-if-cached:
	@if ls $(K8S_CACHED) >/dev/null 2>&1; then $(MAKE) --no-print-directory k8s; else \
		echo "make test: the Kubernetes lab (make k8s) NOT RUN: the Kubernetes $(K8S_VERSION) binaries or csi-attacher $(K8S_ATTACHER_VERSION), csi-provisioner $(K8S_PROVISIONER_VERSION) or csi-resizer $(K8S_RESIZER_VERSION) are not in $(LAB_CACHE); make k8s-deps builds them"; fi

## k8s-host-deps: Debian's etcd (the control plane's store), containerd, runc and CNI plugins (run
## on the node, whose root is an overlay of the host's), socat (QEMU's forward to the apiserver),
## debootstrap (the plugin image's root).
k8s-host-deps:
	@command -v etcd >/dev/null && command -v containerd >/dev/null && command -v runc >/dev/null && [ -x /usr/lib/cni/bridge ] && command -v socat >/dev/null && command -v debootstrap >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server containerd runc containernetworking-plugins socat debootstrap)
	@# Debian starts the services it installs; the lab runs its own, the host's must not run.
	@systemctl disable --now containerd etcd >/dev/null 2>&1 || true

## fixtures: re-capture testdata/sysfs, testdata/sysfs-halfborn (a controller before its first connect) and internal/kmsg/testdata/captured-* from the real kernels in the lab.
fixtures: lab-deps
	rm -rf testdata/sysfs.new && mkdir -p testdata/sysfs.new
	RDS_CSI_E2E=1 RDS_CSI_CAPTURE_DIR=$(CURDIR)/testdata/sysfs.new $(GO) test -count=1 -run TestLab ./e2e/
	rm -rf testdata/sysfs && mv testdata/sysfs.new testdata/sysfs

## fuzz: each fuzz target for a short fixed budget (.ci/fuzz-one: Go 1.26's end-of-budget race is not a failure).
FUZZTIME ?= 5s
FUZZ_PKGS ?= ./fabrics ./sysfs ./csi ./daemon ./internal/kmsg ./internal/mountinfo ./routeros
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; GO=$(GO) .ci/fuzz-one $$pkg $$f $(FUZZTIME); \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./fabrics ./sysfs
	$(GO) test -run '^$$' -bench 'IdlePoll1000|Resync1000|RegistryMemory|AttachOverhead' -benchtime 20x ./daemon
	$(GO) test -run '^$$' -bench 'IdleDaemon1000' -benchtime 1x ./daemon
