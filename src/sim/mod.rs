//! The simulated cluster: a Kubernetes API server in-process, faithful enough that the operator reaches it through
//! `kube::Client` and `kube::runtime::watcher` exactly as it reaches a real cluster (`../shared/DESIGN.md`, "The
//! simulated cluster").
//!
//! [`Sim::run_controllers`] adds what a cluster runs besides the API server: a kubelet, the Endpoints controller
//! and the Job controller ([`controllers`]), and the RayJob submitters the kubelet starts — a K8sJobMode submitter
//! Job's Pod, a SidecarMode head's `ray-job-submitter` container — whose dedup command is played against the
//! dashboard ([`submitter`]; with a real Ray head, run as a local process with the real `ray` CLI). Every running Ray head Pod has a simulated Ray dashboard
//! ([`dashboard`]; or, with [`RayDashboard::Real`], a real one), reached through `services/proxy` or, in-process,
//! through [`Sim::send`] at the address a real cluster gives it (`<svc>.<ns>.svc.cluster.local:8265`). A job's
//! log tail websocket (`/api/jobs/ID/logs/tail`) is served over TCP through `services/proxy`, as a real API server
//! proxies upgrades, and in-process by [`Sim::tail`], which hands over the frames themselves (no handshake, no
//! compression to get wrong).
//!
//! Two transports serve the same server: [`Sim::service`] is a `tower::Service` that `kube::Client::new` accepts
//! (one process holds both sides, and tokio's paused time drives both), and [`Sim::serve`] speaks plain HTTP/1.1
//! on a TCP listener (`kuberay sim serve`, for kubectl and for an operator in another process).
//!
//! # What it does as the API server does
//! - One global resourceVersion counter; every write takes the next number. `uid`, `creationTimestamp`,
//!   `generation` (bumped on changes outside metadata, and outside status where the kind has a status subresource;
//!   kept only by the kinds whose strategy keeps it), `generateName` (five characters of the API server's alphabet).
//!   An update that changes nothing writes nothing and keeps the resourceVersion.
//! - Discovery (`/api`, `/apis`, `/api/v1`, `/apis/GROUP[/VERSION]`, `/version`), the built-in kinds listed in
//!   [`resources`], and every custom resource of a created CRD at each served version, cluster-scoped or
//!   namespaced, with `/status` when a served version declares it.
//! - list with label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`, `>`, `<`), field selectors
//!   (`metadata.name`, `metadata.namespace`, the fields each built-in kind supports, a CRD's `selectableFields`),
//!   `limit`/`continue`; built-in lists omit `apiVersion`/`kind` on items, custom resource lists keep them.
//! - watch from a resourceVersion (events after it), without one or from `0` (synthetic ADDED for the current
//!   state first), `sendInitialEvents` (ending with the `k8s.io/initial-events-end` BOOKMARK), BOOKMARKs every
//!   [`SimConfig::bookmark_interval`] with `allowWatchBookmarks`, `timeoutSeconds`. An object that starts or stops
//!   matching a filtered watch arrives as ADDED or DELETED. A resourceVersion older than the history a resource
//!   keeps is answered, as the API server answers it, with HTTP 200 and an ERROR event holding a `410 Expired`
//!   Status — also in the middle of a watch whose reader fell that far behind.
//! - create (409 AlreadyExists; 404 when the namespace does not exist; 403 while it terminates), update (409
//!   Conflict on a stale resourceVersion or uid; no create on update), the status subresource (`/status` changes
//!   only status; the main endpoint keeps the stored status, and a create starts from the kind's initial status),
//!   delete (with preconditions; `deletionTimestamp` while finalizers remain; the update that removes the last
//!   finalizer is the deletion; no new finalizers on an object being deleted), deletecollection.
//! - patches: JSON merge patch, JSON patch (a failed `test` is 422), strategic merge patch for built-in kinds (415
//!   for custom resources, as for real), server-side apply (see below).
//! - Garbage collection by ownerReferences (by uid, within the dependent's namespace or cluster-scoped): background
//!   (dependents deleted when their last owner is gone; dangling references dropped while another owner lives),
//!   foreground (`foregroundDeletion` finalizer, dependents deleted in the foreground, the owner removed once no
//!   dependent with `blockOwnerDeletion` is left), orphan (references removed). `batch/v1` Jobs orphan by default,
//!   as the API server keeps for compatibility. An object whose owners do not exist is collected.
//! - Namespaces (`default`, `kube-system`, `kube-public`, `kube-node-lease` from the start, with the `kubernetes`
//!   Service at 10.96.0.1) terminate by deleting their contents, held by `spec.finalizers: [kubernetes]` until
//!   empty. CRDs get the `customresourcecleanup.apiextensions.k8s.io` finalizer, are established at once, and on
//!   deletion remove their custom resources before they go.
//! - Custom resources are held to their CRD's structural schema ([`schema`]): unknown fields pruned (a `Warning`
//!   header each; 400 under `fieldValidation=Strict`), `default`s applied, then 422 Invalid with one cause per field.
//!   Approximation: built-in kinds keep every field they are sent, `fieldValidation=Strict` or not (the API server
//!   decodes them into their Go types, dropping or refusing unknown fields).
//! - `pods/NAME/log` (what the simulated kubelet wrote for each container, [`controllers::pod_log`]; with
//!   `follow=true` the answer streams each line as it is written and ends when the container terminates or its Pod
//!   is deleted) and `services/[SCHEME:]NAME[:PORT]/proxy/…`, forwarded to what listens behind that Service port
//!   ([`network`]).
//! - Errors are `Status` objects with the real codes, reasons, messages and details.
//!
//! # Faults
//! [`SimConfig::faults`] ([`faults`]) injects, seeded and deterministic: watch events lost, swapped or late (the
//! initial ADDED events of a watch excepted), watches cut with 410, clients' writes refused with 409/429/500 (the
//! controllers' own writes never are), and dashboards that answer late (the request takes effect; only the answer
//! waits).
//!
//! # Approximations
//! - Every write, and everything the garbage collector and the namespace and CRD controllers do in response, happens
//!   at once under one lock, with consecutive resourceVersions; in a real cluster the controllers act a moment
//!   later. Pods are deleted at once (the simulated kubelet honours no grace period).
//! - The watch history is bounded per resource ([`SimConfig::history_per_resource`] changes), like the watch
//!   cache; there is no etcd compaction beyond it. A list with `resourceVersionMatch=Exact` is served only when
//!   nothing in the resource changed since; otherwise it is 410. Continue pages show the current state under the
//!   first page's resourceVersion (the watch that follows catches up).
//! - Server-side apply is a pragmatic approximation of structured-merge-diff ([`patch::apply`]): applied fields merge
//!   with the strategic merge rules; only Apply managers own fields (creates, updates and patches record no
//!   managedFields entries); conflicts arise between Apply managers only.
//! - Strategic merge patch knows the merge keys of the fields the operator writes (containers, env, ports, volumes,
//!   volumeMounts, conditions, ownerReferences, finalizers …); any other list is replaced.
//! - Defaults are a subset ([`defaults`]): Services (type, ClusterIP, ports, node ports), Jobs (selector and labels,
//!   completions, parallelism, backoffLimit), Pods (restart and DNS policy, scheduler, image pull policy,
//!   termination message), Namespaces (the `kubernetes.io/metadata.name` label). No admission: no ServiceAccount
//!   or token injection, no quota, no RBAC (every request is allowed).
//! - Core Events and `events.k8s.io` Events are stored apart (the real server converts between them) and never
//!   expire. Custom resources served at several versions are stored once without conversion (as the `None`
//!   strategy does). `dryRun` is refused.
//! - Answers are JSON only: `Table` and `PartialObjectMetadata` renderings as asked ([`table`]), and 406 to a
//!   client that accepts protobuf alone. Protobuf request bodies are read for the kinds kubectl's typed clients
//!   create ([`protobuf`]). OpenAPI v3 only ([`openapi`]), no aggregated discovery (clients fall back to the
//!   per-group documents).

