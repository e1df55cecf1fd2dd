//! §5.3 step 3: the Job that deletes a GCS-fault-tolerant cluster's storage namespace from Redis once the cluster is
//! being deleted, built from the cluster's head Pod as KubeRay v1.3.0's `buildRedisCleanupJob` does.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::controller_owner_reference;
use super::names::{cluster_name, redis_cleanup_job_name};
use crate::api::RayCluster;
use crate::api::constants::{NODE_TYPE_REDIS_CLEANUP, RAY_NODE_TYPE_LABEL, REDIS_USERNAME};

/// Best effort: the cleanup gets 5 minutes and no retry.
const ACTIVE_DEADLINE_SECONDS: i64 = 300;

const CLEANUP_SCRIPT_PREFIX: &str = concat!(
    "echo \"To get more information about manually deleting the storage namespace in Redis and removing the ",
    "RayCluster's finalizer, please check https://docs.ray.io/en/master/cluster/kubernetes/user-guides/kuberay-gcs-ft.html ",
    "for more details.\" && ",
    "python -c \"from ray._private.gcs_utils import cleanup_redis_storage; ",
    "from urllib.parse import urlparse; ",
    "import os; ",
    "import sys; ",
    "redis_address = os.getenv('RAY_REDIS_ADDRESS', '').split(',')[0]; ",
    "redis_address = redis_address if '://' in redis_address else 'redis://' + redis_address; ",
    "parsed = urlparse(redis_address); ",
);
const CLEANUP_CALL_WITH_USERNAME: &str = concat!(
    "sys.exit(1) if not cleanup_redis_storage(host=parsed.hostname, port=parsed.port, ",
    "username=os.getenv('REDIS_USERNAME', parsed.username), password=os.getenv('REDIS_PASSWORD', parsed.password or ''), ",
    "use_ssl=parsed.scheme=='rediss', storage_namespace=os.getenv('RAY_external_storage_namespace')) else None\"",
);
const CLEANUP_CALL: &str = concat!(
    "sys.exit(1) if not cleanup_redis_storage(host=parsed.hostname, port=parsed.port, ",
    "password=os.getenv('REDIS_PASSWORD', parsed.password or ''), ",
    "use_ssl=parsed.scheme=='rediss', storage_namespace=os.getenv('RAY_external_storage_namespace')) else None\"",
);

