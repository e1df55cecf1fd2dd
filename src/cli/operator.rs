//! `kuberay run` (the operator against the cluster a kubeconfig or the in-cluster config reaches) and
//! `kuberay sim run` (the simulated cluster and the operator in one process, in simulated time).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use tokio::sync::{Notify, mpsc, watch};

use super::apply::{Applier, namespace_for_file};
use super::{EXIT_INVALID, EXIT_OK, EXIT_UNREADABLE};
use crate::clock::{Clock, TokioClock, WallClock};
use crate::config::{FeatureGates, OperatorConfig};
use crate::engine::Engine;
use crate::journal::Journal;
use crate::journal::Retention;
use crate::journal::store::SledOptions;
use crate::machine::MachineKind;
use crate::runtime::leader::LeaderElection;
use crate::runtime::metrics::Metrics;
use crate::runtime::watch::Namespaces;
use crate::runtime::{self, Dashboards, Reports, RuntimeConfig, Transition};

/// sled's page cache for the operator's journal: the journal is written far more than read, and the operator's
/// memory budget is small (KubeRay's chart: about 1 MiB per Ray Pod).
const JOURNAL_CACHE_BYTES: u64 = 8 << 20;

/// The operator's flags, as KubeRay's where they exist.
#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Namespaces to watch, comma-separated; every namespace when empty.
    #[arg(long, default_value = "")]
    pub watch_namespace: String,
    /// How many Ray objects are stepped at once.
    #[arg(long, default_value_t = 1)]
    pub reconcile_concurrency: usize,
    /// KubeRay's feature gates, e.g. `RayJobDeletionPolicy=true`.
    #[arg(long, default_value = "")]
    pub feature_gates: String,
    /// Reach Ray dashboards through the API server's `services/proxy` (used by the RayJob and RayService machines).
    #[arg(long)]
    pub use_kubernetes_proxy: bool,
    /// The journal's directory.
    #[arg(long, default_value = "./journal")]
    pub journal: PathBuf,
    /// How long the journal keeps an object's records once the object is gone (`24h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = super::sim::parse_duration)]
    pub journal_keep_gone: std::time::Duration,
    /// The most bytes of live journal data to keep; past it, the oldest records go first.
    #[arg(long, default_value_t = 1 << 30)]
    pub journal_max_bytes: u64,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to log, in tracing's target syntax (`info`, `warn,kuberay=debug`).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `kuberay run`'s flags beyond the operator's.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Elect a leader on a Lease; on by default inside a cluster, off outside one.
    #[arg(long)]
    pub enable_leader_election: Option<bool>,
    /// Where the Lease lives: the Pod's namespace in a cluster, `default` outside one.
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
}

/// `kuberay sim run`'s flags beyond the operator's.
#[derive(Args, Debug, Clone)]
pub struct SimRunArgs {
    /// Manifest files to apply once the operator runs (repeatable; each takes one or more files).
    #[arg(long, num_args = 1..)]
    pub apply: Vec<PathBuf>,
    /// Put each file's documents that name no namespace in a namespace named after the file.
    #[arg(long)]
    pub namespace_per_file: bool,
    /// Stop once every applied Ray object has settled, with one summary line each.
    #[arg(long)]
    pub until_settled: bool,
    /// With --until-settled: give up after this many wall-clock seconds, naming what is still pending (exit 1).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Simulated time is virtual (it jumps ahead when everything waits) by default with --until-settled, and the
    /// wall clock otherwise (someone is watching with kubectl).
    #[arg(long, value_enum)]
    pub clock: Option<ClockKind>,
    /// The API server's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where to write the kubeconfig that reaches the simulated cluster (default: `kubeconfig` in the journal's
    /// directory).
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClockKind {
    Virtual,
    Wall,
}

/// Installs the tracing subscriber (stderr), once per process.
fn init_logs(args: &OperatorArgs) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter: tracing_subscriber::filter::Targets =
        args.log_level.parse().map_err(|e| format!("--log-level {}: {e}", args.log_level))?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match args.log_format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init(),
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init()
        }
    };
    // A second run in one process (tests) keeps the first subscriber.
    drop(installed);
    Ok(())
}

impl OperatorArgs {
    /// How the runtime runs under these flags.
    fn runtime_config(
        &self,
        operator: OperatorConfig,
        clock: Arc<dyn Clock>,
        leader_election: Option<LeaderElection>,
        dashboards: Dashboards,
    ) -> RuntimeConfig {
        RuntimeConfig {
            operator,
            concurrency: self.reconcile_concurrency,
            namespaces: Namespaces::parse(&self.watch_namespace),
            clock,
            leader_election,
            dashboards,
            retention: Retention { gone_ttl: self.journal_keep_gone, max_bytes: Some(self.journal_max_bytes) },
        }
    }
}

