# matrixctl — see README.md. Targets are a thin index; the work is in Go.
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Static binaries: the guest agent runs as init inside VMs, the probe runs FROM scratch.
STATIC := CGO_ENABLED=0

.PHONY: all build box test test-short test-faults soak bench fuzz lint vet fmt layout tidy clean

all: build

# matrixctl finds the guest agent and the probe binary beside itself in bin/.
build:
	$(STATIC) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/matrixctl ./cmd/matrixctl
	$(STATIC) $(GO) build -trimpath -o bin/matrixctl-agent ./runner/agent
	$(STATIC) $(GO) build -trimpath -o bin/matrixctl-probe ./probes/cmd/matrixctl-probe

# The project's own Vagrant boxes (as root): one per runnable cell of BOX_SPEC
# whose kernel names a project-built box in vagrant/boxes.yaml; -add registers them.
BOX_SPEC ?= vagrant/box-matrix.yaml
box:
	$(GO) run ./vagrant/cmd/matrixctl-box -f $(BOX_SPEC) -add

# The full suite: unit tests plus the integration tests against real QEMU
# VMs, real Debian kernels and a real dockerd (run as root; see .ci/run).
# A test whose capability is missing skips, unless MATRIXCTL_REQUIRE names
# it (CI sets all): then it fails, naming what is missing.
test: lint
	$(GO) test -count=1 -timeout 60m ./...

# The fault-injection suite alone (also part of make test): real faults in
# real guests, a table fault → expected → got → evidence, then the clean soak
# of the example matrix (every runnable cell of matrix.yaml once, the
# false-positive check) and its table; fails on any mismatch.
test-faults:
	$(GO) test -count=1 -timeout 60m -v -run 'TestIntegrationFaults$$|TestIntegrationSoakExample$$' ./runner/faults

# The long clean soak, by hand: the example's own probes (io, net, churn), VM
# and soak duration, every runnable cell twice (an hour or more on a 2-core
# host without KVM, estimated from the phase times). make test runs a shorter
# one. Knobs: SOAK_REPEATS, SOAK_DURATION (a Go duration or spec),
# SOAK_PROBES (io,churn or spec), SOAK_VM (spec or empty for 1 vCPU / 1 GiB),
# SOAK_OUT (keep the results there for matrixctl report).
SOAK_REPEATS ?= 2
SOAK_DURATION ?= spec
SOAK_PROBES ?= spec
SOAK_VM ?= spec
soak:
	MATRIXCTL_SOAK_REPEATS=$(SOAK_REPEATS) MATRIXCTL_SOAK_DURATION=$(SOAK_DURATION) \
	MATRIXCTL_SOAK_PROBES=$(SOAK_PROBES) MATRIXCTL_SOAK_VM=$(SOAK_VM) MATRIXCTL_SOAK_OUT=$(SOAK_OUT) \
	$(GO) test -count=1 -timeout 240m -v -run 'TestIntegrationSoakExample$$' ./runner/faults

# Unit tests only: no VMs, no daemon.
test-short:
	$(GO) test -short -count=1 ./...

# Figures the project tracks. Pure-Go benchmarks run 3 times; the ones that
# boot real VMs (boot vs a hand-written qemu -kernel, --parallel scaling) once.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./runner/console ./internal/images ./probes/... ./reports/... ./internal/adaptive
	$(GO) test -run '^$$' -bench 'RunnerOverhead' -benchtime 3x ./runner
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./runner/qemu

lint: vet fmt layout tidy

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The import boundaries of README's layout table (also part of every test run).
layout:
	$(GO) test -count=1 ./internal/layout

# go.mod and go.sum as go mod tidy leaves them: a directly imported module is
# not marked indirect, and nothing is missing or unused (prints the diff).
tidy:
	$(GO) mod tidy -diff

clean:
	rm -rf bin
