//! RayJobs end to end on a REAL Ray head: `kuberay sim serve --ray-dashboard URL` (every head's dashboard, and the
//! `services/proxy` path to it, is the real head; K8sJobMode submitters run the real `ray` CLI as local processes)
//! and `kuberay run --use-kubernetes-proxy` as separate processes, as a user would run them. The head comes from
//! `scripts/ray-head.sh` (`make test`), which sets `KUBERAY_TEST_RAY_DASHBOARD` and `KUBERAY_TEST_RAY_BIN`.
//!
//! Every test names its RayJob uniquely: the head is shared by all the tests of a run, and by earlier runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use kuberay::api::RayJob;
use kuberay::api::rayjob::JobDeploymentStatus;
use kuberay::ray::{DashboardClient, HttpTransport};
use serde_json::json;

const NS: &str = "default";
/// How long a RayJob may take on a busy 2-core machine: Pods, the head's job start (2-4 s), a few `ray` CLI runs
/// (about 2 s each to import Ray).
const LIMIT: Duration = Duration::from_secs(120);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need a real Ray head. Run them through `make test`, or \
             `scripts/ray-head.sh cargo test --test ray_head_rayjob`, which starts one and sets it."
        )
    })
}

fn dashboard() -> DashboardClient {
    let client = reqwest::Client::builder().build().unwrap();
    DashboardClient::new(HttpTransport::with_client(
        client,
        &env("KUBERAY_TEST_RAY_DASHBOARD"),
        Duration::from_secs(30),
    ))
}

/// A RayJob name no other test, and no earlier run against the same head, uses (its submission id starts with it).
fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{name}-{}-{}", std::process::id() % 10_000, nanos % 100_000)
}