fn operator_config(args: &OperatorArgs) -> Result<OperatorConfig, String> {
    let feature_gates = FeatureGates::parse(&args.feature_gates).map_err(|e| format!("--feature-gates: {e}"))?;
    Ok(OperatorConfig { feature_gates, ..OperatorConfig::from_env() })
}

fn open_engine(args: &OperatorArgs, config: &OperatorConfig, now: Time) -> std::io::Result<Engine> {
    let options = SledOptions { cache_bytes: JOURNAL_CACHE_BYTES, ..SledOptions::default() };
    let journal = Journal::open(&args.journal, &options)
        .map_err(|e| std::io::Error::other(format!("the journal in {}: {e}", args.journal.display())))?;
    Engine::start(journal, config, now).map_err(std::io::Error::other)
}

/// `kuberay run`: the operator against a real cluster, until SIGINT or SIGTERM.
pub fn run(args: OperatorArgs, cluster: ClusterArgs, err: &mut dyn Write) -> std::io::Result<i32> {
    init_logs(&args).map_err(std::io::Error::other)?;
    let config = operator_config(&args).map_err(std::io::Error::other)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(e) => {
                writeln!(err, "error: no cluster to reach: {e}")?;
                return Ok(EXIT_UNREADABLE);
            }
        };
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let election = cluster.enable_leader_election.unwrap_or(in_cluster).then(|| {
            let namespace = cluster.leader_election_namespace.clone().unwrap_or_else(|| pod_namespace(in_cluster));
            let identity = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("kuberay-{}", std::process::id()));
            LeaderElection::new(&namespace, &identity)
        });
        let clock: Arc<dyn Clock> = Arc::new(WallClock);
        let engine = open_engine(&args, &config, Time(clock.now()))?;
        let reports = reports(None);
        let listener = tokio::net::TcpListener::bind(cluster.metrics_addr).await?;
        tokio::spawn(crate::runtime::health::serve(listener, reports.metrics.clone(), reports.ready.subscribe()));
        let dashboards = if args.use_kubernetes_proxy {
            Dashboards::Proxy(client.clone())
        } else {
            Dashboards::http(crate::ray::Resolver::Identity).map_err(std::io::Error::other)?
        };
        let runtime_config = args.runtime_config(config, clock, election, dashboards);
        runtime::run(client, engine, runtime_config, reports, terminated()).await.map_err(std::io::Error::other)?;
        Ok(EXIT_OK)
    })
}

