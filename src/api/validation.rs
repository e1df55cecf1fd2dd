//! Validation of the three `ray.io/v1` kinds with KubeRay's own messages (spec §2.4, §3.1, §4.1), plus the checks
//! later KubeRay releases added that DEVIATIONS 3, 10, 12 and 15 ship.
//!
//! KubeRay stops at the first problem; these functions report every problem, in the order a submitted object meets
//! them: the CRD's rules (the API server), then the webhook's, then the controller's in KubeRay's order. Nothing here
//! can panic, whatever the input: every index is checked and every optional field may be absent.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::constants::{
    KUBERAY_MANAGED_BY, MULTIKUEUE_MANAGED_BY, RAY_ENABLE_AUTOSCALER_V2, RAY_EXTERNAL_STORAGE_NS_ANNOTATION,
    RAY_FT_ENABLED_ANNOTATION, RAY_REDIS_ADDRESS, REDIS_PASSWORD, REDIS_USERNAME,
};
use super::raycluster::{AutoscalerVersion, RayClusterSpec, WorkerGroupSpec};
use super::rayjob::{DeletionPolicy, JobDeploymentStatus, SubmissionMode};
use super::rayservice::UpgradeStrategy;
use super::{RayCluster, RayJob, RayService};
use crate::config::{Feature, FeatureGates};

/// The CRDs' CEL message for `managedBy` (RayCluster, RayJob, and the cluster specs they embed).
const MANAGED_BY_MESSAGE: &str =
    "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'";

/// A RayCluster: its spec, read with its own annotations.
pub fn validate_ray_cluster(cluster: &RayCluster, gates: &FeatureGates) -> Vec<String> {
    validate_ray_cluster_spec(&cluster.spec, annotations(&cluster.metadata), gates)
}

/// A RayCluster spec, standalone or embedded in a RayJob or RayService (whose annotations are then the ones read).
pub fn validate_ray_cluster_spec(
    spec: &RayClusterSpec,
    annotations: &BTreeMap<String, String>,
    gates: &FeatureGates,
) -> Vec<String> {
    let mut problems = Vec::new();

    // The CRD's rule, which every embedded cluster spec carries too.
    problems.extend(managed_by_problem(spec.managed_by.as_deref()));

    // The webhook's rule: Pods, Services and the autoscaler tell groups apart by name.
    let mut group_names = BTreeSet::new();
    if !spec.worker_groups().iter().all(|group| group_names.insert(group.group_name.as_str())) {
        problems.push("worker group names must be unique".to_string());
    }

    // §2.4 item 1. KubeRay stops at it; we go on, reading the env of a head without containers as empty.
    if containers(&spec.head_group_spec.template).is_empty() {
        problems.push("headGroupSpec should have at least one container".to_string());
    }

    // §2.4 item 2 (said once: the message names no group), then DEVIATIONS 15 per group, as v1.6 checks them
    // in the same loop.
    let mut container_reported = false;
    for group in spec.worker_groups() {
        if containers(&group.template).is_empty() && !container_reported {
            problems.push("workerGroupSpec should have at least one container".to_string());
            container_reported = true;
        }
        problems.extend(replica_problems(group));
    }

    let head_env = head_env(spec);
    let ft_options = spec.gcs_fault_tolerance_options.is_some();
    let annotated = |key: &str| annotations.get(key).is_some_and(|value| !value.is_empty());

    // §2.4 items 3–6: GCS fault tolerance.
    if annotated(RAY_FT_ENABLED_ANNOTATION) && ft_options {
        problems.push(format!(
            "{RAY_FT_ENABLED_ANNOTATION} annotation and GcsFaultToleranceOptions are both set. Please use only GcsFaultToleranceOptions to configure GCS fault tolerance"
        ));
    }
    if !spec.gcs_ft_enabled(annotations) && has_env(head_env, RAY_REDIS_ADDRESS) {
        problems.push(format!(
            "{RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance"
        ));
    }
    if ft_options {
        if spec.head_group_spec.ray_start_params.get("redis-password").is_some_and(|value| !value.is_empty()) {
            problems.push("cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead".to_string());
        }
        if has_env(head_env, REDIS_PASSWORD) {
            problems.push("cannot set `REDIS_PASSWORD` env var in head Pod when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead".to_string());
        }
        if has_env(head_env, RAY_REDIS_ADDRESS) {
            problems.push("cannot set `RAY_REDIS_ADDRESS` env var in head Pod when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisAddress instead".to_string());
        }
        if annotated(RAY_EXTERNAL_STORAGE_NS_ANNOTATION) {
            problems.push("cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.ExternalStorageNamespace instead".to_string());
        }
    }
    if spec.head_group_spec.ray_start_params.get("redis-username").is_some_and(|value| !value.is_empty())
        || has_env(head_env, REDIS_USERNAME)
    {
        problems.push(
            "cannot set redis username in rayStartParams or environment variables - use GcsFaultToleranceOptions.RedisUsername instead"
                .to_string(),
        );
    }

    // §2.4 items 7–8: suspended worker groups (said once each: the messages name no group).
    let any_group_suspended = spec.worker_groups().iter().any(|group| group.suspend == Some(true));
    if any_group_suspended && !gates.enabled(Feature::RayJobDeletionPolicy) {
        problems.push(
            "suspending worker groups is currently available when the RayJobDeletionPolicy feature gate is enabled"
                .to_string(),
        );
    }
    if spec.autoscaling_enabled() {
        if any_group_suspended {
            problems.push("suspending worker groups is not currently supported with Autoscaler enabled".to_string());
        }
        problems.extend(autoscaler_version_problems(spec, head_env));
    }

    problems
}

/// DEVIATIONS 15, with v1.6's messages; v1.6 has none for `replicas`, so ours says it the same way.
fn replica_problems(group: &WorkerGroupSpec) -> Vec<String> {
    let name = &group.group_name;
    let mut problems = Vec::new();
    if let Some(min) = group.min_replicas.filter(|min| *min < 0) {
        problems.push(format!("worker group {name} has negative minReplicas {min}"));
    }
    if let Some(max) = group.max_replicas.filter(|max| *max < 0) {
        problems.push(format!("worker group {name} has negative maxReplicas {max}"));
    }
    if let (Some(min), Some(max)) = (group.min_replicas, group.max_replicas)
        && min > max
    {
        problems.push(format!("worker group {name} has minReplicas {min} greater than maxReplicas {max}"));
    }
    if let Some(replicas) = group.replicas.filter(|replicas| *replicas < 0) {
        problems.push(format!("worker group {name} has negative replicas {replicas}"));
    }
    problems
}

