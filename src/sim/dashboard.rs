//! The simulated Ray dashboard: one per Ray head Pod (a new head Pod starts a fresh one, as a head without GCS
//! fault tolerance does), listening on the head container's `dashboard` port (8265 unless named otherwise) once the
//! Pod runs. It answers the jobs and serve APIs with the bodies, status codes and content types of a real Ray 2.60
//! head (`../shared/spec/ray-dashboard-api.md`): JSON on success, `text/plain` (often a Python traceback) on error.
//!
//! # Jobs: how an entrypoint scripts its fate
//! A job is PENDING for [`PENDING_SECONDS`] after its submission, then RUNNING, then SUCCEEDED or FAILED:
//! - it runs for the sum of the `sleep N` and `time.sleep(N)` in its entrypoint (`N` in seconds, fractions
//!   allowed), or [`DEFAULT_RUN_SECONDS`] when there are none;
//! - it fails when the first `exit N`, `exit(N)` or `sys.exit(N)` of its entrypoint has `N` other than 0, with
//!   `driver_exit_code` N (`error_type` `JOB_ENTRYPOINT_COMMAND_ERROR`); otherwise it succeeds with 0;
//! - its logs, once it runs, are Ray's two opening lines and what its `echo WORDS` and `print("text")` would print,
//!   or three lines `simulated step K of 3` when it has neither; the printed lines are written evenly over the run,
//!   line K of N at K/N of it (the last as it ends), and a stopped job writes no more.
//!
//! A duplicate `submission_id` is answered 500 with the traceback whose last line says `Job with submission_id X
//! already exists. Please use a different submission_id.`; deleting a job that has not ended is 500; unknown ids are
//! 404 `Job X does not exist`. `stop` stops a job at once (a real head takes about 2.5 s).
//!
//! # The log tail websocket
//! `GET /api/jobs/ID/logs/tail` with `Upgrade: websocket` ([`Dashboard::tail`]; served over TCP by the API
//! server's `services/proxy`, and in-process by [`super::Sim::tail`]) follows a real head's loops on tokio's clock:
//! - it looks at the job once per [`TAIL_INTERVAL`] from the moment it connects; while the job is PENDING it sends
//!   nothing, and a job that ended before its supervisor started (stopped while PENDING) is closed at once, with no
//!   frame;
//! - once the job has started it waits one more interval (a real head sleeps after it sees the driver's address),
//!   then sends, once per interval, one text frame with every line written since the last (the first frame holds
//!   the whole backlog), skipping intervals without new lines;
//! - it closes (a normal close, 1000, whatever the outcome) at the first look with nothing new at least
//!   [`TAIL_CLOSE_DELAY`] after the job ended, as a real head sees the end about 3 s late. A job that had ended long
//!   before gets its whole log one interval after connecting, then the close at once;
//! - an unknown id is refused before the upgrade, `404 Job ID does not exist`; a plain `GET` of a known job's tail
//!   is aiohttp's 400 `No WebSocket UPGRADE hdr: None…`; a job deleted while tailed is closed at the next look.
//!
//! A client that offers `permessage-deflate` gets it accepted and then a close 1000 with no data when the first
//! frame would go, as a real head fails to write it (`../shared/spec/ray-dashboard-api.md` §3.7); the websocket
//! layer that speaks to TCP clients does that (the API server's, in `sim/http.rs`).
//!
//! # Serve
//! `PUT /api/serve/applications/` takes a config; every application whose config is new or changed is DEPLOYING
//! (its deployments UPDATING) for [`DEPLOY_SECONDS`], then RUNNING (HEALTHY, one replica per `num_replicas`);
//! an application whose import path names the module `does_not_exist` ends DEPLOY_FAILED with a
//! `ModuleNotFoundError`, as a real head reports a bad import. Applications left out of a config are gone at once.
//!
//! Approximations: no `DRIVER` jobs, `job_id` always null, no token authentication, the serve answer holds the
//! fields the operator reads (status, messages, deployments and their replicas), not the controller's metrics; a
//! resubmitted id does not show the deleted run's log; the dashboard-timeout fault delays plain answers, not the
//! log tail's handshake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode, header};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::clock::Clock;
use super::faults::{self, Dice, Faults};
use super::network::{Answer, Messages, Process, Processes, Request, Response, WebSocketAnswer};
use super::rng::Rng;
use super::store::Store;
use crate::ray::JobStatus;

/// How long a job waits before it runs.
pub const PENDING_SECONDS: f64 = 1.0;
/// How long a job without `sleep` runs.
pub const DEFAULT_RUN_SECONDS: f64 = 2.0;
/// How long an application deploys.
pub const DEPLOY_SECONDS: f64 = 3.0;
/// How often the log tail looks for new lines (Ray's `LOG_TAIL_SLEEP_S` and
/// `WAIT_FOR_SUPERVISOR_ACTOR_INTERVAL_S`).
pub const TAIL_INTERVAL: Duration = Duration::from_secs(1);
/// How long after a job ends its log tail sees the end.
pub const TAIL_CLOSE_DELAY: Duration = Duration::from_secs(3);

