//! `kuberay sim run` as a user runs it: every KubeRay sample with a RayCluster reaches `RayClusterProvisioned=True`,
//! every RayJob sample reaches Complete (its submitter Job played against the simulated dashboard), each transition
//! is printed as it happens, and the journal it leaves replays with no divergence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn kuberay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuberay")).args(args).output().expect("kuberay runs")
}

fn journal_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuberay-sim-run-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn every_raycluster_sample_is_provisioned_and_its_journal_replays() {
    let journal = journal_dir("samples");
    let samples = samples_of("RayCluster");
    assert!(samples.len() >= 25, "the RayCluster samples are found: {samples:?}");
    let mut args = vec!["sim", "run", "--until-settled", "--namespace-per-file", "--timeout", "600"];
    args.extend(["--reconcile-concurrency", "8", "--log-level", "warn", "--journal", journal.to_str().unwrap()]);
    args.push("--apply");
    args.extend(samples.iter().map(|path| path.to_str().unwrap()));
    let output = kuberay(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let summaries: Vec<&str> = stdout.lines().filter(|line| line.starts_with("raycluster/")).collect();
    assert_eq!(summaries.len(), samples.len(), "one summary per sample (each has one RayCluster): {stdout}");
    for summary in &summaries {
        assert!(summary.contains(" Provisioned ") && summary.contains("RayClusterProvisioned=True"), "{summary}");
    }
    let sample = "raycluster/ray-cluster-sample/raycluster-kuberay";
    let transitions: Vec<&str> = stdout.lines().filter(|line| line.contains(&format!(" {sample} "))).collect();
    let changes: Vec<String> =
        transitions.iter().map(|line| line.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        changes,
        [
            "New -> Provisioning RayClusterPodsProvisioning",
            "Provisioning -> Provisioned AllPodRunningAndReadyFirstTime"
        ]
    );

    let replay = kuberay(&["journal", "replay", "--journal", journal.to_str().unwrap()]);
    let replayed = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(0), "{replayed}");
    assert!(replayed.ends_with(&format!("{} objects, 0 divergences\n", samples.len())), "{replayed}");
    let _ = std::fs::remove_dir_all(&journal);
}

fn samples_of(kind: &str) -> Vec<PathBuf> {
    let line = format!("kind: {kind}");
    let samples: Vec<PathBuf> = common::kuberay_samples()
        .into_iter()
        .filter(|path| std::fs::read_to_string(path).unwrap().lines().any(|l| l == line))
        .collect();
    assert!(!samples.is_empty(), "the {kind} samples are found");
    samples
}

#[test]
fn every_rayjob_sample_completes_and_its_journal_replays() {
    let journal = journal_dir("rayjobs");
    let samples = samples_of("RayJob");
    // The cluster that `ray-job.use-existing-raycluster.yaml` selects, which no sample defines.
    let companion =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/sample-companions/ray-job.use-existing-raycluster.yaml");
    let mut args = vec!["sim", "run", "--until-settled", "--namespace-per-file", "--timeout", "600"];
    args.extend(["--reconcile-concurrency", "8", "--log-level", "warn", "--journal", journal.to_str().unwrap()]);
    args.extend(["--apply", companion.to_str().unwrap()]);
    args.extend(samples.iter().map(|path| path.to_str().unwrap()));
    let output = kuberay(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let summaries: Vec<&str> = stdout.lines().filter(|line| line.starts_with("rayjob/")).collect();
    assert_eq!(summaries.len(), samples.len(), "one summary per sample (each has one RayJob): {stdout}");
    for summary in &summaries {
        assert!(summary.ends_with(" Complete jobStatus=SUCCEEDED"), "{summary}");
    }
    let sample = "rayjob/ray-job-sample/rayjob-sample";
    let changes: Vec<String> = stdout
        .lines()
        .filter(|line| line.contains(&format!(" {sample} ")))
        .map(|line| line.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        changes,
        ["New -> Initializing Initialized", "Initializing -> Running ClusterReady", "Running -> Complete JobFinished"]
    );

    let replay = kuberay(&["journal", "replay", "--journal", journal.to_str().unwrap()]);
    let replayed = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(0), "{replayed}");
    assert!(replayed.ends_with(" objects, 0 divergences\n"), "{replayed}");
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn a_cluster_that_cannot_settle_times_out_naming_it() {
    let journal = journal_dir("timeout");
    let dir = journal_dir("timeout-manifest");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("suspended-never.yaml");
    // An invalid cluster never settles: it is reported pending, in its state, when the wall-clock timeout ends.
    std::fs::write(
        &manifest,
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: broken}\nspec:\n  headGroupSpec:\n    \
         rayStartParams: {}\n    template: {spec: {containers: []}}\n",
    )
    .unwrap();
    let output = kuberay(&[
        "sim",
        "run",
        "--until-settled",
        "--timeout",
        "20",
        "--log-level",
        "warn",
        "--journal",
        journal.to_str().unwrap(),
        "--apply",
        manifest.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("still pending: raycluster/default/broken (Invalid)"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("raycluster/default/broken New -> Invalid InvalidRayClusterSpec"), "{stdout}");
    let _ = std::fs::remove_dir_all(&journal);
    let _ = std::fs::remove_dir_all(&dir);
}
