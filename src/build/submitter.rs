//! The submitter of a RayJob: the `ray job` shell command, the K8sJobMode submitter Job (§3.3) and the SidecarMode
//! container (DEVIATIONS 14).
//!
//! The command is v1.3.2's dedup form (DEVIATIONS 1): `ray job status` decides whether to submit, `ray job logs
//! --follow` tails the job, and a final status check makes a FAILED job fail the submitter, which `ray job logs`
//! alone does not (KubeRay issue #3211).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::BuildError;
use super::controller_owner_reference;
use crate::api::constants::{
    COMPONENT_NAME, DASHBOARD_PORT_NAME, DEFAULT_DASHBOARD_PORT, K8S_CREATED_BY_LABEL, RAY_JOB_SUBMITTER_CONTAINER,
    RAY_ORIGINATED_FROM_CR_NAME_LABEL, RAY_ORIGINATED_FROM_CRD_LABEL,
};
use crate::api::{RayClusterSpec, RayJob};

const PYTHON_UNBUFFERED_ENV: &str = "PYTHONUNBUFFERED";
const RAY_DASHBOARD_ADDRESS_ENV: &str = "RAY_DASHBOARD_ADDRESS";
const RAY_JOB_SUBMISSION_ID_ENV: &str = "RAY_JOB_SUBMISSION_ID";
/// The submitter Job's own retries when `submitterConfig.backoffLimit` is unset: up to 3 attempts.
const DEFAULT_SUBMITTER_BACKOFF_LIMIT: i32 = 2;
/// KubeRay's `DefaultReadinessProbeFailureThreshold`, which v1.5 reuses as the wget timeout of the sidecar's wait.
const GCS_HEALTH_TIMEOUT_SECONDS: i32 = 10;
/// Ray added `--metadata-json` in 2.6.0.
const METADATA_MIN_RAY_VERSION: (u64, u64, u64) = (2, 6, 0);

/// The dedup submitter argv of DEVIATIONS 1 (v1.3.2 form) for `dashboard_address` (host:port or http://...).
pub fn submitter_command(
    job: &RayJob,
    cluster_spec: &RayClusterSpec,
    submission_id: &str,
    dashboard_address: &str,
) -> Result<Vec<String>, BuildError> {
    dedup_command(job, cluster_spec, submission_id, &http_address(dashboard_address))
}

/// The K8sJobMode submitter Job (§3.3): name `<j>`, the three labels, owner = the RayJob, `backoffLimit`
/// (`submitterConfig.backoffLimit` or 2), and `submitterPodTemplate` or the default template, whose first container
/// runs the dedup command unless it has a command of its own.
pub fn submitter_job(
    job: &RayJob,
    cluster_spec: &RayClusterSpec,
    submission_id: &str,
    dashboard_address: &str,
) -> Result<Job, BuildError> {
    let argv = submitter_command(job, cluster_spec, submission_id, dashboard_address)?;
    let mut template = match &job.spec.submitter_pod_template {
        Some(template) => template.clone(),
        None => default_submitter_template(cluster_spec)?,
    };
    let container = template
        .spec
        .as_mut()
        .and_then(|spec| spec.containers.first_mut())
        .ok_or_else(|| BuildError::NoContainer { what: "spec.submitterPodTemplate".to_string() })?;
    if container.command.as_ref().is_none_or(Vec::is_empty) {
        set_bash_command(container, &argv);
    }
    append_submitter_env(container, dashboard_address, submission_id);

    let name = job.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (RAY_ORIGINATED_FROM_CR_NAME_LABEL.to_string(), name.clone()),
        (RAY_ORIGINATED_FROM_CRD_LABEL.to_string(), "RayJob".to_string()),
        (K8S_CREATED_BY_LABEL.to_string(), COMPONENT_NAME.to_string()),
    ]);
    let backoff_limit = job
        .spec
        .submitter_config
        .as_ref()
        .and_then(|config| config.backoff_limit)
        .unwrap_or(DEFAULT_SUBMITTER_BACKOFF_LIMIT);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_owner_reference(job)]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec { backoff_limit: Some(backoff_limit), template, ..JobSpec::default() }),
        status: None,
    })
}

