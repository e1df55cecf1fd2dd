//! The simulated Ray dashboard of a head Pod, reached as the operator reaches it: through the in-process address
//! resolver (`<svc>.<ns>.svc.cluster.local:8265`) and through `services/proxy`; and `--ray-dashboard` routing to
//! another server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use kuberay::sim::{ControllerConfig, RayDashboard, Sim, SimConfig, TokioClock};
use serde_json::{Value, json};

const DASHBOARD: &str = "c-head-svc.default.svc.cluster.local:8265";

/// A head Pod of RayCluster `c` and its head Service, running (controllers on), ready after 2 s.
async fn head(config: SimConfig, controllers: ControllerConfig) -> Sim {
    let sim = Sim::new(config);
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(controllers).await });
    let client = sim.client();
    let labels = json!({"ray.io/node-type": "head", "ray.io/cluster": "c"});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "c-head-abcde", "labels": labels},
        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.41.0",
                                 "ports": [{"name": "dashboard", "containerPort": 8265}]}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &pod).await.unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "c-head-svc"},
        "spec": {"selector": labels, "ports": [{"name": "dashboard", "port": 8265, "targetPort": "dashboard"}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client, "default").create(&PostParams::default(), &service).await.unwrap();
    sim
}

async fn simulated() -> Sim {
    let clock = Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = head(SimConfig { seed: 1, clock, ..SimConfig::default() }, ControllerConfig::default()).await;
    after(2.5).await;
    sim
}

async fn after(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

/// Sends a request to the head's dashboard; answers the status, content type and body.
async fn call(sim: &Sim, method: &str, path: &str, body: Option<Value>) -> (u16, String, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())))
        .unwrap();
    let answer = sim.send(DASHBOARD, request).await.unwrap();
    let content_type =
        answer.headers().get("content-type").map(|c| c.to_str().unwrap().to_string()).unwrap_or_default();
    (answer.status().as_u16(), content_type, String::from_utf8(answer.into_body().to_vec()).unwrap())
}

