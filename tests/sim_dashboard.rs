//! The simulated Ray dashboard of a head Pod, reached as the operator reaches it: through the in-process address
//! resolver (`<svc>.<ns>.svc.cluster.local:8265`) and through `services/proxy`; and `--ray-dashboard` routing to
//! another server; and a job's log tail websocket, in-process (`Sim::tail`) and over TCP through `services/proxy`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kuberay::sim::network::Messages;
use kuberay::sim::{ControllerConfig, RayDashboard, Sim, SimConfig, TokioClock};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use common::{DASHBOARD, after, head};

async fn simulated() -> Sim {
    let clock = Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = head(SimConfig { seed: 1, clock, ..SimConfig::default() }, ControllerConfig::default()).await;
    after(2.5).await;
    sim
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

/// A simulated head, running at once, whose dashboard is the "real" one at `url`.
async fn routed_to(url: String) -> Sim {
    let controllers = ControllerConfig {
        pod_start_delay: Duration::from_millis(10),
        pod_ready_delay: Duration::from_millis(10),
        ..ControllerConfig::default()
    };
    let sim = head(SimConfig { ray_dashboard: RayDashboard::Real(url), ..SimConfig::default() }, controllers).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim
}

#[tokio::test]
async fn ray_dashboard_routes_every_head_to_a_real_dashboard() {
    let sim = routed_to(real_head().await).await;
    let (status, _, body) = call(&sim, "GET", "/api/jobs/?x=1", None).await;
    assert_eq!((status, body.as_str()), (200, "real head saw GET /api/jobs/?x=1"));
}

async fn submit(sim: &Sim, id: &str, entrypoint: &str) {
    let submission = json!({"entrypoint": entrypoint, "submission_id": id});
    let (status, _, body) = call(sim, "POST", "/api/jobs/", Some(submission)).await;
    assert_eq!(status, 200, "{body}");
}

/// Each frame of a tail with the seconds since it was opened at which it came, and when the tail closed.
async fn frames(mut tail: Messages) -> (Vec<(f64, String)>, f64) {
    let opened = tokio::time::Instant::now();
    let mut frames = Vec::new();
    while let Some(frame) = tail.next().await {
        frames.push((opened.elapsed().as_secs_f64(), frame));
    }
    (frames, opened.elapsed().as_secs_f64())
}

/// Ray's two opening lines of a job that started `seconds` after 2025-01-01T00:00:00Z.
fn opening(id: &str, entrypoint: &str, seconds: &str) -> String {
    format!(
        "2025-01-01 00:00:{seconds}\tINFO job_manager.py:581 -- Runtime env is setting up.\nRunning entrypoint for job {id}: {entrypoint}\n"
    )
}

const FOUR_LINES: &str = "echo one; echo two; echo three; echo four; sleep 4";

#[tokio::test(start_paused = true)]
async fn a_tail_sends_the_backlog_then_a_frame_a_second_and_closes_3_s_after_the_end() {
    let sim = simulated().await;
    // Submitted at 2.5 s: it starts at 3.5 s, writes a line at 4.5, 5.5, 6.5 and 7.5 s, and ends at 7.5 s.
    submit(&sim, "job-lines", FOUR_LINES).await;
    after(2.5).await;
    let (frames, closed) = frames(sim.tail(DASHBOARD, "job-lines").await.unwrap()).await;
    let backlog = format!("{}one\ntwo\n", opening("job-lines", FOUR_LINES, "03,500"));
    assert_eq!(frames, [(1.0, backlog), (2.0, "three\n".into()), (3.0, "four\n".into())]);
    // The end (7.5 s) is seen at the first look at least 3 s later: 11.0 s, 6 s after connecting at 5.0 s.
    assert_eq!(closed, 6.0);
    assert_eq!(job(&sim, "job-lines").await["status"], "SUCCEEDED");
}

#[tokio::test(start_paused = true)]
async fn a_tail_waits_while_pending_and_closes_a_failed_job_the_same_way() {
    let sim = simulated().await;
    let entrypoint = "echo about to fail; sleep 2; exit 1";
    submit(&sim, "job-fail", entrypoint).await;
    let (frames, closed) = frames(sim.tail(DASHBOARD, "job-fail").await.unwrap()).await;
    // PENDING until 1 s; seen started at 1 s, tailed from 2 s; the line is written as it ends, at 3 s.
    assert_eq!(frames, [(2.0, opening("job-fail", entrypoint, "03,500")), (3.0, "about to fail\n".into())]);
    assert_eq!(closed, 6.0);
    assert_eq!(job(&sim, "job-fail").await["status"], "FAILED");
}

#[tokio::test(start_paused = true)]
async fn a_stopped_job_is_closed_3_s_after_the_stop() {
    let sim = simulated().await;
    submit(&sim, "job-long", "sleep 60").await;
    after(1.5).await;
    let tail = sim.tail(DASHBOARD, "job-long").await.unwrap();
    let stopper = sim.clone();
    tokio::spawn(async move {
        after(2.5).await;
        call(&stopper, "POST", "/api/jobs/job-long/stop", None).await;
    });
    let (frames, closed) = frames(tail).await;
    assert_eq!(frames, [(1.0, opening("job-long", "sleep 60", "03,500"))]);
    assert_eq!(closed, 6.0);
    assert_eq!(job(&sim, "job-long").await["status"], "STOPPED");
}

#[tokio::test(start_paused = true)]
async fn a_job_that_already_ended_gets_its_whole_log_then_the_close() {
    let sim = simulated().await;
    submit(&sim, "job-done", FOUR_LINES).await;
    after(10.0).await;
    let (frames, closed) = frames(sim.tail(DASHBOARD, "job-done").await.unwrap()).await;
    let whole = format!("{}one\ntwo\nthree\nfour\n", opening("job-done", FOUR_LINES, "03,500"));
    assert_eq!((frames, closed), (vec![(1.0, whole)], 1.0));
}

#[tokio::test(start_paused = true)]
async fn a_job_that_ended_before_it_started_is_closed_at_once() {
    let sim = simulated().await;
    submit(&sim, "job-early", "sleep 60").await;
    assert_eq!(call(&sim, "POST", "/api/jobs/job-early/stop", None).await.2, r#"{"stopped":true}"#);
    let (frames, closed) = frames(sim.tail(DASHBOARD, "job-early").await.unwrap()).await;
    assert_eq!((frames, closed), (vec![], 0.0));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_job_is_refused_and_a_plain_get_is_not_upgraded() {
    let sim = simulated().await;
    let error = sim.tail(DASHBOARD, "nope").await.err().unwrap();
    assert_eq!((error.code, error.message.as_str()), (404, "Job nope does not exist"));
    submit(&sim, "job-abc", "echo hi").await;
    assert_eq!(
        call(&sim, "GET", "/api/jobs/job-abc/logs/tail", None).await,
        (
            400,
            "text/plain; charset=utf-8".into(),
            "No WebSocket UPGRADE hdr: None\n Can \"Upgrade\" only to \"WebSocket\".".into()
        )
    );
    assert_eq!(sim.tail("10.1.2.3:8265", "job-abc").await.err().unwrap().code, 503);
}

/// A simulated cluster with a running head, served over TCP on an ephemeral port; answers its address.
async fn served() -> (Sim, std::net::SocketAddr) {
    let controllers = ControllerConfig {
        pod_start_delay: Duration::from_millis(10),
        pod_ready_delay: Duration::from_millis(10),
        ..ControllerConfig::default()
    };
    let sim = head(SimConfig::default(), controllers).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    (sim, address)
}

/// Opens the tail of `id` over TCP through `services/proxy`, offering `extensions` if any; answers the 101's
/// `Sec-WebSocket-Extensions`, every message until the connection ends, and how long after the 101 the last came.
async fn tail_over_tcp(
    address: std::net::SocketAddr,
    id: &str,
    extensions: Option<&str>,
) -> (Option<String>, Vec<Message>, Duration) {
    let url =
        format!("ws://{address}/api/v1/namespaces/default/services/c-head-svc:dashboard/proxy/api/jobs/{id}/logs/tail");
    let mut request = url.into_client_request().unwrap();
    if let Some(extensions) = extensions {
        request.headers_mut().insert("Sec-WebSocket-Extensions", extensions.parse().unwrap());
    }
    let (mut socket, answer) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(answer.status(), 101);
    assert_eq!(answer.headers()["server"], "Python/3.11 aiohttp/3.14.5");
    let accepted = answer.headers().get("sec-websocket-extensions").map(|e| e.to_str().unwrap().to_string());
    let upgraded = std::time::Instant::now();
    let mut messages = Vec::new();
    while let Some(Ok(message)) = socket.next().await {
        messages.push(message);
    }
    (accepted, messages, upgraded.elapsed())
}

fn closed_normally(message: &Message) -> bool {
    matches!(message, Message::Close(Some(frame)) if frame.code == CloseCode::Normal && frame.reason.is_empty())
}

#[tokio::test]
async fn the_tail_is_a_websocket_through_services_proxy_and_deflate_gets_a_bare_close() {
    let (sim, address) = served().await;
    submit(&sim, "job-tcp", "echo hi; sleep 0.1").await;
    // Started after 1 s, ended after 1.1 s: the whole log comes in the first frame, then the close.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let ((plain_extensions, plain, _), (deflate_extensions, deflated, deflate_closed)) = tokio::join!(
        tail_over_tcp(address, "job-tcp", None),
        tail_over_tcp(address, "job-tcp", Some("permessage-deflate; client_max_window_bits")),
    );
    assert_eq!(plain_extensions, None);
    assert_eq!(plain.len(), 2, "{plain:?}");
    let text = plain[0].to_text().unwrap();
    assert!(
        plain[0].is_text() && text.ends_with("Running entrypoint for job job-tcp: echo hi; sleep 0.1\nhi\n"),
        "{text}"
    );
    assert!(closed_normally(&plain[1]), "{plain:?}");
    assert_eq!(deflate_extensions.as_deref(), Some("permessage-deflate"));
    assert!(deflated.len() == 1 && closed_normally(&deflated[0]), "{deflated:?}");
    // The close comes when the first frame would have: one look after connecting, not at once.
    assert!(deflate_closed >= Duration::from_millis(900), "{deflate_closed:?}");

    let url =
        format!("ws://{address}/api/v1/namespaces/default/services/c-head-svc:dashboard/proxy/api/jobs/nope/logs/tail");
    let Err(WsError::Http(refused)) = tokio_tungstenite::connect_async(url).await else { panic!("not refused") };
    assert_eq!(refused.status(), 404);
    assert_eq!(refused.body().as_deref(), Some(b"Job nope does not exist".as_slice()));
}

/// A websocket server standing for a real Ray head's tail: it answers one frame naming the path it saw, then closes.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback returns its error response by value
async fn real_tailing_head() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut path = String::new();
        let record = |request: &http::Request<()>, response| {
            path = request.uri().to_string();
            Ok(response)
        };
        let mut socket = tokio_tungstenite::accept_hdr_async(stream, record).await.unwrap();
        socket.send(Message::text(format!("real head tailed {path}\n"))).await.unwrap();
        socket.close(None).await.unwrap();
        while socket.next().await.is_some() {}
    });
    format!("http://{address}")
}

#[tokio::test]
async fn ray_dashboard_tails_on_the_real_dashboard() {
    let sim = routed_to(real_tailing_head().await).await;
    let frames: Vec<String> = sim.tail(DASHBOARD, "job-x").await.unwrap().collect().await;
    assert_eq!(frames, ["real head tailed /api/jobs/job-x/logs/tail\n"]);
}