/// DEVIATIONS 14: the `ray-job-submitter` container that SidecarMode puts in the head Pod. It shares the head's
/// network namespace, so it talks to the dashboard on 127.0.0.1 at the head container's `dashboard` port (else 8265),
/// after waiting for `/api/gcs_healthz` to answer `success` (v1.5's wait loop).
pub fn sidecar_submitter_container(
    job: &RayJob,
    cluster_spec: &RayClusterSpec,
    submission_id: &str,
) -> Result<Container, BuildError> {
    let head = head_container(cluster_spec)?;
    let port = head
        .ports
        .iter()
        .flatten()
        .find(|port| port.name.as_deref() == Some(DASHBOARD_PORT_NAME))
        .map_or(DEFAULT_DASHBOARD_PORT, |port| port.container_port);
    let host_port = format!("127.0.0.1:{port}");
    let address = http_address(&host_port);

    let mut argv = gcs_health_wait_loop(&address);
    argv.extend(dedup_command(job, cluster_spec, submission_id, &address)?);
    let mut container = default_submitter_container(head);
    set_bash_command(&mut container, &argv);
    append_submitter_env(&mut container, &host_port, submission_id);
    Ok(container)
}

fn http_address(address: &str) -> String {
    if address.starts_with("http://") { address.to_string() } else { format!("http://{address}") }
}

fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_string()).collect()
}

fn dedup_command(
    job: &RayJob,
    cluster_spec: &RayClusterSpec,
    submission_id: &str,
    address: &str,
) -> Result<Vec<String>, BuildError> {
    let spec = &job.spec;
    let mut argv =
        words(&["if", "!", "ray", "job", "status", "--address", address, submission_id, ">/dev/null", "2>&1"]);
    argv.extend(words(&[";", "then", "ray", "job", "submit", "--address", address, "--no-wait"]));
    if let Some(yaml) = spec.runtime_env_yaml.as_deref().filter(|yaml| !yaml.is_empty()) {
        argv.extend(["--runtime-env-json".to_string(), go_quote(&runtime_env_json(yaml)?)]);
    }
    if let Some(metadata) = spec.metadata.as_ref().filter(|metadata| !metadata.is_empty()) {
        let json = metadata_json(metadata, cluster_spec.ray_version.as_deref().unwrap_or_default())?;
        argv.extend(["--metadata-json".to_string(), go_quote(&json)]);
    }
    if !submission_id.is_empty() {
        argv.extend(words(&["--submission-id", submission_id]));
    }
    if let Some(cpus) = spec.entrypoint_num_cpus.filter(|cpus| *cpus > 0.0) {
        argv.extend(["--entrypoint-num-cpus".to_string(), go_format_f(cpus)]);
    }
    if let Some(gpus) = spec.entrypoint_num_gpus.filter(|gpus| *gpus > 0.0) {
        argv.extend(["--entrypoint-num-gpus".to_string(), go_format_f(gpus)]);
    }
    if let Some(resources) = spec.entrypoint_resources.as_deref().filter(|resources| !resources.is_empty()) {
        argv.extend(["--entrypoint-resources".to_string(), go_quote(resources)]);
    }
    let entrypoint = spec.entrypoint.as_deref().unwrap_or_default().trim();
    argv.extend(words(&["--", entrypoint, ";", "fi", ";"]));
    argv.extend(words(&["ray", "job", "logs", "--address", address, "--follow", submission_id, ";"]));
    // `ray job logs --follow` exits 0 whatever the outcome, so the outcome is read back with `ray job status`, which
    // prints `Job '<id>' failed` (then a `Status message:` line) for FAILED, `Job '<id>' was stopped` for STOPPED and
    // `Job '<id>' succeeded` for SUCCEEDED, behind a log prefix when stdout is not a terminal. Hence a fixed-string
    // substring match rather than the status word: `FAILED` in capitals is never printed. The check is an `if`
    // condition, which `bash -e` never aborts on, and without `pipefail` the pipeline's status is grep's, so a
    // missing match (or an unreachable dashboard, whose outcome the operator reads itself) leaves the exit code 0.
    argv.extend(words(&["if", "ray", "job", "status", "--address", address, submission_id, "2>&1", "|"]));
    argv.extend(["grep".to_string(), "-qF".to_string(), go_quote(&format!("Job '{submission_id}' failed"))]);
    argv.extend(words(&[";", "then", "exit", "1", ";", "fi"]));
    Ok(argv)
}