const RAY_VERSION: &str = "2.60.0";
const RAY_COMMIT: &str = "b7f4259e944bf6959f721b106adc366ddfa0c356";
const DASHBOARD_AGENT_PORT: u16 = 52365;

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The dashboard port of a running Ray head Pod; `None` for any other Pod.
pub fn head_dashboard_port(pod: &Value) -> Option<u16> {
    let head = text(pod, "/metadata/labels/ray.io~1node-type") == "head"
        && !text(pod, "/metadata/labels/ray.io~1cluster").is_empty();
    let running = text(pod, "/status/phase") == "Running" && pod.pointer("/metadata/deletionTimestamp").is_none();
    if !(head && running) {
        return None;
    }
    let named = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
        .find(|p| text(p, "/name") == "dashboard")
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .and_then(|port| u16::try_from(port).ok());
    Some(named.unwrap_or(8265))
}

/// The simulated dashboards of every Ray head.
pub struct Dashboards {
    clock: Arc<dyn Clock>,
    seed: u64,
    faults: Faults,
    /// By head Pod uid.
    heads: Mutex<BTreeMap<String, Arc<Dashboard>>>,
}

impl Dashboards {
    pub fn new(clock: Arc<dyn Clock>, seed: u64, faults: Faults) -> Dashboards {
        Dashboards { clock, seed, faults, heads: Mutex::new(BTreeMap::new()) }
    }
}

impl Processes for Dashboards {
    fn listening(&self, _: &Store, pod: &Value, port: u16) -> Option<Arc<dyn Process>> {
        if head_dashboard_port(pod) != Some(port) {
            return None;
        }
        let uid = text(pod, "/metadata/uid").to_string();
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        let rank = heads.len() as u64;
        let dashboard = heads.entry(uid.clone()).or_insert_with(|| {
            let seed = self.seed ^ u64::from_le_bytes(Sha1::digest(uid.as_bytes())[..8].try_into().unwrap_or_default());
            let hangs = Hangs {
                probability: self.faults.dashboard_timeouts,
                hang: self.faults.dashboard_hang,
                dice: Mutex::new(self.faults.dice(faults::DASHBOARDS, rank)),
            };
            Arc::new(Dashboard::new(self.clock.clone(), pod, seed, hangs))
        });
        Some(dashboard.clone() as Arc<dyn Process>)
    }
}

/// `--ray-dashboard URL`: every head's dashboard is that real one (only the routing is simulated).
pub struct RealDashboards {
    forward: Arc<Forward>,
}

impl RealDashboards {
    pub fn new(url: &str) -> RealDashboards {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        RealDashboards { forward: Arc::new(Forward { base: url.trim_end_matches('/').to_string(), client }) }
    }
}

impl Processes for RealDashboards {
    fn listening(&self, _: &Store, pod: &Value, port: u16) -> Option<Arc<dyn Process>> {
        (head_dashboard_port(pod) == Some(port)).then(|| self.forward.clone() as Arc<dyn Process>)
    }
}

struct Forward {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
}

impl Process for Forward {
    fn call(&self, request: Request) -> Answer {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", self.base);
        let (parts, body) = request.into_parts();
        let mut outgoing = http::Request::new(http_body_util::Full::new(body));
        *outgoing.method_mut() = parts.method;
        *outgoing.headers_mut() = parts.headers;
        outgoing.headers_mut().remove(header::HOST);
        let client = self.client.clone();
        Box::pin(async move {
            let failed = |why: String| text_response(StatusCode::BAD_GATEWAY, &format!("error reaching {url}: {why}"));
            let Ok(uri) = url.parse::<http::Uri>() else { return failed("not a URL".to_string()) };
            *outgoing.uri_mut() = uri;
            match client.request(outgoing).await {
                Ok(answer) => {
                    let (parts, body) = answer.into_parts();
                    match http_body_util::BodyExt::collect(body).await {
                        Ok(collected) => http::Response::from_parts(parts, collected.to_bytes()),
                        Err(e) => failed(e.to_string()),
                    }
                }
                Err(e) => failed(e.to_string()),
            }
        })
    }

    /// Opens the same websocket on the real head (without compression, which tungstenite does not offer) and passes
    /// its text frames on; whatever ends it there ends it here with a normal close.
    fn websocket(&self, request: Request) -> WebSocketAnswer {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        // http://… becomes ws://…, https://… wss://…
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        Box::pin(async move {
            use tokio_tungstenite::tungstenite::{Error, Message};
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((socket, answer)) => {
                    let texts = socket
                        .scan((), |(), received| {
                            std::future::ready(match received {
                                Ok(Message::Close(_)) | Err(_) => None,
                                Ok(Message::Text(text)) => Some(Some(text.to_string())),
                                Ok(_) => Some(None),
                            })
                        })
                        .filter_map(std::future::ready);
                    let mut accepted = http::Response::new(texts.boxed());
                    if let Some(server) = answer.headers().get(header::SERVER) {
                        accepted.headers_mut().insert(header::SERVER, server.clone());
                    }
                    Ok(accepted)
                }
                Err(Error::Http(refused)) => {
                    let (parts, body) = refused.into_parts();
                    Err(http::Response::from_parts(parts, Bytes::from(body.unwrap_or_default())))
                }
                Err(e) => Err(text_response(StatusCode::BAD_GATEWAY, &format!("error reaching {url}: {e}"))),
            }
        })
    }
}