/// §5.3 step 3: the Redis cleanup Job built from the cluster's head Pod (the caller passes `pod::head_pod(..)`).
///
/// The Job carries the head Pod's labels (node type `redis-cleanup`) and annotations, and its Pod is the head Pod
/// reduced to the Ray container, which runs the cleanup one-liner without probes, with 200m/256Mi and Redis connect
/// retries long enough to outlast a restarting Redis (120 × 500 ms). A head Pod without a container gives a Job
/// without one, which the API server rejects.
pub fn redis_cleanup_job(cluster: &RayCluster, head_pod: &Pod) -> Job {
    let mut pod_metadata = head_pod.metadata.clone();
    pod_metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(RAY_NODE_TYPE_LABEL.to_string(), NODE_TYPE_REDIS_CLEANUP.to_string());
    let mut pod_spec = head_pod.spec.clone().unwrap_or_default();
    pod_spec.containers.truncate(1);
    if let Some(ray) = pod_spec.containers.first_mut() {
        make_cleanup_container(ray);
    }
    // A Job's Pods may only be `Never` or `OnFailure`.
    pod_spec.restart_policy = Some("Never".to_string());

    Job {
        metadata: ObjectMeta {
            name: Some(redis_cleanup_job_name(cluster_name(cluster))),
            namespace: cluster.metadata.namespace.clone(),
            labels: pod_metadata.labels.clone(),
            annotations: pod_metadata.annotations.clone(),
            owner_references: Some(vec![controller_owner_reference(cluster)]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            template: PodTemplateSpec { metadata: Some(pod_metadata), spec: Some(pod_spec) },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn make_cleanup_container(ray: &mut Container) {
    let has_username = ray.env.iter().flatten().any(|env| env.name == REDIS_USERNAME);
    let call = if has_username { CLEANUP_CALL_WITH_USERNAME } else { CLEANUP_CALL };
    ray.command = Some(vec!["/bin/bash".to_string(), "-lc".to_string(), "--".to_string()]);
    ray.args = Some(vec![format!("{CLEANUP_SCRIPT_PREFIX}{call}")]);
    // The Job starts neither a Raylet nor a GCS, so the head's probes could only fail.
    ray.liveness_probe = None;
    ray.readiness_probe = None;
    let env = ray.env.get_or_insert_with(Vec::new);
    for (name, value) in [("RAY_redis_db_connect_retries", "120"), ("RAY_redis_db_connect_wait_milliseconds", "500")] {
        env.push(EnvVar { name: name.to_string(), value: Some(value.to_string()), value_from: None });
    }
    // Constant work; and no GPU for a cleanup.
    let quantities = || {
        BTreeMap::from([
            ("cpu".to_string(), Quantity("200m".to_string())),
            ("memory".to_string(), Quantity("256Mi".to_string())),
        ])
    };
    ray.resources = Some(ResourceRequirements {
        limits: Some(quantities()),
        requests: Some(quantities()),
        ..ResourceRequirements::default()
    });
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, PodSpec, Probe};
    use rstest::rstest;

    use super::*;

    fn probe() -> Option<Probe> {
        Some(Probe { exec: Some(ExecAction { command: Some(vec!["true".to_string()]) }), ..Probe::default() })
    }

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar { name: name.to_string(), value: Some(value.to_string()), value_from: None }
    }

    fn cluster(name: &str) -> RayCluster {
        RayCluster {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("ns".to_string()),
                uid: Some("uid-c".to_string()),
                ..ObjectMeta::default()
            },
            ..RayCluster::default()
        }
    }

    fn head_pod(ray_env: Vec<EnvVar>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                generate_name: Some("raycluster-head-".to_string()),
                labels: Some(BTreeMap::from([
                    ("ray.io/cluster".to_string(), "raycluster".to_string()),
                    ("ray.io/node-type".to_string(), "head".to_string()),
                ])),
                annotations: Some(BTreeMap::from([("ray.io/ft-enabled".to_string(), "true".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "ray-head".to_string(),
                        image: Some("rayproject/ray:2.41.0".to_string()),
                        env: Some(ray_env),
                        liveness_probe: probe(),
                        readiness_probe: probe(),
                        ..Container::default()
                    },
                    Container { name: "sidecar".to_string(), ..Container::default() },
                ],
                restart_policy: Some("Always".to_string()),
                service_account_name: Some("sa".to_string()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn ray_container(job: &Job) -> Container {
        let spec = job.spec.as_ref().and_then(|spec| spec.template.spec.clone()).unwrap();
        assert_eq!(spec.containers.len(), 1, "only the Ray container is kept");
        spec.containers.into_iter().next().unwrap()
    }

    #[test]
    fn job_metadata_follows_the_head_pod() {
        let job = redis_cleanup_job(&cluster("raycluster"), &head_pod(vec![]));
        assert_eq!(job.metadata.name.as_deref(), Some("raycluster-redis-cleanup"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("ns"));
        let labels: Vec<(String, String)> = job.metadata.labels.clone().unwrap_or_default().into_iter().collect();
        assert_eq!(
            labels,
            [
                ("ray.io/cluster".to_string(), "raycluster".to_string()),
                ("ray.io/node-type".to_string(), "redis-cleanup".to_string()),
            ]
        );
        assert_eq!(job.metadata.annotations, head_pod(vec![]).metadata.annotations);
        let owner = job.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(
            owner.iter().map(|o| (o.kind.as_str(), o.name.as_str(), o.uid.as_str(), o.controller)).collect::<Vec<_>>(),
            [("RayCluster", "raycluster", "uid-c", Some(true))]
        );
        let spec = job.spec.clone().unwrap();
        assert_eq!((spec.backoff_limit, spec.active_deadline_seconds), (Some(0), Some(300)));
        assert_eq!(spec.template.metadata.and_then(|m| m.labels), job.metadata.labels);
        let pod_spec = spec.template.spec.unwrap();
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod_spec.service_account_name.as_deref(), Some("sa"), "the rest of the head Pod is kept");
    }

    #[test]
    fn long_cluster_names_are_trimmed_to_a_label() {
        let name = format!("{}-cluster", "x".repeat(60));
        let job = redis_cleanup_job(&cluster(&name), &head_pod(vec![]));
        assert_eq!(job.metadata.name.map(|n| n.len()), Some(63));
    }

    #[test]
    fn ray_container_runs_the_cleanup_without_probes() {
        let ray = ray_container(&redis_cleanup_job(&cluster("raycluster"), &head_pod(vec![env("A", "1")])));
        assert_eq!(ray.name, "ray-head");
        assert_eq!(ray.command, Some(vec!["/bin/bash".to_string(), "-lc".to_string(), "--".to_string()]));
        assert_eq!((ray.liveness_probe, ray.readiness_probe), (None, None));
        let env: Vec<(String, String)> =
            ray.env.unwrap_or_default().into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect();
        assert_eq!(
            env,
            [
                ("A".to_string(), "1".to_string()),
                ("RAY_redis_db_connect_retries".to_string(), "120".to_string()),
                ("RAY_redis_db_connect_wait_milliseconds".to_string(), "500".to_string()),
            ]
        );
        let resources = ray.resources.unwrap_or_default();
        let expected = BTreeMap::from([
            ("cpu".to_string(), Quantity("200m".to_string())),
            ("memory".to_string(), Quantity("256Mi".to_string())),
        ]);
        assert_eq!((resources.limits, resources.requests), (Some(expected.clone()), Some(expected)));
    }

    const EXPECTED_PREFIX: &str = "echo \"To get more information about manually deleting the storage namespace in Redis and removing the RayCluster's finalizer, please check https://docs.ray.io/en/master/cluster/kubernetes/user-guides/kuberay-gcs-ft.html for more details.\" && python -c \"from ray._private.gcs_utils import cleanup_redis_storage; from urllib.parse import urlparse; import os; import sys; redis_address = os.getenv('RAY_REDIS_ADDRESS', '').split(',')[0]; redis_address = redis_address if '://' in redis_address else 'redis://' + redis_address; parsed = urlparse(redis_address); ";

    #[rstest]
    #[case::without_username(
        vec![],
        "sys.exit(1) if not cleanup_redis_storage(host=parsed.hostname, port=parsed.port, password=os.getenv('REDIS_PASSWORD', parsed.password or ''), use_ssl=parsed.scheme=='rediss', storage_namespace=os.getenv('RAY_external_storage_namespace')) else None\""
    )]
    #[case::with_username(
        vec![env("REDIS_USERNAME", "u")],
        "sys.exit(1) if not cleanup_redis_storage(host=parsed.hostname, port=parsed.port, username=os.getenv('REDIS_USERNAME', parsed.username), password=os.getenv('REDIS_PASSWORD', parsed.password or ''), use_ssl=parsed.scheme=='rediss', storage_namespace=os.getenv('RAY_external_storage_namespace')) else None\""
    )]
    fn cleanup_one_liner_passes_username_only_when_set(#[case] ray_env: Vec<EnvVar>, #[case] call: &str) {
        let ray = ray_container(&redis_cleanup_job(&cluster("raycluster"), &head_pod(ray_env)));
        assert_eq!(ray.args, Some(vec![format!("{EXPECTED_PREFIX}{call}")]));
    }
}