/// DEVIATIONS 10 with v1.7's messages, checked (as v1.7 does) only when autoscaling is on: the version picks the
/// autoscaler, so the env must not contradict it, and v2 needs Pods that are never restarted in place.
fn autoscaler_version_problems(spec: &RayClusterSpec, head_env: &[EnvVar]) -> Vec<String> {
    let version = spec.autoscaler_options.as_ref().and_then(|options| options.version);
    let mut problems = Vec::new();
    if version.is_some() && has_env(head_env, RAY_ENABLE_AUTOSCALER_V2) {
        problems.push(format!(
            "both .spec.autoscalerOptions.version and head Pod env var {RAY_ENABLE_AUTOSCALER_V2} are set, please only use the former"
        ));
    }
    if version == Some(AutoscalerVersion::V2) {
        if restarts_in_place(&spec.head_group_spec.template) {
            problems.push("restartPolicy for head Pod should be Never or unset when using autoscaler V2".to_string());
        }
        for group in spec.worker_groups().iter().filter(|group| restarts_in_place(&group.template)) {
            problems.push(format!(
                "restartPolicy for worker group {} should be Never or unset when using autoscaler V2",
                group.group_name
            ));
        }
    }
    problems
}

/// A RayJob's spec (§3.1 `ValidateRayJobSpec`).
pub fn validate_ray_job(job: &RayJob, gates: &FeatureGates) -> Vec<String> {
    let spec = &job.spec;
    let mut problems = Vec::new();

    // The CRD's rules.
    problems.extend(managed_by_problem(spec.managed_by.as_deref()));
    let policy = spec.deletion();
    if spec.deletion_policy.is_some() && policy.is_none() {
        problems.push("the deletionPolicy field value must be either 'DeleteCluster', 'DeleteWorkers', 'DeleteSelf', or 'DeleteNone'".to_string());
    }
    // DEVIATIONS 15: the field is a free string in the CRD, so the controller names the valid values.
    if spec.mode().is_none() {
        problems.push(format!(
            "spec.submissionMode value {} is invalid, valid options are {}",
            spec.submission_mode.as_deref().unwrap_or_default(),
            one_of(&SubmissionMode::ALL.map(SubmissionMode::as_str))
        ));
    }

    let suspend = spec.suspend == Some(true);
    let shutdown_after_job_finishes = spec.shutdown_after_job_finishes == Some(true);
    let cluster_selector_mode = spec.cluster_selector.as_ref().is_some_and(|selector| !selector.is_empty());
    if suspend && !shutdown_after_job_finishes {
        problems.push("a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended".to_string());
    }
    if suspend && cluster_selector_mode {
        problems.push("the ClusterSelector mode doesn't support the suspend operation".to_string());
    }
    match &spec.ray_cluster_spec {
        None if !cluster_selector_mode => {
            problems.push("one of RayClusterSpec or ClusterSelector must be set".to_string());
        }
        None => {}
        // DEVIATIONS 15, where v1.4+ checks the embedded spec.
        Some(cluster_spec) => {
            problems.extend(embedded_cluster_problems(
                "spec.rayClusterSpec",
                cluster_spec,
                annotations(&job.metadata),
                gates,
            ));
        }
    }
    if let Some(problem) = spec.runtime_env_yaml.as_deref().and_then(runtime_env_problem) {
        problems.push(problem);
    }
    if spec.active_deadline_seconds.is_some_and(|seconds| seconds <= 0) {
        problems.push("activeDeadlineSeconds must be a positive integer".to_string());
    }
    if spec.backoff_limit.is_some_and(|limit| limit < 0) {
        problems.push("backoffLimit must be a positive integer".to_string());
    }
    if spec.deletion_policy.is_some() && !gates.enabled(Feature::RayJobDeletionPolicy) {
        problems
            .push("RayJobDeletionPolicy feature gate must be enabled to use the DeletionPolicy feature".to_string());
    }
    if cluster_selector_mode
        && let Some(policy @ (DeletionPolicy::DeleteCluster | DeletionPolicy::DeleteWorkers)) = policy
    {
        problems.push(format!("the ClusterSelector mode doesn't support DeletionPolicy={}", policy.as_str()));
    }
    if policy == Some(DeletionPolicy::DeleteWorkers)
        && spec.ray_cluster_spec.as_ref().is_some_and(RayClusterSpec::autoscaling_enabled)
    {
        problems.push(
            "DeletionPolicy=DeleteWorkers currently does not support RayCluster with autoscaling enabled".to_string(),
        );
    }
    if shutdown_after_job_finishes && policy == Some(DeletionPolicy::DeleteNone) {
        // The typo is KubeRay's, kept so that the message matches.
        problems.push("shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'".to_string());
    }

    problems
}

/// A RayJob's status against its spec (§3.1 `ValidateRayJobStatus`).
pub fn validate_ray_job_status(job: &RayJob) -> Vec<String> {
    let waiting =
        job.status.as_ref().and_then(|status| status.job_deployment_status) == Some(JobDeploymentStatus::Waiting);
    if waiting && job.spec.mode() != Some(SubmissionMode::Interactive) {
        vec![
            "invalid RayJob State: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"
                .to_string(),
        ]
    } else {
        Vec::new()
    }
}

/// A RayService's spec (§4.1 `ValidateRayServiceSpec`).
pub fn validate_ray_service(service: &RayService, gates: &FeatureGates) -> Vec<String> {
    let spec = &service.spec;
    // A missing config is an empty cluster spec to KubeRay (a struct, not a pointer): its checks say what is missing.
    let default_config = RayClusterSpec::default();
    let config = spec.ray_cluster_config.as_ref().unwrap_or(&default_config);

    // DEVIATIONS 15, first, where v1.4+ checks the embedded spec.
    let mut problems =
        embedded_cluster_problems("spec.rayClusterConfig", config, annotations(&service.metadata), gates);
    let head_service_named = config
        .head_group_spec
        .head_service
        .as_ref()
        .and_then(|service| service.metadata.name.as_deref())
        .is_some_and(|name| !name.is_empty());
    if head_service_named {
        problems.push("spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set".to_string());
    }
    if let Some(kind) = spec.upgrade_strategy.as_ref().and_then(|strategy| strategy.type_.as_deref())
        && UpgradeStrategy::parse(kind).is_none()
    {
        problems
            .push(format!("Spec.UpgradeStrategy.Type value {kind} is invalid, valid options are NewCluster or None"));
    }
    // DEVIATIONS 3, with v1.5's message.
    if let Some(seconds) = spec.ray_cluster_deletion_delay_seconds.filter(|seconds| *seconds < 0) {
        problems.push(format!("Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got {seconds}"));
    }
    problems
}

