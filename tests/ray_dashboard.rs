//! The dashboard client against the simulated Ray dashboard of a head Pod, in-process: through the address resolver
//! (`SimTransport`) and through the API server's `services/proxy` (`ProxyTransport`). Time is paused: the simulated
//! jobs and serve applications move on tokio's clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kuberay::ray::{
    ApplicationStatus, DashboardClient, DeploymentStatus, JobStatus, ProxyTransport, RayError, SubmitRequest,
};
use kuberay::sim::ray_transport::SimTransport;
use kuberay::sim::{ControllerConfig, Faults, Sim, SimConfig, TokioClock};
use serde_json::json;

use common::{DASHBOARD, after, head};

/// A simulated cluster with the head Pod of RayCluster `c` and its head Service, running and ready.
async fn cluster(faults: Faults) -> Sim {
    let clock = Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = head(SimConfig { seed: 1, clock, faults, ..SimConfig::default() }, ControllerConfig::default()).await;
    after(2.5).await;
    sim
}

async fn dashboard() -> DashboardClient {
    DashboardClient::new(SimTransport::new(cluster(Faults::default()).await, DASHBOARD))
}

fn submission(entrypoint: &str, id: &str) -> SubmitRequest {
    SubmitRequest { entrypoint: entrypoint.into(), submission_id: Some(id.into()), ..SubmitRequest::default() }
}