/// v1.5's SidecarMode wait: poll the dashboard's GCS health endpoint every 2 s until it answers `success`.
fn gcs_health_wait_loop(address: &str) -> Vec<String> {
    let probe =
        format!("wget --tries 1 -T {GCS_HEALTH_TIMEOUT_SECONDS} -q -O- {address}/api/gcs_healthz | grep success");
    let message = go_quote(&format!("Waiting for Ray Dashboard GCS to become healthy at {address} ..."));
    let mut argv = words(&["until", &probe, ">/dev/null", "2>&1", ";", "do", "echo"]);
    argv.push(message);
    argv.extend(words(&[";", "sleep", "2", ";", "done", ";"]));
    argv
}

/// v1.3.2+: `bash -ce`, so that a failing `ray job submit` or `ray job logs` fails the submitter.
fn set_bash_command(container: &mut Container, argv: &[String]) {
    container.command = Some(vec!["/bin/bash".to_string()]);
    container.args = Some(vec!["-ce".to_string(), argv.join(" ")]);
}

/// Users' own submitter commands can read the dashboard address and the submission id from these.
fn append_submitter_env(container: &mut Container, dashboard_address: &str, submission_id: &str) {
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in [
        (PYTHON_UNBUFFERED_ENV, "1"),
        (RAY_DASHBOARD_ADDRESS_ENV, dashboard_address),
        (RAY_JOB_SUBMISSION_ID_ENV, submission_id),
    ] {
        env.push(EnvVar { name: name.to_string(), value: Some(value.to_string()), value_from: None });
    }
}

fn head_container(cluster_spec: &RayClusterSpec) -> Result<&Container, BuildError> {
    cluster_spec
        .head_group_spec
        .template
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.first())
        .ok_or_else(|| BuildError::NoContainer { what: "headGroupSpec.template".to_string() })
}

fn default_submitter_template(cluster_spec: &RayClusterSpec) -> Result<PodTemplateSpec, BuildError> {
    Ok(PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![default_submitter_container(head_container(cluster_spec)?)],
            restart_policy: Some("Never".to_string()),
            ..PodSpec::default()
        }),
    })
}

/// The head's image guards against a Ray version mismatch between the CLI and the cluster.
fn default_submitter_container(head: &Container) -> Container {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    Container {
        name: RAY_JOB_SUBMITTER_CONTAINER.to_string(),
        image: head.image.clone(),
        resources: Some(ResourceRequirements {
            limits: Some(quantities("1", "1Gi")),
            requests: Some(quantities("500m", "200Mi")),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    }
}

/// `sigs.k8s.io/yaml.YAMLToJSON` of `runtimeEnvYAML`, encoded as Go's `encoding/json` would.
fn runtime_env_json(yaml: &str) -> Result<String, BuildError> {
    let value: Value = serde_saphyr::from_str(yaml).map_err(|error| BuildError::SubmitterCommand {
        message: format!("error converting YAML to JSON: {}", error.to_string().lines().next().unwrap_or_default()),
    })?;
    Ok(go_json(&value))
}

/// `--metadata-json` needs Ray ≥ 2.6.0. `ray_version` is parsed as Masterminds semver does; as there, a pre-release
/// (`2.9.0-rc1`) does not satisfy `>= 2.6.0`, and an empty version is a parse error.
fn metadata_json(metadata: &BTreeMap<String, String>, ray_version: &str) -> Result<String, BuildError> {
    let version = parse_semver(ray_version).ok_or_else(|| BuildError::SubmitterCommand {
        message: format!("failed to parse Ray version: {ray_version}: Invalid Semantic Version"),
    })?;
    if version.prerelease || (version.major, version.minor, version.patch) < METADATA_MIN_RAY_VERSION {
        return Err(BuildError::SubmitterCommand {
            message: "the Ray version must be at least 2.6.0 to use the metadata field".to_string(),
        });
    }
    let object = metadata.iter().map(|(key, value)| (key.clone(), Value::String(value.clone()))).collect();
    Ok(go_json(&Value::Object(object)))
}

struct SemVer {
    major: u64,
    minor: u64,
    patch: u64,
    prerelease: bool,
}

/// Masterminds semver's loose form: `v?MAJOR(.MINOR)?(.PATCH)?(-PRERELEASE)?(+BUILD)?`.
fn parse_semver(text: &str) -> Option<SemVer> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let (text, build) = match text.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (text, None),
    };
    let (core, prerelease) = match text.split_once('-') {
        Some((core, prerelease)) => (core, Some(prerelease)),
        None => (text, None),
    };
    let identifiers_ok = |part: Option<&str>| {
        part.is_none_or(|part| {
            part.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        })
    };
    if !identifiers_ok(build) || !identifiers_ok(prerelease) {
        return None;
    }
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() > 3 || numbers.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let number = |index: usize| numbers.get(index).map_or(Some(0), |n| n.parse::<u64>().ok());
    Some(SemVer { major: number(0)?, minor: number(1)?, patch: number(2)?, prerelease: prerelease.is_some() })
}