async fn until<T, F: Future<Output = Option<T>>>(what: &str, probe: impl FnMut() -> F) -> T {
    common::until(what, LIMIT, probe).await
}

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kuberay sim serve` with the real head as every dashboard, and a directory for the kubeconfig and journals.
struct Cluster {
    dir: PathBuf,
    _serve: Process,
    client: kube::Client,
}

impl Cluster {
    async fn start(test: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("kuberay-ray-head-rayjob-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let path = format!("{}:{}", env("KUBERAY_TEST_RAY_BIN"), std::env::var("PATH").unwrap_or_default());
        let serve = Command::new(env!("CARGO_BIN_EXE_kuberay"))
            .args(["sim", "serve", "--port", "0", "--ray-dashboard", &env("KUBERAY_TEST_RAY_DASHBOARD")])
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .env("PATH", path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let serve = Process(serve);
        let config =
            until("the kubeconfig is written", || async { kube::config::Kubeconfig::read_from(&kubeconfig).ok() })
                .await;
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        kuberay::cli::apply::Applier::new(client.clone()).crds().await.unwrap();
        Cluster { dir, _serve: serve, client }
    }

    fn journal(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// `kuberay run` on this cluster, reaching dashboards through the API server's `services/proxy`.
    fn operator(&self) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_kuberay"))
            .args(["run", "--use-kubernetes-proxy", "--metrics-addr", "127.0.0.1:0", "--log-level", "warn"])
            .arg("--journal")
            .arg(self.journal())
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Process(child)
    }

    async fn create(&self, name: &str, mode: &str, entrypoint: &str) {
        let cluster_spec = json!({
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [
                {"name": "ray-head", "image": "rayproject/ray:2.60.0", "ports": [{"containerPort": 8265, "name": "dashboard"}]}
            ]}}},
        });
        let job = common::rayjob(name, mode, entrypoint, cluster_spec);
        Api::<RayJob>::namespaced(self.client.clone(), NS).create(&PostParams::default(), &job).await.unwrap();
    }

    async fn until_finished(&self, name: &str) -> RayJob {
        let api = Api::<RayJob>::namespaced(self.client.clone(), NS);
        until(&format!("RayJob {name} finishes"), || async {
            let job = api.get(name).await.ok()?;
            let state = job.status.as_ref()?.job_deployment_status?;
            matches!(state, JobDeploymentStatus::Complete | JobDeploymentStatus::Failed).then_some(job)
        })
        .await
    }

    /// What the Pods of submitter Job `name` wrote.
    async fn submitter_output(&self, name: &str) -> String {
        let pods = Api::<Pod>::namespaced(self.client.clone(), NS);
        let mut output = String::new();
        for pod in pods.list(&ListParams::default().labels(&format!("job-name={name}"))).await.unwrap() {
            output += &pods.logs(&pod.metadata.name.unwrap(), &LogParams::default()).await.unwrap();
        }
        output
    }

    /// Stops the operator as SIGTERM does (it commits its journal), then replays the journal.
    fn assert_replays(&self, operator: Process) {
        stop(operator);
        let replayed = self.journal_command(&["replay"]);
        assert!(replayed.ends_with(" 0 divergences\n"), "{replayed}");
    }

    /// `kuberay journal ARGS --journal DIR`'s output; it must succeed.
    fn journal_command(&self, args: &[&str]) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kuberay"));
        let output = command.arg("journal").args(args).arg("--journal").arg(self.journal()).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }
}

/// SIGTERM, as a graceful stop: the operator finishes its steps and commits its journal.
fn stop(mut operator: Process) {
    let pid = operator.0.id().to_string();
    // bash's builtin: no procps needed.
    assert!(Command::new("bash").args(["-c", &format!("kill -TERM {pid}")]).status().unwrap().success());
    operator.0.wait().unwrap();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn status_of(job: &RayJob) -> (Option<JobDeploymentStatus>, String, String) {
    let status = job.status.clone().unwrap_or_default();
    let job_status = status.job_status.map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string());
    (
        status.job_deployment_status,
        job_status.unwrap_or_default(),
        status.reason.map(|r| r.to_string()).unwrap_or_default(),
    )
}

/// The jobs the head holds with this submission id.
async fn submissions_of(id: &str) -> usize {
    dashboard().list_jobs().await.unwrap().iter().filter(|job| job.submission_id.as_deref() == Some(id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_mode_rayjob_completes_on_a_real_head() {
    let cluster = Cluster::start("http").await;
    let operator = cluster.operator();
    let name = unique("http");
    let entrypoint = "python -c \"import time; print('hello from a real head', flush=True); time.sleep(2)\"";
    cluster.create(&name, "HTTPMode", entrypoint).await;
    let job = cluster.until_finished(&name).await;
    assert_eq!(status_of(&job), (Some(JobDeploymentStatus::Complete), "SUCCEEDED".into(), String::new()));
    let id = job.status.unwrap().job_id.unwrap();
    assert!(id.starts_with(&name), "{id}");
    assert_eq!(submissions_of(&id).await, 1);
    let logs = dashboard().job_logs(&id).await.unwrap();
    assert!(logs.contains("hello from a real head"), "{logs}");
    // The operator tailed the job through the API server's proxy and journaled its output; the head closes the tail
    // about 3 s after the end, and the operator drains it before letting go.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.assert_replays(operator);
    let audit = cluster.journal_command(&["audit", &format!("rayjob/{NS}/{name}"), "--logs"]);
    assert!(audit.contains(&format!("  {id} | hello from a real head")), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k8s_job_mode_rayjob_completes_on_a_real_head_through_the_real_cli() {
    let cluster = Cluster::start("k8sjob").await;
    let operator = cluster.operator();
    let name = unique("k8sjob");
    cluster.create(&name, "K8sJobMode", "python -c \"print('hello from a real head')\"").await;
    let job = cluster.until_finished(&name).await;
    assert_eq!(status_of(&job), (Some(JobDeploymentStatus::Complete), "SUCCEEDED".into(), String::new()));
    let id = job.status.unwrap().job_id.unwrap();
    assert_eq!(submissions_of(&id).await, 1);
    // The submitter Pod printed what the real CLI printed: the submission, the job's output, its end.
    let output = cluster.submitter_output(&name).await;
    for line in
        [format!("Job '{id}' submitted successfully"), "hello from a real head".into(), format!("Job '{id}' succeeded")]
    {
        assert!(output.contains(&line), "{line:?} is not in the submitter's output:\n{output}");
    }
    cluster.assert_replays(operator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_entrypoint_ends_failed_with_app_failed_on_a_real_head() {
    let cluster = Cluster::start("failing").await;
    let operator = cluster.operator();
    let name = unique("failing");
    cluster.create(&name, "HTTPMode", "python -c \"import sys; sys.exit(3)\"").await;
    let job = cluster.until_finished(&name).await;
    let (state, job_status, reason) = status_of(&job);
    assert_eq!(
        (state, job_status.as_str(), reason.as_str()),
        (Some(JobDeploymentStatus::Failed), "FAILED", "AppFailed")
    );
    let message = job.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("exit code 3") || message.contains("exited with code 3"), "{message}");
    cluster.assert_replays(operator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_right_after_it_submits_makes_one_job_that_completes() {
    let cluster = Cluster::start("killed").await;
    let mut operator = cluster.operator();
    let name = unique("killed");
    cluster.create(&name, "HTTPMode", "python -c \"import time; time.sleep(5); print('survived')\"").await;
    // SIGKILL as soon as the head knows the submission: no graceful shutdown, whatever was in flight is lost.
    let id = until("the operator submits", || async {
        let jobs = dashboard().list_jobs().await.ok()?;
        jobs.into_iter().filter_map(|job| job.submission_id).find(|id| id.starts_with(&name))
    })
    .await;
    operator.0.kill().unwrap();
    operator.0.wait().unwrap();
    let restarted = cluster.operator();
    let job = cluster.until_finished(&name).await;
    assert_eq!(status_of(&job), (Some(JobDeploymentStatus::Complete), "SUCCEEDED".into(), String::new()));
    assert_eq!(job.status.unwrap().job_id, Some(id.clone()));
    assert_eq!(submissions_of(&id).await, 1, "the head holds exactly one job with that submission id");
    let submitted = dashboard().list_jobs().await.unwrap();
    let of_this_rayjob =
        submitted.iter().filter(|job| job.submission_id.as_deref().is_some_and(|s| s.starts_with(&name)));
    assert_eq!(of_this_rayjob.count(), 1, "and no other submission for this RayJob");
    cluster.assert_replays(restarted);
}
