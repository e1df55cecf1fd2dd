//! The `kuberay` command line: the commands that read manifests (`validate`, `render`), print the CRDs, show the
//! state machines (`fsm`), and serve the simulated cluster (`sim serve`).
//! Each command writes to the writers it is given and returns its exit code, so tests run it in-process.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::api::RayCluster;
use crate::api::document::{self, Identity, RayObject};
use crate::api::validation;
use crate::build::render;
use crate::config::{FeatureGates, OperatorConfig};
use crate::machine;

pub mod apply;
mod journal;
pub mod operator;
mod sim;

pub use journal::{EXIT_DAMAGED, FixtureCommand, JournalCommand, audit};
pub use sim::SimArgs;

#[derive(Parser, Debug)]
#[command(name = "kuberay", version, about = "A Kubernetes operator for Ray (KubeRay's ray.io/v1 API)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the Ray objects of manifest files: one line per object, or one per problem.
    Validate {
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// KubeRay's feature gates, e.g. `RayJobDeletionPolicy=false`.
        #[arg(long, default_value = "")]
        feature_gates: String,
    },
    /// Print every object the operator would create for the Ray objects of manifest files.
    Render {
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
        #[arg(long, default_value = "")]
        feature_gates: String,
    },
    /// Print the CustomResourceDefinitions of RayCluster, RayJob and RayService.
    Crd {
        /// Write one file per CRD into this directory (as `deploy/crds/` holds them) instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Run the operator against the cluster a kubeconfig (or the in-cluster config) reaches, until SIGINT/SIGTERM.
    Run {
        #[command(flatten)]
        operator: operator::OperatorArgs,
        #[command(flatten)]
        cluster: operator::ClusterArgs,
    },
    /// The simulated cluster.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// The decision journal: replay, audit, explain, count, export and import recorded decisions.
    Journal {
        /// The journal's directory.
        #[arg(long, default_value = "./journal", global = true)]
        journal: PathBuf,
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Scenario fixtures that drive the machines deterministically.
    Fixture {
        #[command(subcommand)]
        command: FixtureCommand,
    },
    /// The state machines: their states, guards and transitions (`state-machines/*.yaml`).
    Fsm {
        #[command(subcommand)]
        command: FsmCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// The simulated cluster and the operator in one process: apply manifests, print each transition
    /// (`TIME KIND/NAMESPACE/NAME FROM -> TO REASON`), and serve the API on 127.0.0.1 for kubectl meanwhile.
    Run {
        #[command(flatten)]
        operator: operator::OperatorArgs,
        #[command(flatten)]
        run: operator::SimRunArgs,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// Serve the simulated cluster's Kubernetes API on 127.0.0.1 in wall-clock time, until interrupted.
    Serve {
        /// The port to listen on; 0 picks a free one (printed on the first line).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// Write a kubeconfig that reaches the simulated cluster to this file.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        #[command(flatten)]
        sim: SimArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum FsmCommand {
    /// One line per machine: its name, size and what it does.
    List,
    /// A machine's definition as a text table, a Mermaid state diagram or a Graphviz graph.
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t = FsmFormat::Table)]
        format: FsmFormat,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FsmFormat {
    Table,
    Mermaid,
    Dot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// Exit codes of the manifest commands.
pub const EXIT_OK: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_UNREADABLE: i32 = 2;

pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let result = match cli.command {
        Command::Validate { files, feature_gates } => match config(&feature_gates) {
            Ok(config) => validate(&files, &config.feature_gates, out, err),
            Err(message) => Err(std::io::Error::other(message)),
        },
        Command::Render { files, output, feature_gates } => match config(&feature_gates) {
            Ok(config) => render(&files, output, &config, out, err),
            Err(message) => Err(std::io::Error::other(message)),
        },
        Command::Crd { output_dir } => crd(output_dir.as_deref(), out),
        Command::Sim { command: SimCommand::Serve { port, kubeconfig_out, sim: args } } => {
            sim::serve(port, kubeconfig_out.as_deref(), &args, out)
        }
        Command::Run { operator, cluster } => operator::run(operator, cluster, err),
        Command::Sim { command: SimCommand::Run { operator, run, sim } } => {
            operator::sim_run(operator, run, &sim, out, err)
        }
        Command::Fsm { command } => fsm(command, out),
        Command::Journal { journal: dir, command } => journal::journal(&dir, command, out, err),
        Command::Fixture { command: FixtureCommand::Run { files, journal: dir } } => {
            journal::fixture_run(&files, &dir, out, err)
        }
    };
    result.unwrap_or_else(|e| {
        // A reader that stopped early (`| head`) is not an error of ours.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return EXIT_OK;
        }
        let _ = writeln!(err, "error: {e}");
        EXIT_UNREADABLE
    })
}

/// The operator's knobs from the environment, with the gates of `--feature-gates`.
fn config(gates: &str) -> Result<OperatorConfig, String> {
    let feature_gates = FeatureGates::parse(gates).map_err(|e| format!("--feature-gates: {e}"))?;
    Ok(OperatorConfig { feature_gates, ..OperatorConfig::from_env() })
}

/// The documents of one file, or why the file cannot be read (`FILE: line L, column C: ...`).
fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    document::parse_yaml_stream(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The documents of every readable file, in order, and the exit code so far: each file that cannot be read is
/// reported on `err` and makes it [`EXIT_UNREADABLE`].
fn read_all(files: &[PathBuf], err: &mut dyn Write) -> std::io::Result<(Vec<Value>, i32)> {
    let mut code = EXIT_OK;
    let mut all = Vec::new();
    for path in files {
        match read_documents(path) {
            Ok(documents) => all.extend(documents),
            Err(message) => {
                writeln!(err, "error: {message}")?;
                code = EXIT_UNREADABLE;
            }
        }
    }
    Ok((all, code))
}

/// A Ray document read and checked: the object, or every problem with it.
fn check(document: &Value, gates: &FeatureGates) -> Result<RayObject, Vec<String>> {
    let object = match document::decode(document) {
        Ok(Some(object)) => object,
        Ok(None) => return Err(vec!["not a ray.io/v1 object".to_string()]),
        Err(e) => return Err(vec![e.to_string()]),
    };
    let problems = match &object {
        RayObject::Cluster(cluster) => validation::validate_ray_cluster(cluster, gates),
        RayObject::Job(job) => validation::validate_ray_job(job, gates),
        RayObject::Service(service) => validation::validate_ray_service(service, gates),
    };
    if problems.is_empty() { Ok(object) } else { Err(problems) }
}

pub fn validate(
    files: &[PathBuf],
    gates: &FeatureGates,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let (documents, mut code) = read_all(files, err)?;
    for document in &documents {
        let identity = Identity::of(document);
        if !identity.is_ray() {
            writeln!(out, "{identity}: skipped")?;
            continue;
        }
        match check(document, gates) {
            Ok(_) => writeln!(out, "{identity}: ok")?,
            Err(problems) => {
                for problem in problems {
                    writeln!(out, "{identity}: error: {problem}")?;
                }
                code = code.max(EXIT_INVALID);
            }
        }
    }
    Ok(code)
}

pub fn render(
    files: &[PathBuf],
    format: OutputFormat,
    config: &OperatorConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let (documents, mut code) = read_all(files, err)?;
    let mut objects = Vec::new();
    for document in documents.iter().filter(|d| Identity::of(d).is_ray()) {
        let identity = Identity::of(document);
        match check(document, &config.feature_gates) {
            Ok(object) => objects.push((identity, object)),
            Err(problems) => {
                for problem in problems {
                    writeln!(err, "{identity}: error: {problem}")?;
                }
                code = code.max(EXIT_INVALID);
            }
        }
    }
    let clusters: Vec<RayCluster> = objects
        .iter()
        .filter_map(|(_, object)| match object {
            RayObject::Cluster(cluster) => Some(cluster.as_ref().clone()),
            _ => None,
        })
        .collect();
    let mut rendered = Vec::new();
    for (identity, object) in &objects {
        match render::render(object, config, &clusters) {
            Ok(children) => rendered.extend(children),
            // A valid RayJob whose selected cluster is elsewhere: nothing to render, and nothing wrong.
            Err(e @ render::RenderError::SelectedClusterNotGiven(_)) => writeln!(err, "{identity}: note: {e}")?,
            Err(e) => {
                writeln!(err, "{identity}: error: {e}")?;
                code = code.max(EXIT_INVALID);
            }
        }
    }
    write_objects(&rendered, format, out)?;
    Ok(code)
}

fn write_objects(objects: &[Value], format: OutputFormat, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects});
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)
        }
        OutputFormat::Yaml => objects.iter().try_for_each(|object| {
            let yaml = serde_saphyr::to_string(object).map_err(std::io::Error::other)?;
            write!(out, "---\n{yaml}")
        }),
    }
}

