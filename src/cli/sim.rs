//! The knobs of the simulated cluster, shared by every command that runs one (`sim serve`), and `sim serve` itself.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::sim::selector::LabelSelector;
use crate::sim::{Clock, ControllerConfig, Faults, RayDashboard, Sim, SimConfig, WallClock};

use super::EXIT_OK;

/// How the simulated cluster behaves: its seed, how its kubelet paces and fails Pods, where the Ray dashboards
/// are, and which faults it injects. A command flattens it (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Seeds the uids, the generated names and which Pods fail at random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How long a new Pod takes to run (`2s`, `1m 30s`).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub pod_start_after: Duration,
    /// How long a running Pod takes to get Ready.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub pod_ready_after: Duration,
    /// How long a Pod whose restartPolicy is not Always runs before its containers exit.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub pod_run_for: Duration,
    /// The Pods this label selector matches fail (`ray.io/node-type=worker`).
    #[arg(long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub fail_pods: Option<LabelSelector>,
    /// The Pod of this name fails (repeatable).
    #[arg(long = "fail-pod", value_name = "NAME")]
    pub fail_pod_names: Vec<String>,
    /// The share of Pods that fail at random, from 0 to 1 (which ones follows from `--seed`).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub pod_failure_rate: f64,
    /// Send every Ray head's dashboard requests to this real dashboard (`http://127.0.0.1:8265`) instead of
    /// simulating one per head. RayJob submitters then run their command as a local process, with the real `ray`
    /// CLI found on PATH and the dashboard address rewritten to this URL.
    #[arg(long, value_name = "URL")]
    pub ray_dashboard: Option<String>,
    /// Seeds the injected faults (`--seed` when not given).
    #[arg(long, value_name = "N")]
    pub fault_seed: Option<u64>,
    /// The share of watch events lost.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub drop_watch_events: f64,
    /// The share of watch events sent after the next one.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub reorder_watch_events: f64,
    /// How late watch events are sent.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub delay_watch_events: Duration,
    /// Cut every watch with `410 Expired` after this many events.
    #[arg(long, value_name = "N")]
    pub expire_watches_after: Option<usize>,
    /// The share of clients' writes refused with 409 Conflict.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub conflict_writes: f64,
    /// The share of clients' writes refused with 429 TooManyRequests.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub throttle_writes: f64,
    /// The share of clients' writes refused with 500 InternalError.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_writes: f64,
    /// The share of Ray dashboard requests answered only after `--dashboard-hang`.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub dashboard_timeouts: f64,
    /// How long a dashboard request picked by `--dashboard-timeouts` waits for its answer.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = parse_duration)]
    pub dashboard_hang: Duration,
}

impl SimArgs {
    /// How the simulated kubelet paces and fails Pods.
    pub fn controller_config(&self) -> ControllerConfig {
        ControllerConfig {
            pod_start_delay: self.pod_start_after,
            pod_ready_delay: self.pod_ready_after,
            pod_run_duration: self.pod_run_for,
            failing_pods: self.fail_pods.clone().unwrap_or_default(),
            failing_pod_names: self.fail_pod_names.iter().cloned().collect::<BTreeSet<_>>(),
            failure_rate: self.pod_failure_rate,
            failure_seed: self.seed,
        }
    }

    /// The simulated cluster on `clock`.
    pub fn sim_config(&self, clock: Arc<dyn Clock>) -> SimConfig {
        SimConfig {
            seed: self.seed,
            clock,
            ray_dashboard: self.ray_dashboard.clone().map_or(RayDashboard::Simulated, RayDashboard::Real),
            faults: Faults {
                seed: self.fault_seed.unwrap_or(self.seed),
                drop_watch_events: self.drop_watch_events,
                reorder_watch_events: self.reorder_watch_events,
                delay_watch_events: self.delay_watch_events,
                expire_watches_after: self.expire_watches_after,
                conflict_writes: self.conflict_writes,
                throttle_writes: self.throttle_writes,
                fail_writes: self.fail_writes,
                dashboard_timeouts: self.dashboard_timeouts,
                dashboard_hang: self.dashboard_hang,
            },
            ..SimConfig::default()
        }
    }
}

