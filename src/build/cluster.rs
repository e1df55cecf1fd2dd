//! The RayClusters that RayJobs (§3.2 `getOrCreateRayClusterInstance`) and RayServices (§4.2) create, the RayService
//! spec hash, and deterministic stand-ins for the random names KubeRay gives those clusters and submissions.

use std::collections::BTreeMap;

use data_encoding::BASE32HEX_NOPAD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha1::{Digest, Sha1};

use super::names::rand5;
use super::submitter::sidecar_submitter_container;
use super::{BuildError, controller_owner_reference};
use crate::api::constants::{
    HASH_WITHOUT_REPLICAS_AND_WORKERS_TO_DELETE_ANNOTATION, KUBERAY_VERSION, KUBERAY_VERSION_ANNOTATION,
    NUM_WORKER_GROUPS_ANNOTATION, RAY_ORIGINATED_FROM_CR_NAME_LABEL, RAY_ORIGINATED_FROM_CRD_LABEL,
};
use crate::api::raycluster::CreatorKind;
use crate::api::rayjob::SubmissionMode;
use crate::api::{RayCluster, RayClusterSpec, RayJob, RayService};

/// §3.2 getOrCreateRayClusterInstance: the RayCluster a RayJob creates (labels, annotations, deep-copied spec,
/// owner = the RayJob). In SidecarMode the head template gets the sidecar submitter container appended and
/// `restartPolicy: Never` (v1.5): a restarted head would run the submitter again.
pub fn cluster_for_rayjob(job: &RayJob, cluster_name: &str, submission_id: &str) -> Result<RayCluster, BuildError> {
    let mut spec = job.spec.ray_cluster_spec.clone().ok_or_else(|| BuildError::InvalidField {
        field: "spec.rayClusterSpec".to_string(),
        message: "one of RayClusterSpec or ClusterSelector must be set".to_string(),
    })?;
    if job.spec.mode() == Some(SubmissionMode::Sidecar) {
        let sidecar = sidecar_submitter_container(job, &spec, submission_id)?;
        let pod_spec = spec.head_group_spec.template.spec.get_or_insert_with(Default::default);
        pod_spec.containers.push(sidecar);
        pod_spec.restart_policy = Some("Never".to_string());
    }
    Ok(RayCluster {
        metadata: ObjectMeta {
            name: Some(cluster_name.to_string()),
            namespace: job.metadata.namespace.clone(),
            labels: Some(originated_labels(&job.metadata, CreatorKind::RayJob)),
            annotations: job.metadata.annotations.clone(),
            owner_references: Some(vec![controller_owner_reference(job)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

/// §4.2: the RayCluster a RayService creates: the service's labels and annotations plus its origin labels, the spec
/// hash, the number of worker groups and the KubeRay version.
pub fn cluster_for_rayservice(service: &RayService, cluster_name: &str) -> Result<RayCluster, BuildError> {
    let spec = service.spec.ray_cluster_config.clone().ok_or_else(|| BuildError::InvalidField {
        field: "spec.rayClusterConfig".to_string(),
        message: "the RayService has no rayClusterConfig".to_string(),
    })?;
    let mut annotations = service.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(
        HASH_WITHOUT_REPLICAS_AND_WORKERS_TO_DELETE_ANNOTATION.to_string(),
        hash_without_replicas_and_workers_to_delete(&spec)?,
    );
    annotations.insert(NUM_WORKER_GROUPS_ANNOTATION.to_string(), spec.worker_groups().len().to_string());
    annotations.insert(KUBERAY_VERSION_ANNOTATION.to_string(), KUBERAY_VERSION.to_string());
    Ok(RayCluster {
        metadata: ObjectMeta {
            name: Some(cluster_name.to_string()),
            namespace: service.metadata.namespace.clone(),
            labels: Some(originated_labels(&service.metadata, CreatorKind::RayService)),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_owner_reference(service)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

fn originated_labels(owner: &ObjectMeta, kind: CreatorKind) -> BTreeMap<String, String> {
    let mut labels = owner.labels.clone().unwrap_or_default();
    labels.insert(RAY_ORIGINATED_FROM_CR_NAME_LABEL.to_string(), owner.name.clone().unwrap_or_default());
    labels.insert(RAY_ORIGINATED_FROM_CRD_LABEL.to_string(), kind.as_str().to_string());
    labels
}

/// §4.2: base32hex(sha1(json(spec))) after clearing replicas, minReplicas, maxReplicas and
/// `scaleStrategy.workersToDelete` of every worker group, so that autoscaling never looks like a spec change.
///
/// KubeRay hashes Go's JSON of its own types; this hashes serde_json of ours, so the values differ from KubeRay's
/// (a cluster created by KubeRay gets a new hash, hence one upgrade, when this operator takes over). What holds is
/// that equal specs hash equal and any other change changes the hash. The emptied `scaleStrategy` is dropped because
/// Go always serializes it as `{}`: its presence must not matter either.
pub fn hash_without_replicas_and_workers_to_delete(spec: &RayClusterSpec) -> Result<String, BuildError> {
    let mut muted = spec.clone();
    for group in muted.worker_group_specs.iter_mut().flatten() {
        group.replicas = None;
        group.min_replicas = None;
        group.max_replicas = None;
        group.scale_strategy = None;
    }
    let json = serde_json::to_vec(&muted).map_err(|error| BuildError::InvalidField {
        field: "rayClusterConfig".to_string(),
        message: error.to_string(),
    })?;
    Ok(BASE32HEX_NOPAD.encode(&Sha1::digest(&json)))
}

/// What seeds an object's names: its uid, or its name while it has none (a manifest read from a file).
fn name_seed(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().filter(|uid| !uid.is_empty()).or(meta.name.as_deref()).unwrap_or_default()
}

/// `<j>-raycluster-xxxxx`; each RayJob attempt (a retry gets a new cluster) gets its own characters.
pub fn rayjob_cluster_name(job: &RayJob, attempt: i32) -> String {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    format!("{name}-raycluster-{}", rand5(&format!("{}/raycluster/{attempt}", name_seed(&job.metadata))))
}

/// `spec.jobId` when set (a retry reuses it), else `<j>-xxxxx`, new for each attempt.
pub fn rayjob_submission_id(job: &RayJob, attempt: i32) -> String {
    match job.spec.job_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => {
            let name = job.metadata.name.as_deref().unwrap_or_default();
            format!("{name}-{}", rand5(&format!("{}/submission/{attempt}", name_seed(&job.metadata))))
        }
    }
}

/// `<s>-raycluster-xxxxx`; `seed` tells apart the successive clusters of one RayService.
pub fn rayservice_cluster_name(service: &RayService, seed: &str) -> String {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    format!("{name}-raycluster-{}", rand5(&format!("{}/raycluster/{seed}", name_seed(&service.metadata))))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use rstest::rstest;

    use super::*;
    use crate::api::raycluster::{HeadGroupSpec, ScaleStrategy, WorkerGroupSpec};
    use crate::api::rayjob::RayJobSpec;
    use crate::api::rayservice::RayServiceSpec;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "ray".to_string(),
                    image: Some(image.to_string()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    fn worker(name: &str, replicas: i32) -> WorkerGroupSpec {
        WorkerGroupSpec {
            group_name: name.to_string(),
            replicas: Some(replicas),
            min_replicas: Some(0),
            max_replicas: Some(10),
            template: template("rayproject/ray:2.41.0"),
            num_of_hosts: 1,
            ..WorkerGroupSpec::default()
        }
    }

    fn cluster_spec() -> RayClusterSpec {
        RayClusterSpec {
            ray_version: Some("2.41.0".to_string()),
            head_group_spec: HeadGroupSpec { template: template("rayproject/ray:2.41.0"), ..HeadGroupSpec::default() },
            worker_group_specs: Some(vec![worker("small", 1), worker("large", 2)]),
            ..RayClusterSpec::default()
        }
    }

    fn meta(name: &str, uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("ns".to_string()),
            uid: uid.map(str::to_string),
            labels: Some(BTreeMap::from([("team".to_string(), "ml".to_string())])),
            annotations: Some(BTreeMap::from([("note".to_string(), "keep".to_string())])),
            ..ObjectMeta::default()
        }
    }

    fn rayjob(mode: Option<&str>) -> RayJob {
        RayJob {
            metadata: meta("rayjob-sample", Some("uid-job")),
            spec: RayJobSpec {
                entrypoint: Some("python main.py".to_string()),
                submission_mode: mode.map(str::to_string),
                ray_cluster_spec: Some(cluster_spec()),
                ..RayJobSpec::default()
            },
            status: None,
        }
    }

    fn rayservice(spec: RayClusterSpec) -> RayService {
        RayService {
            metadata: meta("rayservice-sample", Some("uid-svc")),
            spec: RayServiceSpec { ray_cluster_config: Some(spec), ..RayServiceSpec::default() },
            status: None,
        }
    }

    fn pairs(map: Option<BTreeMap<String, String>>) -> Vec<(String, String)> {
        map.unwrap_or_default().into_iter().collect()
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn rayjob_cluster_copies_labels_annotations_spec_and_owner() {
        let job = rayjob(None);
        let cluster = cluster_for_rayjob(&job, "rayjob-sample-raycluster-abcde", "id").unwrap();
        assert_eq!(cluster.metadata.name.as_deref(), Some("rayjob-sample-raycluster-abcde"));
        assert_eq!(cluster.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            pairs(cluster.metadata.labels),
            [
                pair("ray.io/originated-from-cr-name", "rayjob-sample"),
                pair("ray.io/originated-from-crd", "RayJob"),
                pair("team", "ml"),
            ]
        );
        assert_eq!(pairs(cluster.metadata.annotations), [pair("note", "keep")]);
        assert_eq!(Some(cluster.spec), job.spec.ray_cluster_spec);
        assert_eq!(
            cluster.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "ray.io/v1".to_string(),
                kind: "RayJob".to_string(),
                name: "rayjob-sample".to_string(),
                uid: "uid-job".to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }])
        );
    }

    #[test]
    fn owner_without_uid_gets_an_empty_uid() {
        let mut job = rayjob(None);
        job.metadata.uid = None;
        let owner = controller_owner_reference(&job);
        assert_eq!((owner.name.as_str(), owner.uid.as_str()), ("rayjob-sample", ""));
    }

    #[test]
    fn sidecar_mode_appends_the_submitter_to_the_head() {
        let job = rayjob(Some("SidecarMode"));
        let cluster = cluster_for_rayjob(&job, "c", "rayjob-sample-abcde").unwrap();
        let head = cluster.spec.head_group_spec.template.spec.unwrap();
        let names: Vec<&str> = head.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ray", "ray-job-submitter"]);
        assert_eq!(
            head.containers.get(1),
            Some(&sidecar_submitter_container(&job, &cluster_spec(), "rayjob-sample-abcde").unwrap())
        );
        assert_eq!(head.restart_policy.as_deref(), Some("Never"));
        assert_eq!(cluster.spec.worker_group_specs, cluster_spec().worker_group_specs, "workers are untouched");
    }

    #[rstest]
    #[case::k8s_job_mode(Some("K8sJobMode"))]
    #[case::http_mode(Some("HTTPMode"))]
    #[case::default_mode(None)]
    fn other_modes_leave_the_head_alone(#[case] mode: Option<&str>) {
        let cluster = cluster_for_rayjob(&rayjob(mode), "c", "id").unwrap();
        assert_eq!(cluster.spec, cluster_spec());
    }

    #[test]
    fn rayjob_without_cluster_spec_is_an_error() {
        let mut job = rayjob(None);
        job.spec.ray_cluster_spec = None;
        assert!(matches!(cluster_for_rayjob(&job, "c", "id"), Err(BuildError::InvalidField { .. })));
    }

    #[test]
    fn rayservice_cluster_has_hash_version_and_group_count() {
        let service = rayservice(cluster_spec());
        let cluster = cluster_for_rayservice(&service, "rayservice-sample-raycluster-abcde").unwrap();
        let hash = hash_without_replicas_and_workers_to_delete(&cluster_spec()).unwrap();
        assert_eq!(
            pairs(cluster.metadata.annotations),
            [
                pair("note", "keep"),
                pair("ray.io/hash-without-replicas-and-workers-to-delete", &hash),
                pair("ray.io/kuberay-version", "v1.3.0"),
                pair("ray.io/num-worker-groups", "2"),
            ]
        );
        assert_eq!(
            pairs(cluster.metadata.labels),
            [
                pair("ray.io/originated-from-cr-name", "rayservice-sample"),
                pair("ray.io/originated-from-crd", "RayService"),
                pair("team", "ml"),
            ]
        );
        let owner = cluster.metadata.owner_references.unwrap_or_default();
        assert_eq!(
            owner.iter().map(|o| (o.kind.as_str(), o.uid.as_str())).collect::<Vec<_>>(),
            [("RayService", "uid-svc")]
        );
        assert_eq!(cluster.spec, cluster_spec());
    }

    #[test]
    fn hash_is_32_uppercase_base32hex_characters() {
        let hash = hash_without_replicas_and_workers_to_delete(&cluster_spec()).unwrap();
        assert_eq!(hash.len(), 32);
        assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'V').contains(&b)), "{hash}");
    }

    fn changed(change: fn(&mut RayClusterSpec)) -> RayClusterSpec {
        let mut spec = cluster_spec();
        change(&mut spec);
        spec
    }

    fn first_worker(spec: &mut RayClusterSpec) -> &mut WorkerGroupSpec {
        spec.worker_group_specs.as_mut().and_then(|groups| groups.first_mut()).unwrap()
    }

    #[rstest]
    #[case::identical(changed(|_| {}))]
    #[case::replicas(changed(|s| first_worker(s).replicas = Some(7)))]
    #[case::min_replicas(changed(|s| first_worker(s).min_replicas = Some(3)))]
    #[case::max_replicas(changed(|s| first_worker(s).max_replicas = None))]
    #[case::workers_to_delete(changed(|s| {
        first_worker(s).scale_strategy = Some(ScaleStrategy { workers_to_delete: Some(vec!["pod-a".to_string()]) })
    }))]
    #[case::empty_scale_strategy(changed(|s| first_worker(s).scale_strategy = Some(ScaleStrategy::default())))]
    fn hash_ignores_replicas_and_workers_to_delete(#[case] spec: RayClusterSpec) {
        assert_eq!(
            hash_without_replicas_and_workers_to_delete(&spec).unwrap(),
            hash_without_replicas_and_workers_to_delete(&cluster_spec()).unwrap()
        );
    }

    #[rstest]
    #[case::head_image(changed(|s| s.head_group_spec.template = template("rayproject/ray:2.42.0")))]
    #[case::worker_image(changed(|s| first_worker(s).template = template("rayproject/ray:2.42.0")))]
    #[case::ray_version(changed(|s| s.ray_version = Some("2.42.0".to_string())))]
    #[case::appended_group(changed(|s| s.worker_group_specs.get_or_insert_with(Vec::new).push(worker("gpu", 1))))]
    #[case::group_name(changed(|s| first_worker(s).group_name = "renamed".to_string()))]
    fn hash_changes_with_anything_else(#[case] spec: RayClusterSpec) {
        assert_ne!(
            hash_without_replicas_and_workers_to_delete(&spec).unwrap(),
            hash_without_replicas_and_workers_to_delete(&cluster_spec()).unwrap()
        );
    }

    #[test]
    fn rayjob_names_are_deterministic_and_shaped_like_kuberays() {
        let job = rayjob(None);
        let cluster = rayjob_cluster_name(&job, 0);
        assert_eq!(cluster, rayjob_cluster_name(&job, 0));
        assert_ne!(cluster, rayjob_cluster_name(&job, 1), "a retry gets a new cluster");
        assert!(
            cluster.starts_with("rayjob-sample-raycluster-") && cluster.len() == "rayjob-sample-raycluster-".len() + 5
        );
        let id = rayjob_submission_id(&job, 0);
        assert_eq!(id, rayjob_submission_id(&job, 0));
        assert_ne!(id, rayjob_submission_id(&job, 1));
        assert!(id.starts_with("rayjob-sample-") && id.len() == "rayjob-sample-".len() + 5);
    }

    #[rstest]
    #[case::uid_seeds(Some("uid-a"), Some("uid-b"), true)]
    #[case::name_seeds_without_uid(None, None, false)]
    fn names_are_seeded_by_uid_else_name(
        #[case] first: Option<&str>,
        #[case] second: Option<&str>,
        #[case] differ: bool,
    ) {
        let with_uid = |uid: Option<&str>| RayJob { metadata: meta("rayjob-sample", uid), ..rayjob(None) };
        let (a, b) = (with_uid(first), with_uid(second));
        assert_eq!(rayjob_cluster_name(&a, 0) != rayjob_cluster_name(&b, 0), differ);
    }

    #[test]
    fn spec_job_id_is_the_submission_id_on_every_attempt() {
        let mut job = rayjob(None);
        job.spec.job_id = Some("my-job".to_string());
        assert_eq!([rayjob_submission_id(&job, 0), rayjob_submission_id(&job, 3)], ["my-job", "my-job"]);
    }

    #[test]
    fn rayservice_names_are_deterministic_per_seed() {
        let service = rayservice(cluster_spec());
        let name = rayservice_cluster_name(&service, "0");
        assert_eq!(name, rayservice_cluster_name(&service, "0"));
        assert_ne!(name, rayservice_cluster_name(&service, "1"));
        assert!(
            name.starts_with("rayservice-sample-raycluster-")
                && name.len() == "rayservice-sample-raycluster-".len() + 5
        );
    }
}