/// The Pod's namespace in a cluster (from its service account), `default` outside one.
fn pod_namespace(in_cluster: bool) -> String {
    const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    in_cluster
        .then(|| std::fs::read_to_string(NAMESPACE_FILE).ok())
        .flatten()
        .map(|namespace| namespace.trim().to_string())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn reports(transitions: Option<mpsc::UnboundedSender<Transition>>) -> Reports {
    let (ready, _) = watch::channel(false);
    Reports { metrics: Arc::new(Metrics::new()), transitions, ready: Arc::new(ready) }
}

/// Completes on SIGINT or SIGTERM.
async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The settled states of each machine: `--until-settled` stops once every applied object is in one.
fn settled(kind: MachineKind, state: &str) -> bool {
    match kind {
        MachineKind::RayCluster => matches!(state, "Provisioned" | "Suspended"),
        MachineKind::RayJob => matches!(state, "Complete" | "Failed"),
        MachineKind::RayService => false,
    }
}

/// `kuberay sim run`.
pub fn sim_run(
    args: OperatorArgs,
    sim_args: SimRunArgs,
    sim: &super::SimArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    init_logs(&args).map_err(std::io::Error::other)?;
    let config = operator_config(&args).map_err(std::io::Error::other)?;
    let mut files = Vec::new();
    for path in &sim_args.apply {
        match super::read_documents(path) {
            Ok(documents) => files.push((path.clone(), documents)),
            Err(message) => {
                writeln!(err, "error: {message}")?;
                return Ok(EXIT_UNREADABLE);
            }
        }
    }
    let clock_kind =
        sim_args.clock.unwrap_or(if sim_args.until_settled { ClockKind::Virtual } else { ClockKind::Wall });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(clock_kind == ClockKind::Virtual)
        .build()?;
    let timed_out = Arc::new(Notify::new());
    if sim_args.until_settled {
        // Wall-clock seconds, whatever simulated time does.
        let timed_out = timed_out.clone();
        let timeout = std::time::Duration::from_secs(sim_args.timeout);
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            timed_out.notify_one();
        });
    }
    runtime.block_on(async {
        let clock: Arc<dyn Clock> = match clock_kind {
            ClockKind::Virtual => Arc::new(TokioClock::starting_at(jiff::Timestamp::now())),
            ClockKind::Wall => Arc::new(WallClock),
        };
        let cluster = crate::sim::Sim::new(sim.sim_config(clock.clone()));
        let running = cluster.clone();
        let controllers = sim.controller_config();
        tokio::spawn(async move { running.run_controllers(controllers).await });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", sim_args.port)).await?;
        let server = format!("http://{}", listener.local_addr()?);
        let serving = cluster.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        std::fs::create_dir_all(&args.journal)?;
        let kubeconfig = sim_args.kubeconfig_out.clone().unwrap_or_else(|| args.journal.join("kubeconfig"));
        std::fs::write(&kubeconfig, crate::sim::kubeconfig(&server))?;
        writeln!(out, "# the simulated cluster serves {server}; kubectl --kubeconfig {}", kubeconfig.display())?;

        let client = cluster.client();
        let mut applier = Applier::new(client.clone());
        applier.crds().await.map_err(std::io::Error::other)?;
        let mut waiting: BTreeMap<String, Waiting> = BTreeMap::new();
        for (path, documents) in &files {
            let namespace = if sim_args.namespace_per_file { namespace_for_file(path) } else { "default".to_string() };
            for document in documents {
                let applied = match applier.apply(document, &namespace).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        writeln!(err, "error: {}: {e}", path.display())?;
                        return Ok(EXIT_INVALID);
                    }
                };
                let kind = MachineKind::ALL
                    .into_iter()
                    .find(|kind| applied.api_version.starts_with("ray.io/") && kind.resource_kind() == applied.kind);
                if let Some(kind) = kind.filter(|kind| crate::machine::machine_for(*kind, &config).is_some()) {
                    let namespace = applied.namespace.clone().unwrap_or_default();
                    let name = format!("{}/{namespace}/{}", kind.cli_name(), applied.name);
                    waiting.insert(name, Waiting { kind, namespace, name: applied.name, state: None });
                }
            }
        }

        let engine = open_engine(&args, &config, Time(clock.now()))?;
        let (transitions, mut transitions_out) = mpsc::unbounded_channel();
        let reports = reports(Some(transitions));
        let stop = Arc::new(Notify::new());
        let runtime_config = args.runtime_config(config, clock, None, crate::sim::ray_transport::dashboards(&cluster));
        let stopped = stop.clone();
        let operator = tokio::spawn(runtime::run(client.clone(), engine, runtime_config, reports, async move {
            tokio::select! {
                () = stopped.notified() => {}
                () = terminated() => {}
            }
        }));
        let mut code = EXIT_OK;
        loop {
            tokio::select! {
                transition = transitions_out.recv() => {
                    let Some(transition) = transition else { break };
                    writeln!(out, "{transition}")?;
                    if let Some(object) = waiting.get_mut(&transition.object.to_string()) {
                        object.state = Some(transition.to.clone());
                    }
                    if sim_args.until_settled && waiting.values().all(Waiting::settled) {
                        break;
                    }
                }
                () = timed_out.notified() => {
                    let pending: Vec<String> = waiting
                        .iter()
                        .filter(|(_, object)| !object.settled())
                        .map(|(name, object)| format!("{name} ({})", object.state.as_deref().unwrap_or("not stepped")))
                        .collect();
                    writeln!(err, "timed out after {} s; still pending: {}", sim_args.timeout, pending.join(", "))?;
                    code = EXIT_INVALID;
                    break;
                }
            }
        }
        stop.notify_one();
        match operator.await {
            Ok(Ok(_engine)) => {}
            Ok(Err(e)) => writeln!(err, "error: {e}")?,
            Err(e) => writeln!(err, "error: the operator failed: {e}")?,
        }
        if code == EXIT_OK && sim_args.until_settled {
            for (name, object) in &waiting {
                let conditions = conditions(&client, object).await;
                writeln!(out, "{name} {} {conditions}", object.state.as_deref().unwrap_or_default())?;
            }
        }
        Ok(code)
    })
}

/// An applied Ray object `--until-settled` waits for.
struct Waiting {
    kind: MachineKind,
    namespace: String,
    name: String,
    state: Option<String>,
}

impl Waiting {
    fn settled(&self) -> bool {
        self.state.as_deref().is_some_and(|state| settled(self.kind, state))
    }
}

/// An object's conditions as `Type=Status` words (a RayJob's `jobStatus` and `reason` likewise), read from the API
/// server.
async fn conditions(client: &kube::Client, object: &Waiting) -> String {
    let kind = object.kind.resource_kind();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("ray.io", "v1", kind));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &object.namespace, &resource);
    let Ok(found) = api.get(&object.name).await else { return "(gone)".to_string() };
    let status = &found.data["status"];
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let mut words: Vec<String> = conditions
        .iter()
        .map(|c| format!("{}={}", c["type"].as_str().unwrap_or_default(), c["status"].as_str().unwrap_or_default()))
        .collect();
    for field in ["jobStatus", "reason"] {
        if let Some(value) = status[field].as_str().filter(|value| !value.is_empty()) {
            words.push(format!("{field}={value}"));
        }
    }
    words.join(" ")
}