/// The dashboard-timeout fault of one dashboard.
struct Hangs {
    probability: f64,
    hang: Duration,
    dice: Mutex<Dice>,
}

/// One head's dashboard.
pub struct Dashboard {
    clock: Arc<dyn Clock>,
    hangs: Hangs,
    head_ip: String,
    node_id: String,
    session_name: String,
    /// Shared with the log tails.
    state: Arc<Mutex<State>>,
}

struct State {
    /// By submission id, in submission order.
    jobs: Vec<Job>,
    serve: Option<Serve>,
    rng: Rng,
}

impl Process for Dashboard {
    fn call(&self, request: Request) -> Answer {
        let response = self.handle(&request);
        let hangs = self.hangs.dice.lock().unwrap_or_else(PoisonError::into_inner).chance(self.hangs.probability);
        let hang = self.hangs.hang;
        Box::pin(async move {
            if hangs {
                tokio::time::sleep(hang).await;
            }
            response
        })
    }

    /// The log tail of a known job; the plain answer to anything else.
    fn websocket(&self, request: Request) -> WebSocketAnswer {
        let segments: Vec<&str> = request.uri().path().split('/').filter(|s| !s.is_empty()).collect();
        let known = |id: &str| {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.jobs.iter().any(|job| job.submission_id == id)
        };
        let answer = match (request.method(), segments.as_slice()) {
            (&Method::GET, ["api", "jobs", id, "logs", "tail"]) if known(id) => {
                let mut accepted = http::Response::new(self.tail(id));
                accepted
                    .headers_mut()
                    .insert(header::SERVER, header::HeaderValue::from_static("Python/3.11 aiohttp/3.14.5"));
                Ok(accepted)
            }
            _ => Err(self.handle(&request)),
        };
        Box::pin(async move { answer })
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    response(status, "application/json; charset=utf-8", serde_json::to_vec(body).unwrap_or_default())
}

fn text_response(status: StatusCode, body: &str) -> Response {
    response(status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = http::Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::SERVER, header::HeaderValue::from_static("Python/3.11 aiohttp/3.14.5"));
    response
}

fn not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, "404: Not Found")
}

fn epoch_millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

fn after(time: Timestamp, seconds: f64) -> Timestamp {
    time.checked_add(SignedDuration::from_secs_f64(seconds)).unwrap_or(time)
}

impl Dashboard {
    fn new(clock: Arc<dyn Clock>, pod: &Value, seed: u64, hangs: Hangs) -> Dashboard {
        let started = clock.now();
        let node_id: String = Sha1::digest(text(pod, "/metadata/uid").as_bytes())
            .iter()
            .chain(Sha1::digest(text(pod, "/metadata/name").as_bytes()).iter())
            .take(28)
            .map(|b| format!("{b:02x}"))
            .collect();
        Dashboard {
            head_ip: text(pod, "/status/podIP").to_string(),
            node_id,
            session_name: format!("session_{}_{}", started.strftime("%Y-%m-%d_%H-%M-%S_%6f"), seed % 100_000),
            clock,
            hangs,
            state: Arc::new(Mutex::new(State { jobs: Vec::new(), serve: None, rng: Rng::seeded(seed) })),
        }
    }