async fn job(sim: &Sim, id: &str) -> Value {
    let (status, _, body) = call(sim, "GET", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_answers_version_and_health() {
    let sim = simulated().await;
    let (status, content_type, body) = call(&sim, "GET", "/api/version", None).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json; charset=utf-8"));
    let version: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((version["version"].clone(), version["ray_version"].clone()), (json!("4"), json!("2.60.0")));
    assert_eq!(
        call(&sim, "GET", "/api/gcs_healthz", None).await,
        (200, "text/plain; charset=utf-8".into(), "success".into())
    );
    assert_eq!(call(&sim, "GET", "/api/nothing", None).await.0, 404);
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_submission_gets_the_real_dashboards_answer() {
    let sim = simulated().await;
    let submission = json!({"entrypoint": "sleep 3 && echo done", "submission_id": "job-abc", "metadata": {"k": "v"}});
    let (status, _, body) = call(&sim, "POST", "/api/jobs/", Some(submission.clone())).await;
    assert_eq!((status, body.as_str()), (200, r#"{"job_id":"job-abc","submission_id":"job-abc"}"#));
    let pending = job(&sim, "job-abc").await;
    assert_eq!(
        (pending["status"].clone(), pending["message"].clone()),
        (json!("PENDING"), json!("Job has not started yet."))
    );
    assert_eq!(
        (pending["driver_agent_http_address"].clone(), pending["runtime_env"].clone()),
        (Value::Null, Value::Null)
    );

    let (status, content_type, body) = call(&sim, "POST", "/api/jobs/", Some(submission)).await;
    assert_eq!((status, content_type.as_str()), (500, "text/plain; charset=utf-8"));
    assert!(body.starts_with("Traceback (most recent call last):\n"), "{body}");
    assert!(body.contains("RuntimeError: Request failed with status code 400: Traceback"), "{body}");
    assert!(
        body.ends_with(
            "ValueError: Job with submission_id job-abc already exists. Please use a different submission_id.\n.\n"
        ),
        "{body}"
    );

    after(1.5).await;
    let running = job(&sim, "job-abc").await;
    assert_eq!(running["status"], "RUNNING");
    assert_eq!(running["driver_agent_http_address"], "http://10.244.0.2:52365");
    after(3.0).await;
    let done = job(&sim, "job-abc").await;
    assert_eq!((done["status"].clone(), done["driver_exit_code"].clone()), (json!("SUCCEEDED"), json!(0)));
    assert_eq!(done["metadata"], json!({"k": "v"}));
    let (_, _, logs) = call(&sim, "GET", "/api/jobs/job-abc/logs", None).await;
    let logs: Value = serde_json::from_str(&logs).unwrap();
    assert!(
        logs["logs"].as_str().unwrap().ends_with("Running entrypoint for job job-abc: sleep 3 && echo done\ndone\n")
    );

    assert_eq!(call(&sim, "DELETE", "/api/jobs/job-abc", None).await.2, r#"{"deleted":true}"#);
    assert_eq!(
        call(&sim, "GET", "/api/jobs/job-abc", None).await,
        (404, "text/plain; charset=utf-8".into(), "Job job-abc does not exist".into())
    );
    assert_eq!(call(&sim, "GET", "/api/jobs/", None).await.2, "[]");
}

#[tokio::test(start_paused = true)]
async fn a_failing_entrypoint_ends_failed() {
    let sim = simulated().await;
    let entrypoint = r#"python -c "import sys; print(\"about to fail\"); sys.exit(1)""#;
    call(&sim, "POST", "/api/jobs/", Some(json!({"entrypoint": entrypoint, "submission_id": "job-fail"}))).await;
    let (status, _, body) = call(&sim, "DELETE", "/api/jobs/job-fail", None).await;
    assert_eq!(status, 500);
    assert!(
        body.ends_with(
            "RuntimeError: Attempted to delete job 'job-fail', but it is in a non-terminal state PENDING.\n"
        ),
        "{body}"
    );
    after(3.5).await;
    let failed = job(&sim, "job-fail").await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        (failed["driver_exit_code"].clone(), failed["error_type"].clone()),
        (json!(1), json!("JOB_ENTRYPOINT_COMMAND_ERROR"))
    );
    let message = failed["message"].as_str().unwrap();
    assert!(message.starts_with(
        "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
    ));
    assert!(message.ends_with("\nabout to fail\n"), "{message}");
    assert_eq!(failed["end_time"].as_i64().unwrap() - failed["start_time"].as_i64().unwrap(), 3000);
}

#[tokio::test(start_paused = true)]
async fn jobs_stop_and_get_generated_ids() {
    let sim = simulated().await;
    let (_, _, body) = call(&sim, "POST", "/api/jobs/", Some(json!({"entrypoint": "sleep 60"}))).await;
    let submitted: Value = serde_json::from_str(&body).unwrap();
    let id = submitted["submission_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("raysubmit_") && id.len() == "raysubmit_".len() + 16, "{id}");
    after(2.0).await;
    assert_eq!(call(&sim, "POST", &format!("/api/jobs/{id}/stop"), None).await.2, r#"{"stopped":true}"#);
    assert_eq!(job(&sim, &id).await["status"], "STOPPED");
    assert_eq!(call(&sim, "POST", &format!("/api/jobs/{id}/stop"), None).await.2, r#"{"stopped":false}"#);
    let (status, _, body) = call(&sim, "POST", "/api/jobs/", Some(json!({"submission_id": "x"}))).await;
    assert_eq!(status, 400);
    assert!(body.ends_with("missing 1 required positional argument: 'entrypoint'\n"), "{body}");
    let (status, _, body) = call(&sim, "POST", "/api/jobs/", Some(json!({"entrypoint": "x", "bogus": 1}))).await;
    assert_eq!(status, 400);
    assert!(body.ends_with("got an unexpected keyword argument 'bogus'\n"), "{body}");
}

#[tokio::test(start_paused = true)]
async fn serve_applications_deploy_then_run() {
    let sim = simulated().await;
    let empty = call(&sim, "GET", "/api/serve/applications/", None).await.2;
    assert_eq!(empty, r#"{"applications":{},"controller_info":{},"proxies":{},"target_capacity":null}"#);
    let config = json!({"applications": [
        {"name": "hello", "route_prefix": "/", "import_path": "hello:app", "deployments": [{"name": "Hello", "num_replicas": 2}]},
        {"name": "broken", "route_prefix": "/b", "import_path": "does_not_exist:app"},
    ]});
    assert_eq!(
        call(&sim, "PUT", "/api/serve/applications/", Some(config)).await,
        (200, "application/json; charset=utf-8".into(), String::new())
    );
    let status = |body: &str| -> Value { serde_json::from_str(body).unwrap() };
    let deploying = status(&call(&sim, "GET", "/api/serve/applications/", None).await.2);
    assert_eq!(deploying["applications"]["hello"]["status"], "DEPLOYING");
    assert_eq!(deploying["applications"]["hello"]["deployments"]["Hello"]["status"], "UPDATING");
    after(3.0).await;
    let running = status(&call(&sim, "GET", "/api/serve/applications/", None).await.2);
    let hello = &running["applications"]["hello"];
    assert_eq!(
        (hello["status"].clone(), hello["deployments"]["Hello"]["status"].clone()),
        (json!("RUNNING"), json!("HEALTHY"))
    );
    assert_eq!(hello["deployments"]["Hello"]["replicas"].as_array().unwrap().len(), 2);
    let broken = &running["applications"]["broken"];
    assert_eq!((broken["status"].clone(), broken["route_prefix"].clone()), (json!("DEPLOY_FAILED"), Value::Null));
    assert!(broken["message"].as_str().unwrap().ends_with("ModuleNotFoundError: No module named 'does_not_exist'"));

    let (status_code, _, body) = call(
        &sim,
        "PUT",
        "/api/serve/applications/",
        Some(json!({"applications": [{"name": "x", "route_prefix": "/"}]})),
    )
    .await;
    assert_eq!(status_code, 400);
    assert!(
        body.starts_with("1 validation error for ServeDeploySchema\napplications.0.import_path\n  Field required"),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_is_reached_over_services_proxy() {
    let sim = simulated().await;
    let request = http::Request::get("/api/v1/namespaces/default/services/c-head-svc:dashboard/proxy/api/version")
        .body(Vec::new())
        .unwrap();
    let version: Value = serde_json::from_str(&sim.client().request_text(request).await.unwrap()).unwrap();
    assert_eq!(version["ray_version"], "2.60.0");
}

/// An HTTP server standing for a real Ray head: it answers with the request line it saw.
async fn real_head() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
            let seen = format!("real head saw {} {}", request.method(), request.uri());
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(seen))))
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
    });
    format!("http://{address}")
}

#[tokio::test]
async fn ray_dashboard_routes_every_head_to_a_real_dashboard() {
    let url = real_head().await;
    let controllers = ControllerConfig {
        pod_start_delay: Duration::from_millis(10),
        pod_ready_delay: Duration::from_millis(10),
        ..ControllerConfig::default()
    };
    let sim = head(SimConfig { ray_dashboard: RayDashboard::Real(url), ..SimConfig::default() }, controllers).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = call(&sim, "GET", "/api/jobs/?x=1", None).await;
    assert_eq!((status, body.as_str()), (200, "real head saw GET /api/jobs/?x=1"));
}