/// The CRDs' CEL rule on `managedBy`.
fn managed_by_problem(managed_by: Option<&str>) -> Option<String> {
    managed_by
        .filter(|value| ![KUBERAY_MANAGED_BY, MULTIKUEUE_MANAGED_BY].contains(value))
        .map(|_| MANAGED_BY_MESSAGE.to_string())
}

/// An embedded cluster spec's problems, each prefixed with the field that holds it: KubeRay's messages say
/// `headGroupSpec ...`, which would otherwise read as if the RayJob or RayService itself had one.
fn embedded_cluster_problems(
    field: &str,
    spec: &RayClusterSpec,
    annotations: &BTreeMap<String, String>,
    gates: &FeatureGates,
) -> Vec<String> {
    validate_ray_cluster_spec(spec, annotations, gates)
        .into_iter()
        .map(|problem| format!("{field}: {problem}"))
        .collect()
}

fn annotations(metadata: &ObjectMeta) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    metadata.annotations.as_ref().unwrap_or(&NONE)
}

/// `runtimeEnvYAML` must be a YAML map; empty and `null` are an empty one, as in Go.
fn runtime_env_problem(yaml: &str) -> Option<String> {
    serde_saphyr::from_str::<Option<serde_json::Map<String, serde_json::Value>>>(yaml).err().map(|error| {
        let message = error.to_string();
        // The parser appends a source excerpt on further lines; the message already quotes the whole YAML.
        let first_line = message.lines().next().unwrap_or_default();
        format!("failed to unmarshal RuntimeEnvYAML: {yaml}: {first_line}")
    })
}

fn containers(template: &PodTemplateSpec) -> &[Container] {
    template.spec.as_ref().map(|pod| pod.containers.as_slice()).unwrap_or_default()
}

/// The env of the head's Ray container (the first one), or none when the head has no container.
fn head_env(spec: &RayClusterSpec) -> &[EnvVar] {
    containers(&spec.head_group_spec.template)
        .first()
        .and_then(|container| container.env.as_deref())
        .unwrap_or_default()
}

fn has_env(env: &[EnvVar], name: &str) -> bool {
    env.iter().any(|var| var.name == name)
}

/// A `restartPolicy` other than Never; unset (or empty) is fine, since the operator then sets Never itself.
fn restarts_in_place(template: &PodTemplateSpec) -> bool {
    template
        .spec
        .as_ref()
        .and_then(|pod| pod.restart_policy.as_deref())
        .is_some_and(|policy| !policy.is_empty() && policy != "Never")
}