    fn handle(&self, request: &Request) -> Response {
        let path = request.uri().path();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match (request.method(), segments.as_slice()) {
            (&Method::GET, ["api", "version"]) => json_response(
                StatusCode::OK,
                &json!({"version": "4", "ray_version": RAY_VERSION, "ray_commit": RAY_COMMIT, "session_name": self.session_name}),
            ),
            (&Method::GET, ["api", "gcs_healthz"]) => text_response(StatusCode::OK, "success"),
            (&Method::POST, ["api", "jobs"]) => self.submit(&mut state, request, now),
            (&Method::GET, ["api", "jobs"]) => {
                let jobs: Vec<Value> = state.jobs.iter().map(|job| self.info(job, now)).collect();
                json_response(StatusCode::OK, &Value::Array(jobs))
            }
            (method, ["api", "jobs", id, rest @ ..]) => {
                let Some(index) = state.jobs.iter().position(|job| job.submission_id == *id) else {
                    return if matches!(rest, [] | ["logs"] | ["logs", "tail"] | ["stop"]) {
                        text_response(StatusCode::NOT_FOUND, &format!("Job {id} does not exist"))
                    } else {
                        not_found()
                    };
                };
                match (method, rest) {
                    (&Method::GET, []) => json_response(StatusCode::OK, &self.info(&state.jobs[index], now)),
                    (&Method::GET, ["logs"]) => {
                        json_response(StatusCode::OK, &json!({"logs": state.jobs[index].logs(now)}))
                    }
                    (&Method::GET, ["logs", "tail"]) => {
                        let upgrade = request.headers().get(header::UPGRADE).and_then(|u| u.to_str().ok());
                        text_response(
                            StatusCode::BAD_REQUEST,
                            &format!(
                                "No WebSocket UPGRADE hdr: {}\n Can \"Upgrade\" only to \"WebSocket\".",
                                upgrade.unwrap_or("None")
                            ),
                        )
                    }
                    (&Method::POST, ["stop"]) => {
                        let job = &mut state.jobs[index];
                        let stopped = !job.status(now).is_terminal();
                        if stopped {
                            job.stopped_at = Some(now);
                        }
                        json_response(StatusCode::OK, &json!({"stopped": stopped}))
                    }
                    (&Method::DELETE, []) => {
                        let status = state.jobs[index].status(now);
                        if !status.is_terminal() {
                            return text_response(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                &traceback(&format!(
                                    "RuntimeError: Attempted to delete job '{id}', but it is in a non-terminal state {}.",
                                    status.name()
                                )),
                            );
                        }
                        state.jobs.remove(index);
                        json_response(StatusCode::OK, &json!({"deleted": true}))
                    }
                    _ => not_found(),
                }
            }
            (&Method::GET, ["api", "serve", "applications"]) => {
                json_response(StatusCode::OK, &self.serve_status(state.serve.as_ref(), now))
            }
            (&Method::PUT, ["api", "serve", "applications"]) => match parse_serve_config(request.body()) {
                Ok(config) => {
                    let serve = state.serve.get_or_insert_with(Serve::default);
                    serve.deploy(config, now);
                    response(StatusCode::OK, "application/json; charset=utf-8", Vec::new())
                }
                Err((status, text)) => text_response(status, &text),
            },
            (&Method::DELETE, ["api", "serve", "applications"]) => {
                state.serve = None;
                response(StatusCode::OK, "application/json; charset=utf-8", Vec::new())
            }
            _ => not_found(),
        }
    }

    /// The frames of job `job_id`'s log tail (module docs), from now; the stream ends where the server closes.
    pub fn tail(&self, job_id: &str) -> Messages {
        let tailing =
            Tailing { clock: self.clock.clone(), state: self.state.clone(), job_id: job_id.to_string(), sent: None };
        futures::stream::unfold(tailing, Tailing::next_frame).boxed()
    }