/// Go's `fmt.Sprintf("%f", float32)`: six decimals, `+Inf` for infinity.
fn go_format_f(value: f32) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        format!("{value:.6}")
    }
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes for `"`, `\`, control characters and every
/// character Go's `unicode.IsPrint` rejects. Our `IsPrint` covers controls, spaces other than U+0020, format
/// characters (Cf), private use and noncharacters; unassigned code points pass through, where Go would escape them.
pub fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if go_is_print(c) => quoted.push(c),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if u32::from(c) < 0x80 => quoted.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if u32::from(c) < 0x10000 => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

fn go_is_print(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace() || is_format_private_or_noncharacter(c))
}

fn is_format_private_or_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    matches!(
        code,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            | 0xE000..=0xF8FF
            | 0xF0000..=0xFFFFD
            | 0x100000..=0x10FFFD
            | 0xFDD0..=0xFDEF
    ) || code & 0xFFFE == 0xFFFE
}

/// Go's `json.Marshal` of a decoded JSON tree: compact, keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped, and
/// floats in Go's notation (`1` for 1.0, `1e+21`, `1e-7`).
fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out);
    out
}

fn write_go_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(int), _, _) => out.push_str(&int.to_string()),
            (None, Some(uint), _) => out.push_str(&uint.to_string()),
            (None, None, Some(float)) => out.push_str(&go_json_float(float)),
            (None, None, None) => out.push_str(&number.to_string()),
        },
        Value::String(text) => write_go_json_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            let sorted: BTreeMap<&String, &Value> = entries.iter().collect();
            for (index, (key, item)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_go_json_string(key, out);
                out.push(':');
                write_go_json(item, out);
            }
            out.push('}');
        }
    }
}

fn go_json_float(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        let scientific = format!("{value:e}");
        match scientific.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => format!("{mantissa}e+{exponent}"),
            _ => scientific,
        }
    } else {
        format!("{value}")
    }
}

fn write_go_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ContainerPort;
    use rstest::rstest;

    use super::*;
    use crate::api::document::{decode, parse_yaml_stream};
    use crate::api::raycluster::HeadGroupSpec;
    use crate::api::rayjob::{RayJobSpec, SubmitterConfig};

    const ADDRESS: &str = "rayjob-sample-raycluster-head-svc.ns.svc.cluster.local:8265";
    const ID: &str = "rayjob-sample-abcde";

    fn cluster_spec(ray_version: Option<&str>, ports: Vec<ContainerPort>) -> RayClusterSpec {
        RayClusterSpec {
            ray_version: ray_version.map(str::to_string),
            head_group_spec: HeadGroupSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "ray-head".to_string(),
                            image: Some("rayproject/ray:2.41.0".to_string()),
                            ports: Some(ports),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..HeadGroupSpec::default()
            },
            ..RayClusterSpec::default()
        }
    }

    fn spec() -> RayClusterSpec {
        cluster_spec(Some("2.41.0"), vec![])
    }

    fn rayjob(spec: RayJobSpec) -> RayJob {
        RayJob {
            metadata: ObjectMeta {
                name: Some("rayjob-sample".to_string()),
                namespace: Some("ns".to_string()),
                uid: Some("uid-1".to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    fn minimal_job() -> RayJob {
        rayjob(RayJobSpec {
            entrypoint: Some("python /home/ray/samples/sample_code.py".to_string()),
            ..RayJobSpec::default()
        })
    }

    fn full_job() -> RayJob {
        rayjob(RayJobSpec {
            entrypoint: Some("  python script.py --name 'x' \"y\"\n".to_string()),
            runtime_env_yaml: Some("working_dir: /tmp\npip: [\"numpy>=1.2\"]\n".to_string()),
            metadata: Some(BTreeMap::from([("owner".to_string(), "ray".to_string())])),
            entrypoint_num_cpus: Some(1.5),
            entrypoint_num_gpus: Some(0.5),
            entrypoint_resources: Some(r#"{"Custom": 1}"#.to_string()),
            ..RayJobSpec::default()
        })
    }

    fn status_check(address: &str, id: &str) -> String {
        format!(
            "ray job logs --address {address} --follow {id} ; if ray job status --address {address} {id} 2>&1 | grep -qF \"Job '{id}' failed\" ; then exit 1 ; fi"
        )
    }

    #[rstest]
    #[case::every_optional_flag(
        full_job(),
        ADDRESS,
        concat!(
            "if ! ray job status --address http://rayjob-sample-raycluster-head-svc.ns.svc.cluster.local:8265 rayjob-sample-abcde >/dev/null 2>&1 ; ",
            "then ray job submit --address http://rayjob-sample-raycluster-head-svc.ns.svc.cluster.local:8265 --no-wait ",
            r#"--runtime-env-json "{\"pip\":[\"numpy\\u003e=1.2\"],\"working_dir\":\"/tmp\"}" "#,
            r#"--metadata-json "{\"owner\":\"ray\"}" "#,
            "--submission-id rayjob-sample-abcde --entrypoint-num-cpus 1.500000 --entrypoint-num-gpus 0.500000 ",
            r#"--entrypoint-resources "{\"Custom\": 1}" -- python script.py --name 'x' "y" ; fi ; "#,
        ),
    )]
    #[case::no_optional_flag_and_http_kept(
        minimal_job(),
        "http://10.0.0.1:8265",
        concat!(
            "if ! ray job status --address http://10.0.0.1:8265 rayjob-sample-abcde >/dev/null 2>&1 ; ",
            "then ray job submit --address http://10.0.0.1:8265 --no-wait --submission-id rayjob-sample-abcde ",
            "-- python /home/ray/samples/sample_code.py ; fi ; ",
        ),
    )]
    fn submitter_command_is_the_dedup_form(#[case] job: RayJob, #[case] address: &str, #[case] head: &str) {
        let address_with_scheme = http_address(address);
        let expected = format!("{head}{}", status_check(&address_with_scheme, ID));
        assert_eq!(submitter_command(&job, &spec(), ID, address).map(|argv| argv.join(" ")), Ok(expected));
    }

    #[test]
    fn entrypoint_is_one_argv_item_and_flags_follow_kuberays_order() {
        let argv = submitter_command(&full_job(), &spec(), ID, ADDRESS).unwrap_or_default();
        let flags: Vec<&str> = argv.iter().map(String::as_str).filter(|item| item.starts_with("--")).collect();
        assert_eq!(
            flags,
            [
                "--address",
                "--address",
                "--no-wait",
                "--runtime-env-json",
                "--metadata-json",
                "--submission-id",
                "--entrypoint-num-cpus",
                "--entrypoint-num-gpus",
                "--entrypoint-resources",
                "--",
                "--address",
                "--follow",
                "--address",
            ]
        );
        assert!(argv.contains(&"python script.py --name 'x' \"y\"".to_string()));
    }

    #[rstest]
    #[case::plain("hello", r#""hello""#)]
    #[case::double_quote_and_backslash(r#"a"b\c"#, r#""a\"b\\c""#)]
    #[case::json(r#"{"a":1}"#, r#""{\"a\":1}""#)]
    #[case::single_quote_kept("it's", r#""it's""#)]
    #[case::named_escapes("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#)]
    #[case::other_control("\u{1}\u{7f}", r#""\x01\x7f""#)]
    #[case::c1_control("\u{85}", r#""\u0085""#)]
    #[case::non_breaking_space("a\u{a0}b", r#""a\u00a0b""#)]
    #[case::zero_width_space("\u{200b}", r#""\u200b""#)]
    #[case::private_use_astral("\u{f0000}", r#""\U000f0000""#)]
    #[case::printable_unicode("héllo 日本 🚀", "\"héllo 日本 🚀\"")]
    fn go_quote_matches_strconv_quote(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(go_quote(input), expected);
    }

    #[rstest]
    #[case::one(1.0, "1.000000")]
    #[case::half(0.5, "0.500000")]
    #[case::float32_value_rounded(1.1, "1.100000")]
    #[case::tie_rounds_to_even(0.0078125, "0.007812")]
    #[case::small(0.000_000_1, "0.000000")]
    #[case::large(123_456.7, "123456.703125")]
    #[case::infinity(f32::INFINITY, "+Inf")]
    fn percent_f_has_six_decimals(#[case] value: f32, #[case] expected: &str) {
        assert_eq!(go_format_f(value), expected);
    }

    #[rstest]
    #[case::integral_float(1.0, "1")]
    #[case::fraction(0.25, "0.25")]
    #[case::large_uses_exponent(1e21, "1e+21")]
    #[case::below_threshold_uses_exponent(1.5e-7, "1.5e-7")]
    #[case::above_threshold_plain(1e20, "100000000000000000000")]
    fn go_json_floats(#[case] value: f64, #[case] expected: &str) {
        assert_eq!(go_json_float(value), expected);
    }

    #[test]
    fn go_json_sorts_keys_and_escapes_like_encoding_json() {
        let value = serde_json::json!({"b": ["<a>&", 2, -3, true, null], "a": "line\nsep\u{2028}\u{1}"});
        assert_eq!(go_json(&value), r#"{"a":"line\nsep\u2028\u0001","b":["\u003ca\u003e\u0026",2,-3,true,null]}"#);
    }

    #[rstest]
    #[case::at_minimum(Some("2.6.0"), Ok(()))]
    #[case::loose_two_parts(Some("v2.10"), Ok(()))]
    #[case::too_old(Some("2.5.1"), Err("the Ray version must be at least 2.6.0 to use the metadata field"))]
    #[case::prerelease_rejected(
        Some("2.9.0-rc1"),
        Err("the Ray version must be at least 2.6.0 to use the metadata field")
    )]
    #[case::unparsable(Some("latest"), Err("failed to parse Ray version: latest: Invalid Semantic Version"))]
    #[case::unset(None, Err("failed to parse Ray version: : Invalid Semantic Version"))]
    fn metadata_requires_ray_2_6(#[case] ray_version: Option<&str>, #[case] expected: Result<(), &str>) {
        let job = rayjob(RayJobSpec {
            metadata: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
            ..RayJobSpec::default()
        });
        let result = submitter_command(&job, &cluster_spec(ray_version, vec![]), ID, ADDRESS);
        assert_eq!(result.map(|_| ()).map_err(|error| error.to_string()), expected.map_err(str::to_string));
    }

    #[test]
    fn bad_runtime_env_yaml_is_an_error() {
        let job = rayjob(RayJobSpec { runtime_env_yaml: Some("pip: [unclosed".to_string()), ..RayJobSpec::default() });
        let error = submitter_command(&job, &spec(), ID, ADDRESS).err().map(|error| error.to_string());
        assert!(error.is_some_and(|message| message.starts_with("error converting YAML to JSON: ")));
    }

    fn env_of(container: &Container) -> Vec<(String, String)> {
        container.env.iter().flatten().map(|env| (env.name.clone(), env.value.clone().unwrap_or_default())).collect()
    }

    fn first_container(job: &Job) -> Option<&Container> {
        job.spec.as_ref()?.template.spec.as_ref()?.containers.first()
    }

    #[test]
    fn default_template_follows_kuberay() {
        let submitter = submitter_job(&minimal_job(), &spec(), ID, ADDRESS).ok();
        let pod_spec = submitter.as_ref().and_then(|job| job.spec.as_ref()?.template.spec.clone());
        assert_eq!(pod_spec.as_ref().and_then(|spec| spec.restart_policy.as_deref()), Some("Never"));
        assert_eq!(pod_spec.as_ref().map(|spec| spec.containers.len()), Some(1));
        let container = submitter.as_ref().and_then(first_container);
        assert_eq!(container.map(|c| c.name.as_str()), Some("ray-job-submitter"));
        assert_eq!(container.and_then(|c| c.image.as_deref()), Some("rayproject/ray:2.41.0"));
        let resources = container.and_then(|c| c.resources.clone()).unwrap_or_default();
        let text = |list: Option<BTreeMap<String, Quantity>>| {
            list.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={}", v.0)).collect::<Vec<_>>()
        };
        assert_eq!(text(resources.limits), ["cpu=1", "memory=1Gi"]);
        assert_eq!(text(resources.requests), ["cpu=500m", "memory=200Mi"]);
        assert_eq!(container.and_then(|c| c.command.clone()), Some(vec!["/bin/bash".to_string()]));
        let expected = submitter_command(&minimal_job(), &spec(), ID, ADDRESS).unwrap().join(" ");
        assert_eq!(container.and_then(|c| c.args.clone()), Some(vec!["-ce".to_string(), expected]));
        assert_eq!(
            container.map(env_of),
            Some(vec![
                ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
                ("RAY_DASHBOARD_ADDRESS".to_string(), ADDRESS.to_string()),
                ("RAY_JOB_SUBMISSION_ID".to_string(), ID.to_string()),
            ])
        );
    }

    #[test]
    fn job_metadata_names_labels_and_owner() {
        let submitter = submitter_job(&minimal_job(), &spec(), ID, ADDRESS).unwrap_or_default();
        assert_eq!(submitter.metadata.name.as_deref(), Some("rayjob-sample"));
        assert_eq!(submitter.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            submitter.metadata.labels.unwrap_or_default().into_iter().collect::<Vec<_>>(),
            [
                ("app.kubernetes.io/created-by".to_string(), "kuberay-operator".to_string()),
                ("ray.io/originated-from-cr-name".to_string(), "rayjob-sample".to_string()),
                ("ray.io/originated-from-crd".to_string(), "RayJob".to_string()),
            ]
        );
        let owner = submitter.metadata.owner_references.unwrap_or_default();
        assert_eq!(owner.len(), 1);
        assert_eq!(
            owner.first().map(|o| (o.kind.as_str(), o.name.as_str(), o.uid.as_str(), o.controller)),
            Some(("RayJob", "rayjob-sample", "uid-1", Some(true)))
        );
    }

    #[rstest]
    #[case::default(None, 2)]
    #[case::override_zero(Some(0), 0)]
    #[case::override_five(Some(5), 5)]
    fn backoff_limit_defaults_to_two(#[case] configured: Option<i32>, #[case] expected: i32) {
        let mut job = minimal_job();
        job.spec.submitter_config = configured.map(|limit| SubmitterConfig { backoff_limit: Some(limit) });
        let submitter = submitter_job(&job, &spec(), ID, ADDRESS).ok();
        assert_eq!(submitter.and_then(|job| job.spec?.backoff_limit), Some(expected));
    }

    #[rstest]
    #[case::user_command_kept(Some(vec!["sh".to_string(), "-c".to_string(), "echo hi".to_string()]), "sh")]
    #[case::empty_command_replaced(Some(vec![]), "/bin/bash")]
    fn user_template_keeps_its_command(#[case] command: Option<Vec<String>>, #[case] expected: &str) {
        let mut job = minimal_job();
        job.spec.submitter_pod_template = Some(PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container { name: "mine".to_string(), command, ..Container::default() }],
                ..PodSpec::default()
            }),
        });
        let submitter = submitter_job(&job, &spec(), ID, ADDRESS).unwrap_or_default();
        let container = first_container(&submitter);
        assert_eq!(container.map(|c| c.name.as_str()), Some("mine"));
        assert_eq!(container.and_then(|c| c.command.as_ref()?.first().cloned()).as_deref(), Some(expected));
        assert_eq!(container.map(|c| env_of(c).len()), Some(3), "the env is appended either way");
    }

    #[test]
    fn head_without_container_is_an_error() {
        let mut head_less = spec();
        head_less.head_group_spec.template.spec = None;
        assert_eq!(
            submitter_job(&minimal_job(), &head_less, ID, ADDRESS).err(),
            Some(BuildError::NoContainer { what: "headGroupSpec.template".to_string() })
        );
    }

    #[rstest]
    #[case::named_dashboard_port(vec![ContainerPort { name: Some("dashboard".to_string()), container_port: 9000, ..ContainerPort::default() }], 9000)]
    #[case::default_port(vec![ContainerPort { name: Some("client".to_string()), container_port: 10001, ..ContainerPort::default() }], 8265)]
    fn sidecar_waits_for_gcs_then_runs_the_dedup_command(#[case] ports: Vec<ContainerPort>, #[case] port: i32) {
        let cluster = cluster_spec(Some("2.41.0"), ports);
        let container = sidecar_submitter_container(&minimal_job(), &cluster, ID).unwrap_or_default();
        let address = format!("http://127.0.0.1:{port}");
        let expected = format!(
            "until wget --tries 1 -T 10 -q -O- {address}/api/gcs_healthz | grep success >/dev/null 2>&1 ; do echo \"Waiting for Ray Dashboard GCS to become healthy at {address} ...\" ; sleep 2 ; done ; {}",
            submitter_command(&minimal_job(), &cluster, ID, &address).map(|argv| argv.join(" ")).unwrap_or_default()
        );
        assert_eq!(container.name, "ray-job-submitter");
        assert_eq!(container.image.as_deref(), Some("rayproject/ray:2.41.0"));
        assert_eq!(container.command, Some(vec!["/bin/bash".to_string()]));
        assert_eq!(container.args, Some(vec!["-ce".to_string(), expected]));
        assert_eq!(
            env_of(&container),
            [
                ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
                ("RAY_DASHBOARD_ADDRESS".to_string(), format!("127.0.0.1:{port}")),
                ("RAY_JOB_SUBMISSION_ID".to_string(), ID.to_string()),
            ]
        );
        assert!(container.resources.is_some_and(|r| r.limits.is_some() && r.requests.is_some()));
    }

    #[test]
    fn sample_rayjob_submitter_command() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/kuberay-v1.3.0/samples/ray-job.sample.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let documents = parse_yaml_stream(&text).unwrap_or_default();
        let job = documents.iter().find_map(|document| match decode(document) {
            Ok(Some(crate::api::document::RayObject::Job(job))) => Some(*job),
            _ => None,
        });
        let Some(job) = job else { unreachable!("the sample holds a RayJob") };
        let cluster = job.spec.ray_cluster_spec.clone().unwrap_or_default();
        let submitter = submitter_job(&job, &cluster, "rayjob-sample-2kx7q", ADDRESS).unwrap_or_default();
        let args = first_container(&submitter).and_then(|c| c.args.clone()).unwrap_or_default();
        let address = format!("http://{ADDRESS}");
        assert_eq!(
            args.get(1).cloned().unwrap_or_default(),
            format!(
                "if ! ray job status --address {address} rayjob-sample-2kx7q >/dev/null 2>&1 ; then ray job submit --address {address} --no-wait --runtime-env-json {} --submission-id rayjob-sample-2kx7q -- python /home/ray/samples/sample_code.py ; fi ; {}",
                r#""{\"env_vars\":{\"counter_name\":\"test_counter\"},\"pip\":[\"requests==2.26.0\",\"pendulum==2.1.2\"]}""#,
                status_check(&address, "rayjob-sample-2kx7q"),
            )
        );
    }
}
