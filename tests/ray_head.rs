//! The dashboard client against a REAL Ray head, over HTTP and the log-tail websocket. The head's dashboard URL comes
//! from `KUBERAY_TEST_RAY_DASHBOARD`, which `scripts/ray-head.sh` sets (`make test` runs every test through it).
//! Jobs take seconds on a real head (PENDING 2-4 s, the tail's frames once a second, its close 3 s after the end),
//! hence the generous waits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kuberay::ray::{
    ApplicationStatus, DashboardClient, DeploymentStatus, HttpTransport, JobInfo, JobStatus, RayError, Resolver,
    SubmitRequest,
};
use serde_json::json;

use common::until;

const ENV: &str = "KUBERAY_TEST_RAY_DASHBOARD";

fn url() -> String {
    std::env::var(ENV).unwrap_or_else(|_| {
        panic!(
            "{ENV} is not set: these tests need a real Ray head. Run them through `make test`, or \
             `scripts/ray-head.sh cargo test --test ray_head`, which starts one and sets {ENV}."
        )
    })
}

/// A client with room for a busy machine: a first submission takes over a second, a first serve deploy about 5 s.
fn dashboard() -> DashboardClient {
    let client = reqwest::Client::builder().build().unwrap();
    DashboardClient::new(HttpTransport::with_client(client, &url(), Duration::from_secs(60)))
}

/// A submission id no other test, and no earlier run against the same head, uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn submission(entrypoint: &str, id: &str) -> SubmitRequest {
    SubmitRequest { entrypoint: entrypoint.into(), submission_id: Some(id.into()), ..SubmitRequest::default() }
}

/// The job's own lines in a log: Ray's lines (stderr) interleave with them anywhere.
fn printed_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.starts_with("line ")).collect()
}

async fn job_reaches(client: &DashboardClient, id: &str, wanted: JobStatus) -> JobInfo {
    until(&format!("job {id} {wanted:?}"), Duration::from_secs(90), || async {
        let job = client.job_info(id).await.unwrap();
        (job.status == wanted).then_some(job)
    })
    .await
}

#[tokio::test]
async fn the_head_answers_its_version_with_kuberays_default_client() {
    let client = DashboardClient::http(&url(), &Resolver::Identity).unwrap();
    let version = client.version().await.unwrap();
    assert_eq!((version.version.as_str(), version.ray_version.as_str()), ("4", "2.60.0"));
}

#[tokio::test]
async fn a_job_is_tailed_until_it_ends_and_a_duplicate_submission_already_exists() {
    let client = dashboard();
    let id = unique("job-tail");
    let entrypoint = r#"python -c "import time; [print('line', i, flush=True) or time.sleep(0.5) for i in range(6)]""#;
    let mut request = submission(entrypoint, &id);
    request.metadata = Some([("k".to_string(), "v".to_string())].into());
    assert_eq!(client.submit_job(&request).await.unwrap(), id);
    assert_eq!(
        client.submit_job(&submission("echo again", &id)).await.unwrap_err(),
        RayError::AlreadyExists { submission_id: id.clone() }
    );

    let tail = client.tail_job_logs(&id).await.unwrap();
    let frames: Vec<String> =
        tokio::time::timeout(Duration::from_secs(90), tail.map(|frame| frame.unwrap()).collect()).await.unwrap();
    let text = frames.concat();
    assert!(!frames.is_empty(), "no frame before the close");
    assert!(text.contains(&format!("Running entrypoint for job {id}: {entrypoint}\n")), "{text}");
    let lines = ["line 0", "line 1", "line 2", "line 3", "line 4", "line 5"];
    assert_eq!(printed_lines(&text), lines, "{frames:?}");

    // The tail ends about 3 s after the job does.
    let done = client.job_info(&id).await.unwrap();
    assert_eq!(
        (done.status, done.message.as_deref(), done.driver_exit_code, done.metadata),
        (JobStatus::Succeeded, Some("Job finished successfully."), Some(0), request.metadata)
    );
    assert!(done.end_time.unwrap() > done.start_time.unwrap());
    assert_eq!(printed_lines(&client.job_logs(&id).await.unwrap()), lines);
    assert!(client.list_jobs().await.unwrap().iter().any(|job| job.submission_id.as_deref() == Some(id.as_str())));

    assert!(client.delete_job(&id).await.unwrap());
    let gone = RayError::NotFound(format!("Job {id} does not exist on the cluster"));
    assert_eq!(client.job_info(&id).await.unwrap_err(), gone);
    assert_eq!(client.delete_job(&id).await.unwrap_err(), gone);
}