/// A duration as jiff reads it: `2s`, `1m 30s`, `PT1.5S`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration: jiff::SignedDuration = text.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from(duration).map_err(|e| format!("{e}"))
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(fraction) if (0.0..=1.0).contains(&fraction) => Ok(fraction),
        _ => Err("must be a fraction from 0 to 1".to_string()),
    }
}

fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    LabelSelector::parse(text).map_err(|e| e.message)
}

/// `sim serve`: binds first, so that the printed address (and the kubeconfig) are ready before anything connects,
/// then serves in wall-clock time until interrupted.
pub(super) fn serve(
    port: u16,
    kubeconfig_out: Option<&Path>,
    args: &SimArgs,
    out: &mut dyn Write,
) -> std::io::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let server = format!("http://{}", listener.local_addr()?);
        if let Some(path) = kubeconfig_out {
            std::fs::write(path, crate::sim::kubeconfig(&server))?;
        }
        writeln!(out, "serving the simulated cluster on {server}")?;
        out.flush()?;
        let sim = Sim::new(args.sim_config(Arc::new(WallClock)));
        let running = sim.clone();
        let controllers = args.controller_config();
        tokio::spawn(async move { running.run_controllers(controllers).await });
        sim.serve(listener).await?;
        Ok(EXIT_OK)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use clap::error::ErrorKind;
    use rstest::rstest;

    use super::super::{Cli, Command, SimCommand};
    use super::*;

    fn parse(args: &[&str]) -> Result<SimArgs, clap::Error> {
        let cli = Cli::try_parse_from(["kuberay", "sim", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Sim { command: SimCommand::Serve { sim, .. } } => Ok(sim),
            other => panic!("expected sim serve, got {other:?}"),
        }
    }

    fn selector(text: &str) -> LabelSelector {
        LabelSelector::parse(text).unwrap()
    }

    fn kubelet(change: impl FnOnce(&mut ControllerConfig)) -> ControllerConfig {
        let mut config = ControllerConfig::default();
        change(&mut config);
        config
    }

    fn faults(change: impl FnOnce(&mut Faults)) -> Faults {
        let mut faults = Faults::default();
        change(&mut faults);
        faults
    }

    fn names(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn seconds(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }

    #[test]
    fn the_defaults_are_a_healthy_cluster_paced_as_the_simulation_paces_it() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.controller_config(), ControllerConfig::default());
        let config = args.sim_config(Arc::new(WallClock));
        assert_eq!((config.seed, config.ray_dashboard, config.faults), (0, RayDashboard::Simulated, Faults::default()));
    }

    #[rstest]
    #[case::seed_also_seeds_random_failures(&["--seed", "7"], kubelet(|c| c.failure_seed = 7))]
    #[case::pod_start_after(&["--pod-start-after", "3s"], kubelet(|c| c.pod_start_delay = seconds(3.0)))]
    #[case::pod_ready_after(&["--pod-ready-after", "1m 30s"], kubelet(|c| c.pod_ready_delay = seconds(90.0)))]
    #[case::pod_run_for(&["--pod-run-for", "1.5s"], kubelet(|c| c.pod_run_duration = seconds(1.5)))]
    #[case::fail_pods(&["--fail-pods", "app in (a,b)"], kubelet(|c| c.failing_pods = selector("app in (a,b)")))]
    #[case::fail_pod_twice(&["--fail-pod=b", "--fail-pod=a"], kubelet(|c| c.failing_pod_names = names(&["a", "b"])))]
    #[case::pod_failure_rate(&["--pod-failure-rate", "0.25"], kubelet(|c| c.failure_rate = 0.25))]
    fn each_kubelet_knob_sets_its_field(#[case] args: &[&str], #[case] expected: ControllerConfig) {
        assert_eq!(parse(args).unwrap().controller_config(), expected);
    }

    #[rstest]
    #[case::fault_seed(&["--fault-seed", "9"], faults(|f| f.seed = 9))]
    #[case::fault_seed_defaults_to_seed(&["--seed", "4"], faults(|f| f.seed = 4))]
    #[case::drop_watch_events(&["--drop-watch-events", "0.1"], faults(|f| f.drop_watch_events = 0.1))]
    #[case::reorder_watch_events(&["--reorder-watch-events", "1"], faults(|f| f.reorder_watch_events = 1.0))]
    #[case::delay_watch_events(&["--delay-watch-events", "250ms"], faults(|f| f.delay_watch_events = seconds(0.25)))]
    #[case::expire_watches_after(&["--expire-watches-after", "3"], faults(|f| f.expire_watches_after = Some(3)))]
    #[case::conflict_writes(&["--conflict-writes", "0.2"], faults(|f| f.conflict_writes = 0.2))]
    #[case::throttle_writes(&["--throttle-writes", "0.3"], faults(|f| f.throttle_writes = 0.3))]
    #[case::fail_writes(&["--fail-writes", "0.4"], faults(|f| f.fail_writes = 0.4))]
    #[case::dashboard_timeouts(&["--dashboard-timeouts", "0.5"], faults(|f| f.dashboard_timeouts = 0.5))]
    #[case::dashboard_hang(&["--dashboard-hang", "2m"], faults(|f| f.dashboard_hang = seconds(120.0)))]
    fn each_fault_knob_sets_its_field(#[case] args: &[&str], #[case] expected: Faults) {
        assert_eq!(parse(args).unwrap().sim_config(Arc::new(WallClock)).faults, expected);
    }

    #[test]
    fn ray_dashboard_points_every_head_at_a_real_dashboard() {
        let config = parse(&["--ray-dashboard", "http://127.0.0.1:8265"]).unwrap().sim_config(Arc::new(WallClock));
        assert_eq!(config.ray_dashboard, RayDashboard::Real("http://127.0.0.1:8265".to_string()));
    }

    #[rstest]
    #[case::above_one("--pod-failure-rate", "1.5")]
    #[case::negative("--drop-watch-events", "-0.1")]
    #[case::not_a_number("--conflict-writes", "half")]
    fn a_fraction_outside_0_to_1_is_refused(#[case] flag: &str, #[case] value: &str) {
        let error = parse(&[&format!("{flag}={value}")]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(
            error.to_string().starts_with(&format!(
                "error: invalid value '{value}' for '{flag} <F>': must be a fraction from 0 to 1\n"
            )),
            "{error}"
        );
    }

    #[test]
    fn a_bad_selector_is_refused_with_the_parsers_message() {
        let error = parse(&["--fail-pods", "app in (web"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        let message = "error: invalid value 'app in (web' for '--fail-pods <SELECTOR>': \
            unable to parse requirement: app in (web: found '(web', expected: '('\n";
        assert!(error.to_string().starts_with(message), "{error}");
    }

    #[rstest]
    #[case::port_and_kubeconfig(&["--port", "0", "--kubeconfig-out", "/tmp/k"], 0, Some("/tmp/k"))]
    #[case::defaults(&[], 6443, None)]
    fn serve_keeps_its_own_flags(#[case] args: &[&str], #[case] port: u16, #[case] kubeconfig: Option<&str>) {
        let cli = Cli::try_parse_from(["kuberay", "sim", "serve"].iter().chain(args)).unwrap();
        let Command::Sim { command: SimCommand::Serve { port: parsed, kubeconfig_out, .. } } = cli.command else {
            panic!("expected sim serve");
        };
        assert_eq!((parsed, kubeconfig_out.as_deref()), (port, kubeconfig.map(Path::new)));
    }
}