/// `a, b, c or d`.
fn one_of(values: &[&str]) -> String {
    match values.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {

    use k8s_openapi::api::core::v1::{PodSpec, Service};
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;
    use crate::api::raycluster::{AutoscalerOptions, GcsFaultToleranceOptions};
    use crate::api::rayjob::{RayJobSpec, RayJobStatus};
    use crate::api::rayservice::{RayServiceSpec, RayServiceUpgradeStrategy};

    fn container(name: &str) -> Container {
        Container { name: name.to_string(), ..Default::default() }
    }

    fn template(containers: Vec<Container>) -> PodTemplateSpec {
        PodTemplateSpec { spec: Some(PodSpec { containers, ..Default::default() }), ..Default::default() }
    }

    fn worker(name: &str) -> WorkerGroupSpec {
        WorkerGroupSpec {
            group_name: name.to_string(),
            replicas: Some(1),
            min_replicas: Some(0),
            max_replicas: Some(5),
            template: template(vec![container("ray-worker")]),
            num_of_hosts: 1,
            ..Default::default()
        }
    }

    fn cluster_spec() -> RayClusterSpec {
        let mut spec = RayClusterSpec { worker_group_specs: Some(vec![worker("small")]), ..Default::default() };
        spec.head_group_spec.template = template(vec![container("ray-head")]);
        spec
    }

    fn add_head_env(spec: &mut RayClusterSpec, name: &str) {
        if let Some(head) = spec.head_group_spec.template.spec.as_mut().and_then(|pod| pod.containers.first_mut()) {
            head.env.get_or_insert_default().push(EnvVar { name: name.to_string(), ..Default::default() });
        }
    }

    fn first_worker(spec: &mut RayClusterSpec) -> &mut WorkerGroupSpec {
        &mut spec.worker_group_specs.as_mut().unwrap()[0]
    }

    fn set_restart_policy(template: &mut PodTemplateSpec, policy: &str) {
        template.spec.get_or_insert_default().restart_policy = Some(policy.to_string());
    }

    fn with_ft_options(spec: &mut RayClusterSpec) {
        spec.gcs_fault_tolerance_options =
            Some(GcsFaultToleranceOptions { redis_address: "redis:6379".to_string(), ..Default::default() });
    }

    fn with_autoscaler(spec: &mut RayClusterSpec, version: Option<AutoscalerVersion>) {
        spec.enable_in_tree_autoscaling = Some(true);
        spec.autoscaler_options = Some(AutoscalerOptions { version, ..Default::default() });
    }

    fn annotate(annotations: &mut BTreeMap<String, String>, key: &str, value: &str) {
        annotations.insert(key.to_string(), value.to_string());
    }

    fn gates_with_deletion_policy(enabled: bool) -> FeatureGates {
        FeatureGates::default().with(Feature::RayJobDeletionPolicy, enabled)
    }

    /// A cluster spec with the annotations of the object that holds it.
    struct Cluster {
        spec: RayClusterSpec,
        annotations: BTreeMap<String, String>,
    }

    impl Cluster {
        fn problems(&self, gates: &FeatureGates) -> Vec<String> {
            validate_ray_cluster_spec(&self.spec, &self.annotations, gates)
        }
    }

    fn cluster(edit: fn(&mut RayClusterSpec, &mut BTreeMap<String, String>)) -> Cluster {
        let mut cluster = Cluster { spec: cluster_spec(), annotations: BTreeMap::new() };
        edit(&mut cluster.spec, &mut cluster.annotations);
        cluster
    }

    #[rstest]
    #[case::managed_by_unknown(cluster(|s, _| s.managed_by = Some("argo".into())), &["the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'"])]
    #[case::duplicate_group_names(
        cluster(|s, _| s.worker_group_specs.get_or_insert_default().push(worker("small"))),
        &["worker group names must be unique"]
    )]
    #[case::head_without_container(
        cluster(|s, _| s.head_group_spec.template = template(vec![])),
        &["headGroupSpec should have at least one container"]
    )]
    #[case::worker_without_container(
        cluster(|s, _| first_worker(s).template = PodTemplateSpec::default()),
        &["workerGroupSpec should have at least one container"]
    )]
    #[case::negative_min_replicas(
        cluster(|s, _| first_worker(s).min_replicas = Some(-1)),
        &["worker group small has negative minReplicas -1"]
    )]
    #[case::negative_max_replicas(
        cluster(|s, _| first_worker(s).max_replicas = Some(-2)),
        &["worker group small has negative maxReplicas -2", "worker group small has minReplicas 0 greater than maxReplicas -2"]
    )]
    #[case::min_above_max(
        cluster(|s, _| first_worker(s).min_replicas = Some(6)),
        &["worker group small has minReplicas 6 greater than maxReplicas 5"]
    )]
    #[case::negative_replicas(
        cluster(|s, _| first_worker(s).replicas = Some(i32::MIN)),
        &["worker group small has negative replicas -2147483648"]
    )]
    #[case::ft_annotation_and_options(
        cluster(|s, a| { with_ft_options(s); annotate(a, RAY_FT_ENABLED_ANNOTATION, "false") }),
        &["ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set. Please use only GcsFaultToleranceOptions to configure GCS fault tolerance"]
    )]
    #[case::redis_address_without_ft(
        cluster(|s, _| add_head_env(s, RAY_REDIS_ADDRESS)),
        &["RAY_REDIS_ADDRESS is set which implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance"]
    )]
    #[case::redis_password_param_with_options(
        cluster(|s, _| { with_ft_options(s); s.head_group_spec.ray_start_params.insert("redis-password".into(), "x".into()); }),
        &["cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead"]
    )]
    #[case::redis_password_env_with_options(
        cluster(|s, _| { with_ft_options(s); add_head_env(s, REDIS_PASSWORD) }),
        &["cannot set `REDIS_PASSWORD` env var in head Pod when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead"]
    )]
    #[case::redis_address_env_with_options(
        cluster(|s, _| { with_ft_options(s); add_head_env(s, RAY_REDIS_ADDRESS) }),
        &["cannot set `RAY_REDIS_ADDRESS` env var in head Pod when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisAddress instead"]
    )]
    #[case::external_storage_namespace_with_options(
        cluster(|s, a| { with_ft_options(s); annotate(a, RAY_EXTERNAL_STORAGE_NS_ANNOTATION, "ns") }),
        &["cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.ExternalStorageNamespace instead"]
    )]
    #[case::redis_username_param(
        cluster(|s, _| { s.head_group_spec.ray_start_params.insert("redis-username".into(), "u".into()); }),
        &["cannot set redis username in rayStartParams or environment variables - use GcsFaultToleranceOptions.RedisUsername instead"]
    )]
    #[case::redis_username_env(
        cluster(|s, _| add_head_env(s, REDIS_USERNAME)),
        &["cannot set redis username in rayStartParams or environment variables - use GcsFaultToleranceOptions.RedisUsername instead"]
    )]
    #[case::suspended_group_with_autoscaler(
        cluster(|s, _| { with_autoscaler(s, None); first_worker(s).suspend = Some(true) }),
        &["suspending worker groups is not currently supported with Autoscaler enabled"]
    )]
    #[case::autoscaler_version_and_env(
        cluster(|s, _| { with_autoscaler(s, Some(AutoscalerVersion::V1)); add_head_env(s, RAY_ENABLE_AUTOSCALER_V2) }),
        &["both .spec.autoscalerOptions.version and head Pod env var RAY_enable_autoscaler_v2 are set, please only use the former"]
    )]
    #[case::autoscaler_v2_head_restart_policy(
        cluster(|s, _| { with_autoscaler(s, Some(AutoscalerVersion::V2)); set_restart_policy(&mut s.head_group_spec.template, "Always") }),
        &["restartPolicy for head Pod should be Never or unset when using autoscaler V2"]
    )]
    #[case::autoscaler_v2_worker_restart_policy(
        cluster(|s, _| { with_autoscaler(s, Some(AutoscalerVersion::V2)); set_restart_policy(&mut first_worker(s).template, "OnFailure") }),
        &["restartPolicy for worker group small should be Never or unset when using autoscaler V2"]
    )]
    fn cluster_spec_problems_use_kuberays_messages(#[case] cluster: Cluster, #[case] expected: &[&str]) {
        assert_eq!(cluster.problems(&FeatureGates::default()), expected);
    }

    #[rstest]
    #[case::managed_by_kuberay(cluster(|s, _| s.managed_by = Some(KUBERAY_MANAGED_BY.into())))]
    #[case::managed_by_multikueue(cluster(|s, _| s.managed_by = Some(MULTIKUEUE_MANAGED_BY.into())))]
    #[case::redis_address_with_ft_annotation(cluster(|s, a| { add_head_env(s, RAY_REDIS_ADDRESS); annotate(a, RAY_FT_ENABLED_ANNOTATION, "TRUE") }))]
    #[case::empty_redis_password_with_options(
        cluster(|s, _| { with_ft_options(s); s.head_group_spec.ray_start_params.insert("redis-password".into(), String::new()); }
    ))]
    #[case::empty_external_storage_annotation(cluster(|s, a| { with_ft_options(s); annotate(a, RAY_EXTERNAL_STORAGE_NS_ANNOTATION, "") }))]
    #[case::suspended_group_without_autoscaler(cluster(|s, _| first_worker(s).suspend = Some(true)))]
    #[case::autoscaler_v2_never_restarts(cluster(|s, _| {
        with_autoscaler(s, Some(AutoscalerVersion::V2));
        set_restart_policy(&mut s.head_group_spec.template, "Never");
        set_restart_policy(&mut first_worker(s).template, "");
    }))]
    #[case::autoscaler_v1_restarts(cluster(|s, _| { with_autoscaler(s, Some(AutoscalerVersion::V1)); set_restart_policy(&mut s.head_group_spec.template, "Always") }))]
    #[case::env_without_version(cluster(|s, _| { with_autoscaler(s, None); add_head_env(s, RAY_ENABLE_AUTOSCALER_V2) }))]
    #[case::version_without_autoscaling(cluster(|s, _| {
        s.autoscaler_options = Some(AutoscalerOptions { version: Some(AutoscalerVersion::V2), ..Default::default() });
        add_head_env(s, RAY_ENABLE_AUTOSCALER_V2);
        set_restart_policy(&mut s.head_group_spec.template, "Always");
    }))]
    #[case::replicas_outside_min_max_are_clamped_not_rejected(cluster(|s, _| first_worker(s).replicas = Some(50)))]
    #[case::no_worker_groups(cluster(|s, _| s.worker_group_specs = None))]
    fn cluster_specs_kuberay_accepts_are_clean(#[case] cluster: Cluster) {
        assert_eq!(cluster.problems(&FeatureGates::default()), Vec::<String>::new());
    }

    #[test]
    fn a_cluster_reads_its_own_annotations() {
        let mut cluster = RayCluster::new("c", cluster_spec());
        with_ft_options(&mut cluster.spec);
        cluster.metadata.annotations =
            Some([(RAY_EXTERNAL_STORAGE_NS_ANNOTATION.to_string(), "ns".to_string())].into());
        assert_eq!(
            validate_ray_cluster(&cluster, &FeatureGates::default()),
            [
                "cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.ExternalStorageNamespace instead"
            ]
        );
    }

    #[test]
    fn every_cluster_problem_is_reported_in_order() {
        let problems = cluster(|s, a| {
            s.managed_by = Some("argo".into());
            s.head_group_spec.template = template(vec![]);
            s.head_group_spec.ray_start_params.insert("redis-username".into(), "u".into());
            with_ft_options(s);
            annotate(a, RAY_FT_ENABLED_ANNOTATION, "true");
            let mut broken = worker("broken");
            broken.template = template(vec![]);
            broken.min_replicas = Some(-3);
            let mut empty = worker("empty");
            empty.template = template(vec![]);
            empty.max_replicas = Some(-1);
            s.worker_group_specs = Some(vec![broken, worker("small"), empty, worker("small")]);
        })
        .problems(&FeatureGates::default());
        assert_eq!(
            problems,
            [
                "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
                "worker group names must be unique",
                "headGroupSpec should have at least one container",
                "workerGroupSpec should have at least one container",
                "worker group broken has negative minReplicas -3",
                "worker group empty has negative maxReplicas -1",
                "worker group empty has minReplicas 0 greater than maxReplicas -1",
                "ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set. Please use only GcsFaultToleranceOptions to configure GCS fault tolerance",
                "cannot set redis username in rayStartParams or environment variables - use GcsFaultToleranceOptions.RedisUsername instead",
            ]
        );
    }

    fn job_spec() -> RayJobSpec {
        RayJobSpec {
            entrypoint: Some("python script.py".to_string()),
            ray_cluster_spec: Some(cluster_spec()),
            submission_mode: Some("K8sJobMode".to_string()),
            ..Default::default()
        }
    }

    fn job(edit: fn(&mut RayJobSpec)) -> RayJob {
        let mut spec = job_spec();
        edit(&mut spec);
        RayJob::new("j", spec)
    }

    fn select_cluster(spec: &mut RayJobSpec) {
        spec.cluster_selector = Some([("ray.io/cluster".to_string(), "existing".to_string())].into());
    }

    #[rstest]
    #[case::managed_by_unknown(job(|s| s.managed_by = Some("argo".into())), &["the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'"])]
    #[case::deletion_policy_unknown(
        job(|s| s.deletion_policy = Some("DeleteEverything".into())),
        &["the deletionPolicy field value must be either 'DeleteCluster', 'DeleteWorkers', 'DeleteSelf', or 'DeleteNone'"]
    )]
    #[case::submission_mode_unknown(
        job(|s| s.submission_mode = Some("CronMode".into())),
        &["spec.submissionMode value CronMode is invalid, valid options are K8sJobMode, HTTPMode, InteractiveMode or SidecarMode"]
    )]
    #[case::suspend_without_shutdown(
        job(|s| s.suspend = Some(true)),
        &["a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"]
    )]
    #[case::suspend_with_cluster_selector(
        job(|s| { s.suspend = Some(true); s.shutdown_after_job_finishes = Some(true); select_cluster(s) }),
        &["the ClusterSelector mode doesn't support the suspend operation"]
    )]
    #[case::no_cluster(job(|s| s.ray_cluster_spec = None), &["one of RayClusterSpec or ClusterSelector must be set"])]
    #[case::empty_cluster_selector(
        job(|s| { s.ray_cluster_spec = None; s.cluster_selector = Some(BTreeMap::new()) }),
        &["one of RayClusterSpec or ClusterSelector must be set"]
    )]
    #[case::embedded_cluster_spec(
        job(|s| s.ray_cluster_spec = Some(RayClusterSpec::default())),
        &["spec.rayClusterSpec: headGroupSpec should have at least one container"]
    )]
    #[case::runtime_env_not_a_map(
        job(|s| s.runtime_env_yaml = Some("invalid_yaml_str".into())),
        &["failed to unmarshal RuntimeEnvYAML: invalid_yaml_str: error: line 1 column 1: expected mapping start"]
    )]
    #[case::runtime_env_broken(
        job(|s| s.runtime_env_yaml = Some("pip: [numpy".into())),
        &["failed to unmarshal RuntimeEnvYAML: pip: [numpy: error: line 1 column 6: unclosed bracket '['"]
    )]
    #[case::active_deadline_zero(job(|s| s.active_deadline_seconds = Some(0)), &["activeDeadlineSeconds must be a positive integer"])]
    #[case::backoff_limit_negative(job(|s| s.backoff_limit = Some(-1)), &["backoffLimit must be a positive integer"])]
    #[case::selector_delete_cluster(
        job(|s| { select_cluster(s); s.deletion_policy = Some("DeleteCluster".into()) }),
        &["the ClusterSelector mode doesn't support DeletionPolicy=DeleteCluster"]
    )]
    #[case::selector_delete_workers(
        job(|s| { select_cluster(s); s.deletion_policy = Some("DeleteWorkers".into()) }),
        &["the ClusterSelector mode doesn't support DeletionPolicy=DeleteWorkers"]
    )]
    #[case::delete_workers_with_autoscaling(
        job(|s| { s.deletion_policy = Some("DeleteWorkers".into()); s.ray_cluster_spec.get_or_insert_default().enable_in_tree_autoscaling = Some(true) }),
        &["DeletionPolicy=DeleteWorkers currently does not support RayCluster with autoscaling enabled"]
    )]
    #[case::shutdown_with_delete_none(
        job(|s| { s.shutdown_after_job_finishes = Some(true); s.deletion_policy = Some("DeleteNone".into()) }),
        &["shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'"]
    )]
    fn job_problems_use_kuberays_messages(#[case] job: RayJob, #[case] expected: &[&str]) {
        assert_eq!(validate_ray_job(&job, &FeatureGates::default()), expected);
    }

    #[rstest]
    #[case::managed_by_multikueue(job(|s| s.managed_by = Some(MULTIKUEUE_MANAGED_BY.into())))]
    #[case::default_submission_mode(job(|s| s.submission_mode = None))]
    #[case::sidecar_mode(job(|s| s.submission_mode = Some("SidecarMode".into())))]
    #[case::empty_runtime_env(job(|s| s.runtime_env_yaml = Some(String::new())))]
    #[case::null_runtime_env(job(|s| s.runtime_env_yaml = Some("null".into())))]
    #[case::runtime_env_map(job(|s| s.runtime_env_yaml = Some("pip:\n  - numpy\nenv_vars:\n  A: b\n".into())))]
    #[case::suspended_with_shutdown(job(|s| { s.suspend = Some(true); s.shutdown_after_job_finishes = Some(true) }))]
    #[case::cluster_selector_only(job(|s| { s.ray_cluster_spec = None; select_cluster(s); s.deletion_policy = Some("DeleteSelf".into()) }))]
    #[case::positive_deadline_and_zero_backoff(job(|s| { s.active_deadline_seconds = Some(1); s.backoff_limit = Some(0) }))]
    #[case::delete_none_without_shutdown(job(|s| s.deletion_policy = Some("DeleteNone".into())))]
    fn jobs_kuberay_accepts_are_clean(#[case] job: RayJob) {
        assert_eq!(validate_ray_job(&job, &FeatureGates::default()), Vec::<String>::new());
    }

    /// Each level repeats the previous one nine times: 9^20 nodes once expanded.
    fn alias_bomb() -> String {
        let mut yaml = "l0: &l0 x\n".to_string();
        for level in 1..20 {
            let previous = vec![format!("*l{}", level - 1); 9].join(", ");
            yaml.push_str(&format!("l{level}: &l{level} [{previous}]\n"));
        }
        yaml
    }

    #[rstest]
    #[case::too_deep(format!("a: {}", "[".repeat(100_000)))]
    #[case::alias_bomb(alias_bomb())]
    fn hostile_runtime_env_is_reported_not_fatal(#[case] yaml: String) {
        let mut hostile = job(|_| {});
        hostile.spec.runtime_env_yaml = Some(yaml.clone());
        let problems = validate_ray_job(&hostile, &FeatureGates::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(&format!("failed to unmarshal RuntimeEnvYAML: {yaml}: ")));
    }

    #[test]
    fn embedded_cluster_spec_is_read_with_the_jobs_annotations() {
        let mut job = job(|s| with_ft_options(s.ray_cluster_spec.get_or_insert_default()));
        job.metadata.annotations = Some([(RAY_FT_ENABLED_ANNOTATION.to_string(), "true".to_string())].into());
        assert_eq!(
            validate_ray_job(&job, &FeatureGates::default()),
            [
                "spec.rayClusterSpec: ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set. Please use only GcsFaultToleranceOptions to configure GCS fault tolerance"
            ]
        );
    }

    #[test]
    fn every_job_problem_is_reported_in_order() {
        let job = job(|s| {
            s.submission_mode = Some("Cron".into());
            s.suspend = Some(true);
            s.cluster_selector = Some([("ray.io/cluster".to_string(), "c".to_string())].into());
            first_worker(s.ray_cluster_spec.get_or_insert_default()).min_replicas = Some(9);
            s.runtime_env_yaml = Some("[1]".into());
            s.active_deadline_seconds = Some(-5);
            s.backoff_limit = Some(-1);
            s.deletion_policy = Some("DeleteCluster".into());
        });
        assert_eq!(
            validate_ray_job(&job, &FeatureGates::default()),
            [
                "spec.submissionMode value Cron is invalid, valid options are K8sJobMode, HTTPMode, InteractiveMode or SidecarMode",
                "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended",
                "the ClusterSelector mode doesn't support the suspend operation",
                "spec.rayClusterSpec: worker group small has minReplicas 9 greater than maxReplicas 5",
                "failed to unmarshal RuntimeEnvYAML: [1]: error: line 1 column 1: expected mapping start",
                "activeDeadlineSeconds must be a positive integer",
                "backoffLimit must be a positive integer",
                "the ClusterSelector mode doesn't support DeletionPolicy=DeleteCluster",
            ]
        );
    }

    #[rstest]
    #[case::gate_off(false, &["suspending worker groups is currently available when the RayJobDeletionPolicy feature gate is enabled"], &["RayJobDeletionPolicy feature gate must be enabled to use the DeletionPolicy feature"])]
    #[case::gate_on(true, &[], &[])]
    fn the_deletion_policy_gate_flips_its_two_messages(
        #[case] enabled: bool,
        #[case] cluster_expected: &[&str],
        #[case] job_expected: &[&str],
    ) {
        let gates = gates_with_deletion_policy(enabled);
        assert_eq!(cluster(|s, _| first_worker(s).suspend = Some(true)).problems(&gates), cluster_expected);
        let with_policy = job(|s| s.deletion_policy = Some("DeleteCluster".into()));
        assert_eq!(validate_ray_job(&with_policy, &gates), job_expected);
        let embedded = job(|s| first_worker(s.ray_cluster_spec.get_or_insert_default()).suspend = Some(true));
        let embedded_expected: Vec<String> =
            cluster_expected.iter().map(|message| format!("spec.rayClusterSpec: {message}")).collect();
        assert_eq!(validate_ray_job(&embedded, &gates), embedded_expected);
    }

    #[rstest]
    #[case::waiting_in_k8s_job_mode(JobDeploymentStatus::Waiting, Some("K8sJobMode"), &["invalid RayJob State: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"])]
    #[case::waiting_in_default_mode(JobDeploymentStatus::Waiting, None, &["invalid RayJob State: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"])]
    #[case::waiting_in_unknown_mode(JobDeploymentStatus::Waiting, Some("Cron"), &["invalid RayJob State: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"])]
    #[case::waiting_in_interactive_mode(JobDeploymentStatus::Waiting, Some("InteractiveMode"), &[])]
    #[case::running_in_k8s_job_mode(JobDeploymentStatus::Running, Some("K8sJobMode"), &[])]
    fn waiting_is_only_valid_in_interactive_mode(
        #[case] deployment_status: JobDeploymentStatus,
        #[case] mode: Option<&str>,
        #[case] expected: &[&str],
    ) {
        let mut job = RayJob::new("j", RayJobSpec { submission_mode: mode.map(str::to_string), ..job_spec() });
        job.status = Some(RayJobStatus { job_deployment_status: Some(deployment_status), ..Default::default() });
        assert_eq!(validate_ray_job_status(&job), expected);
    }

    #[test]
    fn a_job_without_status_has_a_valid_status() {
        assert_eq!(validate_ray_job_status(&job(|_| {})), Vec::<String>::new());
    }

    fn service(edit: fn(&mut RayServiceSpec)) -> RayService {
        let mut spec = RayServiceSpec { ray_cluster_config: Some(cluster_spec()), ..Default::default() };
        edit(&mut spec);
        RayService::new("s", spec)
    }

    fn upgrade(kind: &str) -> Option<RayServiceUpgradeStrategy> {
        Some(RayServiceUpgradeStrategy { type_: Some(kind.to_string()) })
    }

    #[rstest]
    #[case::head_service_named(
        service(|s| {
            let mut head_service = Service::default();
            head_service.metadata.name = Some("custom".into());
            s.ray_cluster_config.get_or_insert_default().head_group_spec.head_service = Some(head_service);
        }),
        &["spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set"]
    )]
    #[case::upgrade_type_unknown(
        service(|s| s.upgrade_strategy = upgrade("BlueGreen")),
        &["Spec.UpgradeStrategy.Type value BlueGreen is invalid, valid options are NewCluster or None"]
    )]
    #[case::upgrade_type_empty(
        service(|s| s.upgrade_strategy = upgrade("")),
        &["Spec.UpgradeStrategy.Type value  is invalid, valid options are NewCluster or None"]
    )]
    #[case::negative_deletion_delay(
        service(|s| s.ray_cluster_deletion_delay_seconds = Some(-1)),
        &["Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got -1"]
    )]
    #[case::embedded_cluster_config(
        service(|s| first_worker(s.ray_cluster_config.get_or_insert_default()).max_replicas = Some(-1)),
        &["spec.rayClusterConfig: worker group small has negative maxReplicas -1", "spec.rayClusterConfig: worker group small has minReplicas 0 greater than maxReplicas -1"]
    )]
    #[case::missing_cluster_config(
        service(|s| s.ray_cluster_config = None),
        &["spec.rayClusterConfig: headGroupSpec should have at least one container"]
    )]
    fn service_problems_use_kuberays_messages(#[case] service: RayService, #[case] expected: &[&str]) {
        assert_eq!(validate_ray_service(&service, &FeatureGates::default()), expected);
    }

    #[rstest]
    #[case::new_cluster(service(|s| s.upgrade_strategy = upgrade("NewCluster")))]
    #[case::no_upgrade(service(|s| s.upgrade_strategy = upgrade("None")))]
    #[case::zero_deletion_delay(service(|s| s.ray_cluster_deletion_delay_seconds = Some(0)))]
    #[case::head_service_without_name(service(|s| {
        s.ray_cluster_config.get_or_insert_default().head_group_spec.head_service = Some(Service::default())
    }))]
    fn services_kuberay_accepts_are_clean(#[case] service: RayService) {
        assert_eq!(validate_ray_service(&service, &FeatureGates::default()), Vec::<String>::new());
    }

    #[test]
    fn every_service_problem_is_reported_in_order() {
        let service = service(|s| {
            s.ray_cluster_config.get_or_insert_default().head_group_spec.template = template(vec![]);
            s.upgrade_strategy = upgrade("Rolling");
            s.ray_cluster_deletion_delay_seconds = Some(i32::MIN);
        });
        assert_eq!(
            validate_ray_service(&service, &FeatureGates::default()),
            [
                "spec.rayClusterConfig: headGroupSpec should have at least one container",
                "Spec.UpgradeStrategy.Type value Rolling is invalid, valid options are NewCluster or None",
                "Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got -2147483648",
            ]
        );
    }

    fn arbitrary_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("K8sJobMode".to_string()),
            Just("InteractiveMode".to_string()),
            Just("DeleteWorkers".to_string()),
            Just("DeleteNone".to_string()),
            Just("NewCluster".to_string()),
            Just("Never".to_string()),
            Just("pip: [numpy]".to_string()),
            Just("a: &x [*x]".to_string()),
            ".*",
        ]
    }

    fn arbitrary_count() -> impl Strategy<Value = Option<i32>> {
        prop_oneof![
            Just(None),
            Just(Some(i32::MIN)),
            Just(Some(i32::MAX)),
            (-3..8).prop_map(Some),
            any::<i32>().prop_map(Some)
        ]
    }

    fn arbitrary_template() -> impl Strategy<Value = PodTemplateSpec> {
        let env_name = prop_oneof![
            Just(RAY_REDIS_ADDRESS.to_string()),
            Just(REDIS_PASSWORD.to_string()),
            Just(REDIS_USERNAME.to_string()),
            Just(RAY_ENABLE_AUTOSCALER_V2.to_string()),
            ".{0,8}",
        ];
        let container = proptest::collection::vec(env_name, 0..3).prop_map(|names| Container {
            env: Some(names.into_iter().map(|name| EnvVar { name, ..Default::default() }).collect()),
            ..Default::default()
        });
        (proptest::option::of(proptest::collection::vec(container, 0..=3)), proptest::option::of(arbitrary_text()))
            .prop_map(|(containers, restart_policy)| PodTemplateSpec {
                spec: containers.map(|containers| PodSpec { containers, restart_policy, ..Default::default() }),
                ..Default::default()
            })
    }

    fn arbitrary_worker() -> impl Strategy<Value = WorkerGroupSpec> {
        (
            "[a-c]{0,2}",
            arbitrary_count(),
            arbitrary_count(),
            arbitrary_count(),
            proptest::option::of(any::<bool>()),
            arbitrary_template(),
        )
            .prop_map(|(group_name, replicas, min_replicas, max_replicas, suspend, template)| {
                WorkerGroupSpec {
                    group_name,
                    replicas,
                    min_replicas,
                    max_replicas,
                    suspend,
                    template,
                    num_of_hosts: 1,
                    ..Default::default()
                }
            })
    }

    fn arbitrary_cluster_spec() -> impl Strategy<Value = RayClusterSpec> {
        let version = proptest::option::of(prop_oneof![Just(AutoscalerVersion::V1), Just(AutoscalerVersion::V2)]);
        let start_params = proptest::collection::btree_map(
            prop_oneof![Just("redis-password".to_string()), Just("redis-username".to_string()), ".{0,6}"],
            arbitrary_text(),
            0..3,
        );
        (
            arbitrary_template(),
            proptest::option::of(proptest::collection::vec(arbitrary_worker(), 0..4)),
            proptest::option::of(any::<bool>()),
            proptest::option::of(version),
            any::<bool>(),
            proptest::option::of(arbitrary_text()),
            start_params,
        )
            .prop_map(
                |(head, workers, autoscaling, autoscaler_version, ft_options, managed_by, start_params)| {
                    let mut spec = RayClusterSpec {
                        worker_group_specs: workers,
                        enable_in_tree_autoscaling: autoscaling,
                        autoscaler_options: autoscaler_version
                            .map(|version| AutoscalerOptions { version, ..Default::default() }),
                        managed_by,
                        ..Default::default()
                    };
                    spec.head_group_spec.template = head;
                    spec.head_group_spec.ray_start_params = start_params;
                    if ft_options {
                        with_ft_options(&mut spec);
                    }
                    spec
                },
            )
    }

    fn arbitrary_annotations() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
        let key = prop_oneof![
            Just(RAY_FT_ENABLED_ANNOTATION.to_string()),
            Just(RAY_EXTERNAL_STORAGE_NS_ANNOTATION.to_string()),
            ".{0,6}"
        ];
        proptest::option::of(proptest::collection::btree_map(key, arbitrary_text(), 0..3))
    }

    fn arbitrary_job() -> impl Strategy<Value = RayJob> {
        let flags = (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::collection::btree_map(".{0,4}", ".{0,4}", 0..2)),
            proptest::option::of(arbitrary_text()),
        );
        (
            proptest::option::of(arbitrary_cluster_spec()),
            proptest::option::of(arbitrary_text()),
            proptest::option::of(arbitrary_text()),
            proptest::option::of(arbitrary_text()),
            arbitrary_count(),
            arbitrary_count(),
            flags,
            arbitrary_annotations(),
            proptest::option::of(prop_oneof![Just(JobDeploymentStatus::Waiting), Just(JobDeploymentStatus::Running)]),
        )
            .prop_map(
                |(
                    ray_cluster_spec,
                    submission_mode,
                    deletion_policy,
                    runtime_env_yaml,
                    active_deadline_seconds,
                    backoff_limit,
                    (suspend, shutdown_after_job_finishes, cluster_selector, managed_by),
                    annotations,
                    job_deployment_status,
                )| {
                    let mut job = RayJob::new(
                        "j",
                        RayJobSpec {
                            ray_cluster_spec,
                            submission_mode,
                            deletion_policy,
                            runtime_env_yaml,
                            active_deadline_seconds,
                            backoff_limit,
                            suspend,
                            shutdown_after_job_finishes,
                            cluster_selector,
                            managed_by,
                            ..Default::default()
                        },
                    );
                    job.metadata.annotations = annotations;
                    job.status = Some(RayJobStatus { job_deployment_status, ..Default::default() });
                    job
                },
            )
    }

    fn arbitrary_service() -> impl Strategy<Value = RayService> {
        (
            proptest::option::of(arbitrary_cluster_spec()),
            proptest::option::of(proptest::option::of(arbitrary_text())),
            arbitrary_count(),
            proptest::option::of(arbitrary_text()),
            arbitrary_annotations(),
        )
            .prop_map(
                |(config, upgrade_type, ray_cluster_deletion_delay_seconds, head_service_name, annotations)| {
                    let mut config = config;
                    if let (Some(config), Some(name)) = (config.as_mut(), head_service_name) {
                        let mut head_service = Service::default();
                        head_service.metadata.name = Some(name);
                        config.head_group_spec.head_service = Some(head_service);
                    }
                    let mut service = RayService::new(
                        "s",
                        RayServiceSpec {
                            ray_cluster_config: config,
                            upgrade_strategy: upgrade_type.map(|type_| RayServiceUpgradeStrategy { type_ }),
                            ray_cluster_deletion_delay_seconds,
                            ..Default::default()
                        },
                    );
                    service.metadata.annotations = annotations;
                    service
                },
            )
    }

    fn gates() -> impl Strategy<Value = FeatureGates> {
        any::<bool>().prop_map(gates_with_deletion_policy)
    }

    proptest! {
        #[test]
        fn cluster_validation_never_panics_and_is_deterministic(
            spec in arbitrary_cluster_spec(),
            annotations in arbitrary_annotations(),
            gates in gates(),
        ) {
            let mut cluster = RayCluster::new("c", spec);
            cluster.metadata.annotations = annotations;
            let problems = validate_ray_cluster(&cluster, &gates);
            prop_assert_eq!(&problems, &validate_ray_cluster(&cluster, &gates));
            prop_assert!(problems.iter().all(|problem| !problem.is_empty()));
        }

        #[test]
        fn job_validation_never_panics_and_is_deterministic(job in arbitrary_job(), gates in gates()) {
            let problems = validate_ray_job(&job, &gates);
            prop_assert_eq!(&problems, &validate_ray_job(&job, &gates));
            prop_assert!(problems.iter().all(|problem| !problem.is_empty()));
            let _ = validate_ray_job_status(&job);
        }

        #[test]
        fn service_validation_never_panics_and_is_deterministic(service in arbitrary_service(), gates in gates()) {
            let problems = validate_ray_service(&service, &gates);
            prop_assert_eq!(&problems, &validate_ray_service(&service, &gates));
            prop_assert!(problems.iter().all(|problem| !problem.is_empty()));
        }
    }
}