#[tokio::test]
async fn a_running_job_is_stopped_once_and_deleted_only_once_stopped() {
    let client = dashboard();
    let id = unique("job-stop");
    client.submit_job(&submission("sleep 120", &id)).await.unwrap();
    job_reaches(&client, &id, JobStatus::Running).await;
    let refused = client.delete_job(&id).await.unwrap_err();
    assert!(
        matches!(&refused, RayError::BadRequest { status: 500, body }
            if body.contains(&format!("Attempted to delete job '{id}', but it is in a non-terminal state RUNNING."))),
        "{refused}"
    );
    assert!(client.stop_job(&id).await.unwrap());
    let stopped = job_reaches(&client, &id, JobStatus::Stopped).await;
    assert_eq!(stopped.message.as_deref(), Some("Job was intentionally stopped."));
    assert!(!client.stop_job(&id).await.unwrap(), "a stopped job is not stopped again");
    assert!(client.delete_job(&id).await.unwrap());
}

#[tokio::test]
async fn a_failing_job_ends_failed_and_unknown_jobs_are_not_found() {
    let client = dashboard();
    let id = unique("job-fail");
    let entrypoint = r#"python -c "import sys; print(\"about to fail\"); sys.exit(1)""#;
    client.submit_job(&submission(entrypoint, &id)).await.unwrap();
    let failed = job_reaches(&client, &id, JobStatus::Failed).await;
    assert_eq!(
        (failed.error_type.as_deref(), failed.driver_exit_code, failed.runtime_env),
        (Some("JOB_ENTRYPOINT_COMMAND_ERROR"), Some(1), None)
    );
    let message = failed.message.unwrap();
    assert!(message.starts_with("Job entrypoint command failed with exit code 1"), "{message}");
    // stdout and stderr interleave: Ray's "Running entrypoint" line may come after the job's own output.
    assert!(message.contains("\nabout to fail\n"), "{message}");

    let nope = unique("nope");
    let missing = RayError::NotFound(format!("Job {nope} does not exist on the cluster"));
    assert_eq!(client.job_info(&nope).await.unwrap_err(), missing);
    assert_eq!(client.job_logs(&nope).await.unwrap_err(), missing);
    assert_eq!(client.stop_job(&nope).await.unwrap_err(), missing);
}

#[tokio::test]
async fn serve_applications_deploy_and_bad_configs_are_refused() {
    let client = dashboard();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("hello.py"),
        "from ray import serve\n\n@serve.deployment(num_replicas=1, ray_actor_options={\"num_cpus\": 0.1})\nclass Hello:\n    async def __call__(self, request):\n        return \"hello\"\n\napp = Hello.bind()\n",
    )
    .unwrap();
    // Serve's HTTP proxy would take port 8000, which another head on the machine may hold.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = json!({
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {"name": "hello", "route_prefix": "/", "import_path": "hello:app",
             "runtime_env": {"working_dir": format!("local://{}", app.path().display())},
             "deployments": [{"name": "Hello", "num_replicas": 1}]},
            {"name": "broken", "route_prefix": "/broken", "import_path": "does_not_exist:app"},
        ],
    });
    client.put_serve_applications(&config).await.unwrap();
    let details = until("serve applications settled", Duration::from_secs(120), || async {
        let details = client.serve_applications().await.unwrap();
        let settled = details.applications.get("hello").is_some_and(|a| a.status == ApplicationStatus::Running)
            && details.applications.get("broken").is_some_and(|a| a.status == ApplicationStatus::DeployFailed);
        settled.then_some(details)
    })
    .await;
    let deployment = &details.applications["hello"].deployments["Hello"];
    assert_eq!((deployment.status, deployment.replicas.len()), (DeploymentStatus::Healthy, 1));
    let broken = &details.applications["broken"];
    assert_eq!((broken.route_prefix.as_deref(), broken.deployments.len()), (None, 0));
    assert!(broken.message.contains("No module named 'does_not_exist'"), "{}", broken.message);

    let invalid = client.put_serve_applications(&json!({"applications": [{"name": "x", "route_prefix": "/"}]})).await;
    assert!(
        matches!(&invalid, Err(RayError::BadRequest { status: 400, body })
            if body.starts_with("1 validation error for ServeDeploySchema\napplications.0.import_path\n  Field required")),
        "{invalid:?}"
    );
}