    fn submit(&self, state: &mut State, request: &Request, now: Timestamp) -> Response {
        if request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|u| u.to_str().ok())
            .is_some_and(|u| u.starts_with("Mozilla"))
        {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "'POST' method not allowed for browser traffic.");
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(request.body()) else {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n\nServer got itself in trouble",
            );
        };
        const FIELDS: [&str; 9] = [
            "entrypoint",
            "submission_id",
            "job_id",
            "runtime_env",
            "metadata",
            "entrypoint_num_cpus",
            "entrypoint_num_gpus",
            "entrypoint_memory",
            "entrypoint_resources",
        ];
        if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return text_response(
                StatusCode::BAD_REQUEST,
                &traceback(&format!(
                    "TypeError: JobSubmitRequest.__init__() got an unexpected keyword argument '{unknown}'"
                )),
            );
        }
        let Some(entrypoint) = body.get("entrypoint").and_then(Value::as_str) else {
            return text_response(
                StatusCode::BAD_REQUEST,
                &traceback(
                    "TypeError: JobSubmitRequest.__init__() missing 1 required positional argument: 'entrypoint'",
                ),
            );
        };
        let submission_id = match body.get("submission_id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
            Some(id) => id.to_string(),
            None => format!("raysubmit_{}", state.rng.alphanumeric(16)),
        };
        if state.jobs.iter().any(|job| job.submission_id == submission_id) {
            return text_response(StatusCode::INTERNAL_SERVER_ERROR, &duplicate_traceback(&submission_id));
        }
        state.jobs.push(Job {
            submission_id: submission_id.clone(),
            entrypoint: entrypoint.to_string(),
            script: Script::of(entrypoint),
            submitted: now,
            stopped_at: None,
            metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
            runtime_env: body.get("runtime_env").cloned().unwrap_or(Value::Null),
        });
        json_response(StatusCode::OK, &json!({"job_id": submission_id, "submission_id": submission_id}))
    }

    fn info(&self, job: &Job, now: Timestamp) -> Value {
        let status = job.status(now);
        let started = job.started(now);
        let message = match status {
            JobStatus::Pending => "Job has not started yet.".to_string(),
            JobStatus::Running => "Job is currently running.".to_string(),
            JobStatus::Succeeded => "Job finished successfully.".to_string(),
            JobStatus::Stopped => "Job was intentionally stopped.".to_string(),
            JobStatus::Failed => format!(
                "Job entrypoint command failed with exit code {}, last available logs (truncated to 20,000 chars):\n{}",
                job.script.exit_code,
                job.logs(now)
            ),
        };
        let exit_code = match status {
            JobStatus::Succeeded | JobStatus::Failed => json!(job.script.exit_code),
            _ => Value::Null,
        };
        json!({
            "type": "SUBMISSION",
            "job_id": null,
            "submission_id": job.submission_id,
            "driver_info": null,
            "status": status.name(),
            "entrypoint": job.entrypoint,
            "message": message,
            "error_type": if status == JobStatus::Failed { json!("JOB_ENTRYPOINT_COMMAND_ERROR") } else { Value::Null },
            "start_time": epoch_millis(job.submitted),
            "end_time": job.ended(now).map(epoch_millis),
            "metadata": job.metadata,
            "runtime_env": job.runtime_env,
            "driver_agent_http_address": started.then(|| format!("http://{}:{DASHBOARD_AGENT_PORT}", self.head_ip)),
            "driver_node_id": started.then(|| self.node_id.clone()),
            "driver_exit_code": exit_code,
        })
    }

    fn serve_status(&self, serve: Option<&Serve>, now: Timestamp) -> Value {
        let Some(serve) = serve.filter(|s| !s.applications.is_empty()) else {
            return json!({"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": null});
        };
        let actor = |name: &str| json!({"node_id": self.node_id, "node_ip": self.head_ip, "node_instance_id": "", "actor_name": name});
        let mut proxy = actor(&format!("SERVE_PROXY_ACTOR-{}", self.node_id));
        proxy["status"] = json!("HEALTHY");
        let applications: Map<String, Value> =
            serve.applications.iter().map(|(name, app)| (name.clone(), self.application(name, app, now))).collect();
        json!({
            "controller_info": actor("SERVE_CONTROLLER_ACTOR"),
            "proxy_location": serve.proxy_location,
            "http_options": serve.http_options,
            "grpc_options": {"port": 9000, "grpc_servicer_functions": []},
            "proxies": {self.node_id.clone(): proxy},
            "applications": applications,
            "target_capacity": null,
        })
    }

    fn application(&self, name: &str, app: &Application, now: Timestamp) -> Value {
        let status = app.status(now);
        let config = &app.config;
        let mut document = json!({
            "name": name,
            "route_prefix": config.get("route_prefix").cloned().unwrap_or(json!("/")),
            "docs_path": null,
            "status": status,
            "message": "",
            "last_deployed_time_s": app.deployed.as_millisecond() as f64 / 1000.0,
            "deployed_app_config": config,
            "source": "declarative",
            "deployments": {},
            "external_scaler_enabled": false,
            "deployment_topology": null,
        });
        if status == "DEPLOY_FAILED" {
            document["route_prefix"] = Value::Null;
            document["message"] = json!(format!(
                "Deploying app '{name}' failed with exception:\nTraceback (most recent call last):\n  File \"/serve/_private/application_state.py\", line 1190, in build_serve_application\n    app = call_user_app_builder_with_args_if_necessary(import_attr(import_path), args)\nModuleNotFoundError: No module named '{}'",
                app.module()
            ));
            return document;
        }
        let running = status == "RUNNING";
        let deployments: Map<String, Value> = app
            .deployments()
            .into_iter()
            .map(|(deployment, replicas)| {
                let replica_list: Vec<Value> = (0..if running { replicas } else { 0 })
                    .map(|index| {
                        json!({"node_id": self.node_id, "node_ip": self.head_ip, "replica_id": format!("{deployment}{index}"),
                               "actor_name": format!("SERVE_REPLICA::{name}#{deployment}#{index}"), "state": "RUNNING"})
                    })
                    .collect();
                let value = json!({
                    "name": deployment,
                    "status": if running { "HEALTHY" } else { "UPDATING" },
                    "status_trigger": if running { "CONFIG_UPDATE_COMPLETED" } else { "CONFIG_UPDATE_STARTED" },
                    "message": "",
                    "deployment_config": {"name": deployment, "num_replicas": replicas},
                    "target_num_replicas": replicas,
                    "required_resources": {},
                    "replicas": replica_list,
                    "recent_dead_replicas": [],
                });
                (deployment, value)
            })
            .collect();
        let ingress = deployments.keys().next().cloned().unwrap_or_default();
        let nodes: Map<String, Value> = deployments
            .keys()
            .map(|d| {
                (
                    d.clone(),
                    json!({"name": d, "app_name": name, "outbound_deployments": [], "is_ingress": *d == ingress}),
                )
            })
            .collect();
        document["deployments"] = Value::Object(deployments);
        document["deployment_topology"] = json!({"app_name": name, "nodes": nodes, "ingress_deployment": ingress});
        document
    }
}

