# kuberay: the two set-up commands are `make run` and `make test`.
SAMPLES := ../shared/kuberay-v1.3.0/samples
CARGO ?= cargo

.PHONY: build test run crds lint bench

build:
	$(CARGO) build --release

# Everything CI runs. The tests run next to a real Ray head (scripts/ray-head.sh: Ray in a cached venv, installed
# on first use); it starts after the build so that it does not compete with the compiler.
test: lint
	$(CARGO) test --all-targets --no-run
	scripts/ray-head.sh $(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The operator on the embedded simulated cluster: every KubeRay sample with a RayCluster or a RayJob, each file in a
# namespace of its own (with the cluster that ray-job.use-existing-raycluster.yaml selects), until each cluster is
# provisioned and each RayJob complete (in simulated time); then the audit trails of one cluster and one RayJob, and
# a replay of the whole journal (./journal).
RAY_SAMPLES = $$(grep -rlE '^kind: (RayCluster|RayJob)$$' $(SAMPLES) | sort)
run: build
	rm -rf journal
	./target/release/kuberay sim run --until-settled --namespace-per-file --reconcile-concurrency 8 --log-level warn \
		--journal journal --apply deploy/sample-companions/*.yaml $(RAY_SAMPLES)
	./target/release/kuberay journal audit raycluster/ray-cluster-sample/raycluster-kuberay --journal journal
	./target/release/kuberay journal audit rayjob/ray-job-sample/rayjob-sample --journal journal
	./target/release/kuberay journal replay --journal journal

# Regenerates deploy/crds/ from the types (a test fails while they are stale).
crds:
	$(CARGO) run --quiet -- crd --output-dir deploy/crds

# Benchmarks: the journal's figures next to raw sled's (append, replay, bytes per transition, one machine step),
# the crash test at length, and the simulated cluster at scale (creates/s and watch fan-out with 10,000 Pods,
# memory per 1,000 Pods), and the operator with 1,000 RayClusters (time to provisioned, peak RSS, transitions/s;
# `kuberay sim serve` and `kuberay run` as separate processes).
bench:
	$(CARGO) bench --bench journal
	JOURNAL_CRASH_ROUNDS=1000 $(CARGO) test --lib journal::crash_tests -- --nocapture
	$(CARGO) bench --bench sim
	$(CARGO) bench --bench operator