use crate::clock;
pub mod controllers;
pub mod dashboard;
pub mod defaults;
pub mod error;
pub mod faults;
mod http;
pub mod network;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod ray_transport;
pub mod resources;
mod rng;
pub mod schema;
pub mod selector;
pub mod store;
pub mod submitter;
pub mod table;
mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

pub use clock::{Clock, TokioClock, WallClock};
pub use controllers::ControllerConfig;
use controllers::Controllers;
use faults::Dice;
pub use faults::Faults;
pub use http::SimBody;
use store::Store;

/// How a simulated cluster behaves.
#[derive(Clone)]
pub struct SimConfig {
    /// Seeds uids and generated names: the same seed and the same requests name everything the same way.
    pub seed: u64,
    /// How many changes each resource keeps for watches; a watch from further back gets `410 Gone`.
    pub history_per_resource: usize,
    /// How often a watch that asked for them gets a BOOKMARK.
    pub bookmark_interval: Duration,
    pub clock: Arc<dyn Clock>,
    /// What listens on Pods' ports besides the Ray dashboards ([`network`]).
    pub processes: Vec<Arc<dyn network::Processes>>,
    /// Where each Ray head's dashboard is.
    pub ray_dashboard: RayDashboard,
    /// Faults to inject ([`faults`]); none by default.
    pub faults: Faults,
}