/// One job's log tail between frames.
struct Tailing {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
    job_id: String,
    /// How much of the log was sent; `None` until the job is seen started.
    sent: Option<usize>,
}

impl Tailing {
    /// `look` at the job now; `None` when it is gone.
    fn look<R>(&self, look: impl FnOnce(&Job, Timestamp) -> R) -> Option<R> {
        let now = self.clock.now();
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.jobs.iter().find(|job| job.submission_id == self.job_id).map(|job| look(job, now))
    }

    async fn next_frame(mut self) -> Option<(String, Tailing)> {
        while self.sent.is_none() {
            let (started, terminal) = self.look(|job, now| (job.started(now), job.status(now).is_terminal()))?;
            if terminal && !started {
                return None;
            }
            tokio::time::sleep(TAIL_INTERVAL).await;
            if started {
                self.sent = Some(0);
            }
        }
        let close_delay = TAIL_CLOSE_DELAY.as_secs_f64();
        loop {
            let sent = self.sent.unwrap_or_default();
            let (logs, closing) = self.look(|job, now| {
                let closing = job.ended(now).is_some_and(|end| after(end, close_delay) <= now);
                (job.logs(now), closing)
            })?;
            if let Some(new) = logs.get(sent..).filter(|new| !new.is_empty()) {
                let frame = new.to_string();
                self.sent = Some(logs.len());
                return Some((frame, self));
            }
            if closing {
                return None;
            }
            tokio::time::sleep(TAIL_INTERVAL).await;
        }
    }
}

/// A Python traceback as the dashboard answers errors, ending with `last`.
fn traceback(last: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 419, in submit_job\n    resp = await job_agent_client.submit_job_internal(submit_request)\n{last}\n"
    )
}

/// The answer to a duplicate `submission_id`: the agent's 400, wrapped by the head in a 500.
fn duplicate_traceback(submission_id: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 419, in submit_job\n    resp = await job_agent_client.submit_job_internal(submit_request)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 148, in submit_job_internal\n    await self._raise_error(resp)\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 134, in _raise_error\n    raise RuntimeError(f\"Request failed with status code {{status}}: {{error_text}}.\")\nRuntimeError: Request failed with status code 400: Traceback (most recent call last):\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_agent.py\", line 45, in submit_job\n    submission_id = await self.get_job_manager().submit_job(\n                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_manager.py\", line 553, in submit_job\n    raise ValueError(\nValueError: Job with submission_id {submission_id} already exists. Please use a different submission_id.\n.\n"
    )
}

struct Job {
    submission_id: String,
    entrypoint: String,
    script: Script,
    submitted: Timestamp,
    stopped_at: Option<Timestamp>,
    metadata: Value,
    runtime_env: Value,
}

impl Job {
    fn start(&self) -> Timestamp {
        after(self.submitted, PENDING_SECONDS)
    }

    fn end(&self) -> Timestamp {
        after(self.start(), self.script.seconds)
    }

    /// When the job ended (was stopped, or its run ended) if it has by `now`.
    fn ended(&self, now: Timestamp) -> Option<Timestamp> {
        let end = self.stopped_at.map_or(self.end(), |stopped| stopped.min(self.end()));
        (end <= now).then_some(end)
    }

    /// Whether its supervisor started (it left PENDING before it was stopped) by `now`.
    fn started(&self, now: Timestamp) -> bool {
        let start = self.start();
        start <= now && self.stopped_at.is_none_or(|stopped| start <= stopped)
    }

    fn status(&self, now: Timestamp) -> JobStatus {
        match self.stopped_at {
            Some(stopped) if stopped <= now && stopped < self.end() => JobStatus::Stopped,
            _ if now < self.start() => JobStatus::Pending,
            _ if now < self.end() => JobStatus::Running,
            _ if self.script.exit_code == 0 => JobStatus::Succeeded,
            _ => JobStatus::Failed,
        }
    }

    /// When the `index`th printed line is written.
    fn written(&self, index: usize) -> Timestamp {
        let share = (index + 1) as f64 / self.script.lines.len() as f64;
        after(self.start(), self.script.seconds * share)
    }

    fn logs(&self, now: Timestamp) -> String {
        if !self.started(now) {
            return String::new();
        }
        let until = self.stopped_at.map_or(now, |stopped| stopped.min(now));
        let time = self.start().strftime("%Y-%m-%d %H:%M:%S,%3f");
        let mut logs = format!(
            "{time}\tINFO job_manager.py:581 -- Runtime env is setting up.\nRunning entrypoint for job {}: {}\n",
            self.submission_id, self.entrypoint
        );
        for (index, line) in self.script.lines.iter().enumerate() {
            if self.written(index) > until {
                break;
            }
            logs.push_str(line);
            logs.push('\n');
        }
        logs
    }
}

/// What an entrypoint will do, read from its text (the rules of the module docs).
#[derive(Clone, Debug, PartialEq)]
struct Script {
    seconds: f64,
    exit_code: i64,
    lines: Vec<String>,
}

