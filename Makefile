# kuberay: the two set-up commands are `make run` and `make test`.
SAMPLES := ../shared/kuberay-v1.3.0/samples
CARGO ?= cargo

.PHONY: build test run crds lint bench

build:
	$(CARGO) build --release

# Everything CI runs.
test: lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Until the runtime lands: validate every KubeRay sample and render what the operator would create for them.
run: build
	./target/release/kuberay validate -f $$(find $(SAMPLES) -name '*.yaml' | sort)
	./target/release/kuberay render -f $(SAMPLES)/ray-cluster.sample.yaml $(SAMPLES)/ray-job.sample.yaml $(SAMPLES)/ray-service.sample.yaml > rendered.yaml
	@echo "rendered $$(grep -c '^kind:' rendered.yaml) objects into rendered.yaml"

# Regenerates deploy/crds/ from the types (a test fails while they are stale).
crds:
	$(CARGO) run --quiet -- crd --output-dir deploy/crds

# Benchmarks: the journal's figures next to raw sled's (append, replay, bytes per transition, one machine step),
# the crash test at length, and the simulated cluster at scale (creates/s and watch fan-out with 10,000 Pods,
# memory per 1,000 Pods).
bench:
	$(CARGO) bench --bench journal
	JOURNAL_CRASH_ROUNDS=1000 $(CARGO) test --lib journal::crash_tests -- --nocapture
	$(CARGO) bench --bench sim