/// The dashboards of the Ray heads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RayDashboard {
    /// The simulated dashboard ([`dashboard`]).
    #[default]
    Simulated,
    /// A real Ray head's dashboard at this URL, for every head.
    Real(String),
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            history_per_resource: 1000,
            bookmark_interval: Duration::from_secs(60),
            clock: clock::wall(),
            processes: Vec::new(),
            ray_dashboard: RayDashboard::Simulated,
            faults: Faults::default(),
        }
    }
}

/// The state behind both transports.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The latest resourceVersion, for watches to wake on.
    changed: tokio::sync::watch::Sender<u64>,
    bookmark_interval: Duration,
    processes: Vec<Arc<dyn network::Processes>>,
    /// The real Ray head every dashboard is ([`RayDashboard::Real`]): submitters run their commands against it.
    real_dashboard: Option<String>,
    faults: Faults,
    /// Draws for the faults of writes, in the order writes arrive.
    write_dice: Mutex<Dice>,
    /// How many watches were opened: each draws its faults from its own rank's generator.
    watches: AtomicU64,
}

impl Shared {
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let (result, resource_version) = {
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut store);
            (result, store.resource_version())
        };
        self.changed.send_if_modified(|latest| {
            let moved = *latest != resource_version;
            *latest = resource_version;
            moved
        });
        result
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The fault injected into a client's write, if any.
    fn refuse_write(&self, resource: error::GroupResource, name: &str) -> Option<error::ApiError> {
        let mut dice = self.write_dice.lock().unwrap_or_else(PoisonError::into_inner);
        self.faults.refuse_write(&mut dice, resource, name)
    }

    /// What listens on a Pod's port.
    fn process(&self, target: &network::Target) -> Option<Arc<dyn network::Process>> {
        self.read(|store| self.processes.iter().find_map(|p| p.listening(store, &target.pod, target.port)))
    }

    /// What listens at `host:port` inside the cluster, as [`network::resolve`] finds it; from inside Pod `from`,
    /// `127.0.0.1` and `localhost` are that Pod. Errors are the API server proxy's (503 when nothing is there).
    fn connect(
        &self,
        authority: &str,
        from: Option<&controllers::Instance>,
    ) -> Result<Arc<dyn network::Process>, error::ApiError> {
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        let target = self.read(|store| match (host, from) {
            ("127.0.0.1" | "localhost", Some(pod)) => controllers::own_port(store, pod, authority),
            _ => network::resolve(store, authority),
        })?;
        self.process(&target).ok_or_else(|| network::connection_refused(&target))
    }
}