/// Whether `text[at..]` starts a word (nothing word-like, or only `allowed`, before it).
fn starts_word(text: &str, at: usize, allowed: char) -> bool {
    text[..at].chars().next_back().is_none_or(|c| c == allowed || !(c.is_alphanumeric() || c == '_'))
}

/// The number right after `rest` begins: `(N)` or spaces then `N`.
fn argument(rest: &str) -> Option<&str> {
    let inner = match rest.strip_prefix('(') {
        Some(call) => call.split(')').next()?.trim(),
        None if rest.starts_with(char::is_whitespace) => rest.trim_start(),
        None => return None,
    };
    let end = inner.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(inner.len());
    Some(&inner[..end]).filter(|n| !n.is_empty())
}

impl Script {
    fn of(entrypoint: &str) -> Script {
        let sleeps: Vec<f64> = entrypoint
            .match_indices("sleep")
            .filter(|(at, _)| starts_word(entrypoint, *at, '.'))
            .filter_map(|(at, word)| argument(&entrypoint[at + word.len()..])?.parse::<f64>().ok())
            .collect();
        let exit_code = entrypoint
            .match_indices("exit")
            .filter(|(at, _)| starts_word(entrypoint, *at, '.'))
            .filter(|(at, _)| !entrypoint[..*at].ends_with('.') || entrypoint[..*at].ends_with("sys."))
            .find_map(|(at, word)| argument(&entrypoint[at + word.len()..])?.parse::<i64>().ok())
            .unwrap_or(0);
        let mut lines = Vec::new();
        for (at, word) in entrypoint.match_indices("echo ") {
            if starts_word(entrypoint, at, ' ') {
                let rest = &entrypoint[at + word.len()..];
                let end = rest.find([';', '&', '|', '\n']).unwrap_or(rest.len());
                lines.push(rest[..end].trim().replace(['"', '\''], ""));
            }
        }
        for (at, word) in entrypoint.match_indices("print(") {
            let rest = entrypoint[at + word.len()..].trim_start_matches('\\');
            if let Some(quote) = rest.chars().next().filter(|q| matches!(q, '"' | '\''))
                && let Some(end) = rest[1..].find(quote)
            {
                lines.push(rest[1..=end].trim_end_matches('\\').to_string());
            }
        }
        if lines.is_empty() {
            lines = (1..=3).map(|step| format!("simulated step {step} of 3")).collect();
        }
        let seconds = if sleeps.is_empty() { DEFAULT_RUN_SECONDS } else { sleeps.iter().sum() };
        Script { seconds, exit_code, lines }
    }
}

/// The serve state of a head.
#[derive(Default)]
struct Serve {
    proxy_location: Value,
    http_options: Value,
    applications: BTreeMap<String, Application>,
}

struct Application {
    config: Value,
    deployed: Timestamp,
}

impl Application {
    fn module(&self) -> &str {
        let import_path = text(&self.config, "/import_path");
        import_path.split(':').next().unwrap_or(import_path).rsplit('.').next().unwrap_or_default()
    }

    fn status(&self, now: Timestamp) -> &'static str {
        let settled = after(self.deployed, DEPLOY_SECONDS) <= now;
        match (settled, self.module() == "does_not_exist") {
            (false, _) => "DEPLOYING",
            (true, true) => "DEPLOY_FAILED",
            (true, false) => "RUNNING",
        }
    }

    /// The deployments and their replica counts: those of the config, or one named after the import path's
    /// attribute.
    fn deployments(&self) -> Vec<(String, u64)> {
        let listed: Vec<(String, u64)> = self
            .config
            .get("deployments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| (text(d, "/name").to_string(), d.get("num_replicas").and_then(Value::as_u64).unwrap_or(1)))
            .collect();
        if !listed.is_empty() {
            return listed;
        }
        let attribute = text(&self.config, "/import_path").rsplit([':', '.']).next().unwrap_or("app");
        vec![(attribute.to_string(), 1)]
    }
}

impl Serve {
    fn deploy(&mut self, config: Value, now: Timestamp) {
        self.proxy_location = config.get("proxy_location").cloned().unwrap_or(json!("EveryNode"));
        self.http_options = config.get("http_options").cloned().unwrap_or(json!({"host": "0.0.0.0", "port": 8000}));
        let mut applications = BTreeMap::new();
        for app in config.get("applications").and_then(Value::as_array).into_iter().flatten() {
            let name = app.get("name").and_then(Value::as_str).unwrap_or("default").to_string();
            let deployed = match self.applications.remove(&name) {
                Some(existing) if existing.config == *app => existing.deployed,
                _ => now,
            };
            applications.insert(name, Application { config: app.clone(), deployed });
        }
        self.applications = applications;
    }
}