#[tokio::test(start_paused = true)]
async fn the_version_answers_through_the_resolver_and_through_services_proxy() {
    let sim = cluster(Faults::default()).await;
    let direct = DashboardClient::new(SimTransport::new(sim.clone(), DASHBOARD));
    let proxied = DashboardClient::new(ProxyTransport::new(sim.client(), "default", "c-head-svc"));
    for client in [direct, proxied] {
        let version = client.version().await.unwrap();
        assert_eq!((version.version.as_str(), version.ray_version.as_str()), ("4", "2.60.0"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_runs_its_course_and_a_duplicate_submission_already_exists() {
    let client = dashboard().await;
    let mut request = submission("sleep 3 && echo done", "job-abc");
    request.metadata = Some(BTreeMap::from([("k".to_string(), "v".to_string())]));
    assert_eq!(client.submit_job(&request).await.unwrap(), "job-abc");
    let pending = client.job_info("job-abc").await.unwrap();
    assert_eq!(
        (pending.status, pending.message.as_deref(), pending.driver_agent_http_address),
        (JobStatus::Pending, Some("Job has not started yet."), None)
    );
    assert_eq!(pending.metadata, request.metadata);

    let duplicate = client.submit_job(&submission("echo again", "job-abc")).await.unwrap_err();
    assert_eq!(duplicate, RayError::AlreadyExists { submission_id: "job-abc".into() });

    after(1.5).await;
    assert_eq!(client.job_info("job-abc").await.unwrap().status, JobStatus::Running);
    let refused = client.delete_job("job-abc").await.unwrap_err();
    assert!(
        matches!(&refused, RayError::BadRequest { status: 500, body }
            if body.ends_with("RuntimeError: Attempted to delete job 'job-abc', but it is in a non-terminal state RUNNING.")),
        "{refused}"
    );

    after(3.0).await;
    let done = client.job_info("job-abc").await.unwrap();
    assert_eq!(
        (done.status, done.message.as_deref(), done.driver_exit_code),
        (JobStatus::Succeeded, Some("Job finished successfully."), Some(0))
    );
    assert_eq!(done.end_time.unwrap() - done.start_time.unwrap(), 4000);
    let logs = client.job_logs("job-abc").await.unwrap();
    assert!(logs.ends_with("Running entrypoint for job job-abc: sleep 3 && echo done\ndone\n"), "{logs}");
    let listed = client.list_jobs().await.unwrap();
    assert_eq!(listed, [done]);

    assert!(client.delete_job("job-abc").await.unwrap());
    assert_eq!(client.list_jobs().await.unwrap(), []);
    let gone = RayError::NotFound("Job job-abc does not exist on the cluster".into());
    assert_eq!(client.job_info("job-abc").await.unwrap_err(), gone);
    assert_eq!(client.delete_job("job-abc").await.unwrap_err(), gone);
    assert_eq!(client.job_logs("job-abc").await.unwrap_err(), gone);
    assert_eq!(client.stop_job("job-abc").await.unwrap_err(), gone);
    assert_eq!(client.submit_job(&request).await.unwrap(), "job-abc", "a deleted id can be submitted again");
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_ends_failed() {
    let client = dashboard().await;
    let entrypoint = r#"python -c "import sys; print(\"about to fail\"); sys.exit(1)""#;
    client.submit_job(&submission(entrypoint, "job-fail")).await.unwrap();
    after(3.5).await;
    let failed = client.job_info("job-fail").await.unwrap();
    assert_eq!(
        (failed.status, failed.error_type.as_deref(), failed.driver_exit_code, failed.metadata),
        (JobStatus::Failed, Some("JOB_ENTRYPOINT_COMMAND_ERROR"), Some(1), None)
    );
    assert!(failed.message.unwrap().ends_with("\nabout to fail\n"));
}

#[tokio::test(start_paused = true)]
async fn a_job_stops_once_and_ids_are_generated_when_left_out() {
    let client = dashboard().await;
    let id =
        client.submit_job(&SubmitRequest { entrypoint: "sleep 60".into(), ..SubmitRequest::default() }).await.unwrap();
    assert!(id.starts_with("raysubmit_") && id.len() == "raysubmit_".len() + 16, "{id}");
    after(2.0).await;
    assert!(client.stop_job(&id).await.unwrap());
    let stopped = client.job_info(&id).await.unwrap();
    assert_eq!(
        (stopped.status, stopped.message.as_deref()),
        (JobStatus::Stopped, Some("Job was intentionally stopped."))
    );
    assert!(!client.stop_job(&id).await.unwrap(), "a stopped job is not stopped again");
}

#[tokio::test(start_paused = true)]
async fn serve_applications_deploy_and_bad_configs_are_refused() {
    let client = dashboard().await;
    assert!(client.serve_applications().await.unwrap().applications.is_empty());
    let config = json!({"applications": [
        {"name": "hello", "route_prefix": "/", "import_path": "hello:app", "deployments": [{"name": "Hello", "num_replicas": 2}]},
        {"name": "broken", "route_prefix": "/b", "import_path": "does_not_exist:app"},
    ]});
    client.put_serve_applications(&config).await.unwrap();
    let deploying = client.serve_applications().await.unwrap();
    assert_eq!(deploying.applications["hello"].status, ApplicationStatus::Deploying);
    assert_eq!(deploying.applications["hello"].deployments["Hello"].status, DeploymentStatus::Updating);

    after(3.0).await;
    let details = client.serve_applications().await.unwrap();
    let hello = &details.applications["hello"];
    let deployment = &hello.deployments["Hello"];
    assert_eq!(
        (hello.status, deployment.status, deployment.replicas.len()),
        (ApplicationStatus::Running, DeploymentStatus::Healthy, 2)
    );
    let broken = &details.applications["broken"];
    assert_eq!((broken.status, broken.route_prefix.as_deref()), (ApplicationStatus::DeployFailed, None));
    assert!(broken.message.ends_with("ModuleNotFoundError: No module named 'does_not_exist'"));

    let invalid = client.put_serve_applications(&json!({"applications": [{"name": "x", "route_prefix": "/"}]})).await;
    assert!(
        matches!(&invalid, Err(RayError::BadRequest { status: 400, body })
            if body.starts_with("1 validation error for ServeDeploySchema\napplications.0.import_path\n  Field required")),
        "{invalid:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_in_process_transport_tails_logs() {
    let sim = cluster(Faults::default()).await;
    let client = DashboardClient::new(SimTransport::new(sim.clone(), DASHBOARD));
    client.submit_job(&submission("echo one; sleep 4; echo two", "job-tail")).await.unwrap();
    let tail = client.tail_job_logs("job-tail").await.unwrap();
    let frames: Vec<String> =
        futures::StreamExt::collect::<Vec<_>>(tail).await.into_iter().map(Result::unwrap).collect();
    assert!(frames.len() >= 2, "the backlog, then the lines as they come: {frames:?}");
    assert_eq!(frames.concat(), client.job_logs("job-tail").await.unwrap(), "the whole log, once");
    assert!(frames.concat().ends_with("one\ntwo\n"), "{frames:?}");
    let unknown = client.tail_job_logs("nope").await.err();
    assert_eq!(unknown, Some(RayError::NotFound("Job nope does not exist on the cluster".into())));
    let nowhere = DashboardClient::new(SimTransport::new(sim.clone(), "nope-head-svc.default.svc.cluster.local:8265"));
    assert!(
        matches!(nowhere.tail_job_logs("job-tail").await, Err(RayError::Unavailable(m)) if m.contains("not found"))
    );
}

/// Over TCP and in wall-clock time: the in-process transport cannot upgrade a connection, the API server's can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_transport_tails_logs_through_the_api_servers_upgrade() {
    let config = SimConfig { seed: 1, clock: Arc::new(kuberay::sim::WallClock), ..SimConfig::default() };
    let sim = head(config, ControllerConfig::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let proxied = DashboardClient::new(ProxyTransport::new(client.clone(), "default", "c-head-svc"));
    let mut submitted = Err(RayError::Other("not yet".into()));
    for _ in 0..100 {
        submitted = proxied.submit_job(&submission("echo one && echo two", "job-tail")).await;
        if submitted.is_ok() {
            break;
        }
        after(0.1).await;
    }
    submitted.unwrap();
    let tail = proxied.tail_job_logs("job-tail").await.unwrap();
    let frames: Vec<String> =
        futures::StreamExt::collect::<Vec<_>>(tail).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(frames.concat(), proxied.job_logs("job-tail").await.unwrap(), "the whole log, once");
    assert!(frames.concat().ends_with("one\ntwo\n"), "{frames:?}");
    let unknown = proxied.tail_job_logs("nope").await.err();
    assert_eq!(unknown, Some(RayError::NotFound("Job nope does not exist on the cluster".into())));
    let nowhere = DashboardClient::new(ProxyTransport::new(client, "default", "nope-head-svc"));
    let refused = nowhere.tail_job_logs("job-tail").await.err();
    assert!(matches!(&refused, Some(RayError::Unavailable(m)) if m.contains("404")), "{refused:?}");
}

#[tokio::test(start_paused = true)]
async fn dashboards_that_are_not_there_or_do_not_answer_are_unavailable() {
    let sim =
        cluster(Faults { dashboard_timeouts: 1.0, dashboard_hang: Duration::from_secs(5), ..Faults::default() }).await;
    let hanging = DashboardClient::new(SimTransport::new(sim.clone(), DASHBOARD));
    let started = tokio::time::Instant::now();
    let error = hanging.version().await.unwrap_err();
    assert_eq!(
        (error, started.elapsed()),
        (
            RayError::Unavailable(format!("GET http://{DASHBOARD}/api/version: no answer within 2s")),
            Duration::from_secs(2)
        )
    );

    let nowhere = DashboardClient::new(SimTransport::new(sim.clone(), "nope-head-svc.default.svc.cluster.local:8265"));
    assert!(matches!(nowhere.list_jobs().await, Err(RayError::Unavailable(m)) if m.contains("not found")));
    let proxied = DashboardClient::new(ProxyTransport::new(sim.client(), "default", "nope-head-svc"));
    let error = proxied.version().await.unwrap_err();
    assert_eq!(
        error,
        RayError::Unavailable(
            "GET /api/v1/namespaces/default/services/nope-head-svc:dashboard/proxy/api/version: the API server answered 404: services \"nope-head-svc\" not found".into()
        )
    );
}