fn crd(output_dir: Option<&Path>, out: &mut dyn Write) -> std::io::Result<i32> {
    let documents = crate::api::crd::crd_yaml_documents().map_err(std::io::Error::other)?;
    for (file, document) in crate::api::crd::CRD_FILES.iter().zip(documents) {
        match output_dir {
            Some(dir) => std::fs::write(dir.join(file), document)?,
            None => out.write_all(document.as_bytes())?,
        }
    }
    Ok(EXIT_OK)
}

fn fsm(command: FsmCommand, out: &mut dyn Write) -> std::io::Result<i32> {
    match command {
        FsmCommand::List => {
            for name in machine::fsm::names() {
                let definition = machine::fsm::definition(name).map_err(std::io::Error::other)?;
                let (states, transitions) = (definition.states.len(), definition.transitions.len());
                writeln!(out, "{name}: {states} states, {transitions} transitions. {}", definition.description)?;
            }
        }
        FsmCommand::Show { name, format } => {
            let definition = machine::fsm::definition(&name).map_err(std::io::Error::other)?;
            let text = match format {
                FsmFormat::Table => definition.table(),
                FsmFormat::Mermaid => definition.mermaid(),
                FsmFormat::Dot => definition.dot(),
            };
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn kuberay(args: &[&str]) -> (i32, String, String) {
        let cli = Cli::parse_from(std::iter::once("kuberay").chain(args.iter().copied()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(cli, &mut out, &mut err);
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn fsm_list_names_each_machine_with_its_size() {
        let (code, out, _) = kuberay(&["fsm", "list"]);
        assert_eq!(code, EXIT_OK);
        assert_eq!(out.lines().count(), 2);
        assert!(out.starts_with("raycluster: 9 states, 23 transitions. The RayCluster lifecycle"), "{out}");
    }

    #[rstest]
    #[case::table_by_default(&[], "FROM ")]
    #[case::mermaid(&["--format", "mermaid"], "stateDiagram-v2\n    [*] --> New\n")]
    #[case::dot(&["--format", "dot"], "digraph raycluster {\n")]
    fn fsm_show_renders_the_definition(#[case] format: &[&str], #[case] start: &str) {
        let args: Vec<&str> = ["fsm", "show", "raycluster"].iter().chain(format).copied().collect();
        let (code, out, _) = kuberay(&args);
        assert_eq!(code, EXIT_OK);
        assert!(out.starts_with(start), "{out}");
        assert!(out.contains("Suspended"), "{out}");
    }

    #[test]
    fn fsm_show_names_the_known_machines_for_an_unknown_one() {
        let (code, out, err) = kuberay(&["fsm", "show", "rayservice"]);
        assert_eq!((code, out.as_str()), (EXIT_UNREADABLE, ""));
        assert_eq!(err, "error: unknown machine \"rayservice\" (known: raycluster, rayjob)\n");
    }
}