/// A serve config, or the status and text a real head answers to it (400 for a config that does not validate).
fn parse_serve_config(body: &[u8]) -> Result<Value, (StatusCode, String)> {
    let Ok(config) = serde_json::from_slice::<Value>(body) else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n\nServer got itself in trouble".to_string(),
        ));
    };
    for (index, app) in config.get("applications").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if app.get("import_path").and_then(Value::as_str).is_none() {
            let input = serde_json::to_string(app).unwrap_or_default();
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "1 validation error for ServeDeploySchema\napplications.{index}.import_path\n  Field required [type=missing, input_value={input}, input_type=dict]"
                ),
            ));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::default("python script.py", DEFAULT_RUN_SECONDS, 0, &["simulated step 1 of 3", "simulated step 2 of 3", "simulated step 3 of 3"])]
    #[case::shell_sleep("sleep 7 && echo done", 7.0, 0, &["done"])]
    #[case::python_sleep("python -c \"import time; time.sleep(0.5); print('hi')\"", 0.5, 0, &["hi"])]
    #[case::sleeps_add_up("sleep 1; sleep 2.5", 3.5, 0, &["simulated step 1 of 3", "simulated step 2 of 3", "simulated step 3 of 3"])]
    #[case::shell_exit("echo failing; exit 1", DEFAULT_RUN_SECONDS, 1, &["failing"])]
    #[case::python_exit("python -c \"import sys; print(\\\"about to fail\\\"); sys.exit(1)\"", DEFAULT_RUN_SECONDS, 1, &["about to fail"])]
    #[case::exit_code("exit 3", DEFAULT_RUN_SECONDS, 3, &["simulated step 1 of 3", "simulated step 2 of 3", "simulated step 3 of 3"])]
    #[case::exit_zero("echo ok; exit 0", DEFAULT_RUN_SECONDS, 0, &["ok"])]
    #[case::not_words("python nosleep.py --exitcode 4 --os.exit(2)", DEFAULT_RUN_SECONDS, 0, &["simulated step 1 of 3", "simulated step 2 of 3", "simulated step 3 of 3"])]
    fn entrypoints_script_their_jobs(
        #[case] entrypoint: &str,
        #[case] seconds: f64,
        #[case] exit_code: i64,
        #[case] lines: &[&str],
    ) {
        let lines = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(Script::of(entrypoint), Script { seconds, exit_code, lines });
    }

    fn head(phase: &str, ports: Value) -> Value {
        json!({
            "metadata": {"name": "c-head-x", "uid": "u1", "labels": {"ray.io/node-type": "head", "ray.io/cluster": "c"}},
            "spec": {"containers": [{"name": "ray-head", "ports": ports}]},
            "status": {"phase": phase, "podIP": "10.244.0.7"},
        })
    }

    #[rstest]
    #[case::default_port(head("Running", json!([])), Some(8265))]
    #[case::named_port(head("Running", json!([{"name": "dashboard", "containerPort": 9000}])), Some(9000))]
    #[case::not_running(head("Pending", json!([])), None)]
    #[case::worker(json!({"metadata": {"labels": {"ray.io/node-type": "worker", "ray.io/cluster": "c"}}, "status": {"phase": "Running"}}), None)]
    fn dashboards_listen_on_running_heads(#[case] pod: Value, #[case] port: Option<u16>) {
        assert_eq!(head_dashboard_port(&pod), port);
    }

    #[test]
    fn a_job_goes_pending_running_then_ends() {
        let job = Job {
            submission_id: "j".into(),
            entrypoint: "sleep 4; exit 2".into(),
            script: Script::of("sleep 4; exit 2"),
            submitted: "2025-01-01T00:00:00Z".parse().unwrap(),
            stopped_at: None,
            metadata: Value::Null,
            runtime_env: Value::Null,
        };
        let at = |seconds: f64| after(job.submitted, seconds);
        let statuses: Vec<JobStatus> = [0.5, 1.0, 4.9, 5.0].iter().map(|s| job.status(at(*s))).collect();
        assert_eq!(statuses, [JobStatus::Pending, JobStatus::Running, JobStatus::Running, JobStatus::Failed]);
        assert_eq!(job.logs(at(0.5)), "");
        let opening = "2025-01-01 00:00:01,000\tINFO job_manager.py:581 -- Runtime env is setting up.\nRunning entrypoint for job j: sleep 4; exit 2\n";
        assert_eq!(job.logs(at(2.0)), opening);
        assert_eq!(job.logs(at(4.0)), format!("{opening}simulated step 1 of 3\nsimulated step 2 of 3\n"));
        assert_eq!(
            job.logs(at(5.0)),
            format!("{opening}simulated step 1 of 3\nsimulated step 2 of 3\nsimulated step 3 of 3\n")
        );
        assert_eq!((job.ended(at(4.0)), job.ended(at(6.0))), (None, Some(at(5.0))));
        let (three, six) = (at(3.0), at(6.0));
        let mut stopped = job;
        stopped.stopped_at = Some(three);
        assert_eq!(stopped.logs(six), format!("{opening}simulated step 1 of 3\n"));
    }
}