/// A simulated cluster. Cloning shares it.
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let dashboards: Arc<dyn network::Processes> = match &config.ray_dashboard {
            RayDashboard::Simulated => {
                Arc::new(dashboard::Dashboards::new(config.clock.clone(), config.seed, config.faults.clone()))
            }
            RayDashboard::Real(url) => Arc::new(dashboard::RealDashboards::new(url)),
        };
        let real_dashboard = match &config.ray_dashboard {
            RayDashboard::Simulated => None,
            RayDashboard::Real(url) => Some(url.clone()),
        };
        let mut processes = config.processes;
        processes.push(dashboards);
        let store = Store::new(config.seed, config.clock, config.history_per_resource);
        let (changed, _) = tokio::sync::watch::channel(store.resource_version());
        Sim {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                changed,
                bookmark_interval: config.bookmark_interval,
                processes,
                real_dashboard,
                write_dice: Mutex::new(config.faults.dice(faults::WRITES, 0)),
                faults: config.faults,
                watches: AtomicU64::new(0),
            }),
        }
    }

    /// The in-process transport.
    pub fn service(&self) -> SimService {
        SimService { shared: self.shared.clone() }
    }

    /// A client on the in-process transport, in namespace `default`. Needs a tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.service(), "default")
    }

    /// The resourceVersion of the latest write.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(Store::resource_version)
    }

    /// Sends an HTTP request to `host:port` inside the simulated cluster (`<svc>.<ns>.svc.cluster.local:8265`, a
    /// cluster IP, a Pod IP): the address resolver of an operator in the same process. Errors are the API server
    /// proxy's (503 when nothing is there).
    pub async fn send(&self, authority: &str, request: network::Request) -> Result<network::Response, error::ApiError> {
        Ok(self.shared.connect(authority, None)?.call(request).await)
    }

    /// Tails job `job_id`'s log on the Ray dashboard at `authority` (as for [`Sim::send`]), as its websocket
    /// `GET /api/jobs/ID/logs/tail` would: one item per text frame, at the times a real dashboard sends them
    /// ([`dashboard`]: the first holds the backlog; none while the job is PENDING), and the end of the stream where
    /// it closes with 1000 — about 3 s after the job ends, whatever the outcome, or at once when it ended before it
    /// started. Errors: the proxy's (503 when nothing is there), or the dashboard's refusal with its status and
    /// text (404 `Job ID does not exist`).
    pub async fn tail(&self, authority: &str, job_id: &str) -> Result<network::Messages, error::ApiError> {
        let process = self.shared.connect(authority, None)?;
        let request = ::http::Request::get(format!("/api/jobs/{job_id}/logs/tail"))
            .header(::http::header::UPGRADE, "websocket")
            .body(Bytes::new())
            .map_err(|e| error::ApiError::bad_request(format!("invalid job id {job_id:?}: {e}")))?;
        match process.websocket(request).await {
            Ok(accepted) => Ok(accepted.into_body()),
            Err(refused) => Err(error::ApiError {
                code: refused.status().as_u16(),
                reason: refused.status().canonical_reason().unwrap_or("Unknown"),
                message: String::from_utf8_lossy(refused.body()).into_owned(),
                details: None,
            }),
        }
    }

    /// Runs the kubelet, the Endpoints controller and the Job controller ([`controllers`]), and the RayJob
    /// submitters the kubelet starts ([`submitter`]), until the future is dropped. They pace themselves on tokio's
    /// clock, so paused time drives them.
    pub async fn run_controllers(&self, config: ControllerConfig) {
        let mut changed = self.shared.subscribe();
        let mut controllers = Controllers::new(config);
        // Dropped with this future: submitters end with the cluster (a real one's processes are killed).
        let mut submitters = tokio::task::JoinSet::new();
        loop {
            let launches = self.shared.write(|store| {
                controllers.step(store, tokio::time::Instant::now());
                controllers.take_launches()
            });
            for launch in launches {
                let real_dashboard = self.shared.real_dashboard.clone();
                let shared = self.shared.clone();
                submitters.spawn(submitter::run(
                    shared,
                    launch.pod,
                    launch.container,
                    launch.submitter,
                    real_dashboard,
                ));
            }
            let deadline = controllers.next_deadline();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = timer => {}
                Some(_) = submitters.join_next(), if !submitters.is_empty() => {}
            }
        }
    }

    /// Serves the API over HTTP/1.1 on `listener` until the task is dropped. Connections can be upgraded, for the
    /// websockets proxied by `services/proxy`.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let service = hyper_util::service::TowerToHyperService::new(self.service());
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades();
                // A client that goes away mid-request is no failure of the server.
                let _ = connection.await;
            });
        }
    }
}

/// The simulated API server as a `tower::Service`: what `kube::Client::new` takes.
#[derive(Clone)]
pub struct SimService {
    shared: Arc<Shared>,
}

impl<B> tower::Service<::http::Request<B>> for SimService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    type Response = ::http::Response<SimBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body: Bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let error = error::ApiError::bad_request(format!("reading the request body: {e}"));
                    return Ok(http::json_response(::http::StatusCode::BAD_REQUEST, &error.status()));
                }
            };
            Ok(http::handle(shared, parts, body).await)
        })
    }
}

/// A kubeconfig whose current context reaches a simulated cluster at `server` (`http://127.0.0.1:PORT`).
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kuberay-sim
  cluster:
    server: {server}
contexts:
- name: kuberay-sim
  context:
    cluster: kuberay-sim
    user: kuberay-sim
    namespace: default
current-context: kuberay-sim
users:
- name: kuberay-sim
  user: {{}}
preferences: {{}}
"
    )
}
