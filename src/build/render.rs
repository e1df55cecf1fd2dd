//! `kuberay render`: every object the operator creates for a Ray object on the normal path, as `helm template`
//! previews a chart.
//!
//! Order, for each Ray object in input order (the order of KubeRay's sub-reconcilers, §2.1 step 6):
//! 1. the RayCluster that a RayJob or a RayService creates (none for a RayCluster, or a RayJob with a
//!    clusterSelector);
//! 2. the autoscaler ServiceAccount, Role and RoleBinding; the Ingress; the head Service; the headless worker
//!    Service; the serve Service;
//! 3. the head Pod, then the worker Pods, group by group in spec order, `replicas × numOfHosts` each;
//! 4. for a RayJob in K8sJobMode, the submitter Job it creates once the cluster is ready; for a RayService, the
//!    `<s>-head-svc` and `<s>-serve-svc` Services that point at its cluster.
//!
//! A RayJob with a clusterSelector renders only its submitter Job, against the selected cluster found among the
//! other inputs; when the inputs do not hold that cluster there is nothing to render it against.
//!
//! Names KubeRay draws at random are derived from the object's uid (or its name when it has none); a document with
//! only `generateName` is first given the name the API server would, derived from its content.

use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use super::{BuildError, cluster, ingress, names, pod, rbac, service, submitter};
use crate::api::document::RayObject;
use crate::api::rayjob::SubmissionMode;
use crate::api::{RayCluster, RayJob, RayService};
use crate::config::OperatorConfig;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot serialize a rendered object: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("the clusterSelector names RayCluster {0}, which is not among the inputs")]
    SelectedClusterNotGiven(String),
}

/// The objects the operator creates for `object`, in the documented order; `existing` are the RayClusters a
/// clusterSelector may name.
pub fn render(object: &RayObject, config: &OperatorConfig, existing: &[RayCluster]) -> Result<Vec<Value>, RenderError> {
    let mut out = Rendered::default();
    match object {
        RayObject::Cluster(cluster) => out.cluster_children(&with_name(cluster.as_ref())?, config)?,
        RayObject::Job(job) => render_job(&with_name(job.as_ref())?, config, existing, &mut out)?,
        RayObject::Service(service) => render_service(&with_name(service.as_ref())?, config, &mut out)?,
    }
    Ok(out.objects)
}

#[derive(Default)]
struct Rendered {
    objects: Vec<Value>,
}

impl Rendered {
    fn push(&mut self, object: &impl Serialize) -> Result<(), RenderError> {
        self.objects.push(serde_json::to_value(object)?);
        Ok(())
    }

    fn push_all<T: Serialize>(&mut self, objects: impl IntoIterator<Item = T>) -> Result<(), RenderError> {
        objects.into_iter().try_for_each(|object| self.push(&object))
    }

    /// What the RayCluster machine creates for `cluster` (§2.1 step 6).
    fn cluster_children(&mut self, cluster: &RayCluster, config: &OperatorConfig) -> Result<(), RenderError> {
        self.push_all(rbac::autoscaler_service_account(cluster))?;
        self.push_all(rbac::autoscaler_role(cluster))?;
        self.push_all(rbac::autoscaler_role_binding(cluster))?;
        self.push_all(ingress::head_ingress(cluster))?;
        self.push(&service::head_service(cluster, config))?;
        self.push_all(service::headless_worker_service(cluster))?;
        self.push_all(service::serve_service(cluster)?)?;
        if cluster.spec.suspend == Some(true) {
            return Ok(());
        }
        self.push(&pod::head_pod(cluster, config))?;
        for group in cluster.spec.worker_groups() {
            let pods = i64::from(group.desired_replicas().max(0)) * i64::from(group.hosts());
            for _ in 0..pods {
                self.push(&pod::worker_pod(cluster, group, config))?;
            }
        }
        Ok(())
    }
}

fn render_job(
    job: &RayJob,
    config: &OperatorConfig,
    existing: &[RayCluster],
    out: &mut Rendered,
) -> Result<(), RenderError> {
    // Suspended at creation: the RayJob goes to Suspended and no cluster is ever created (§3.2).
    if job.spec.suspend == Some(true) {
        return Ok(());
    }
    let submission_id = cluster::rayjob_submission_id(job, 0);
    let target = match selected_cluster_name(job) {
        Some(name) => existing
            .iter()
            .find(|cluster| cluster.metadata.name.as_deref() == Some(name) && namespace(*cluster) == namespace(job))
            .cloned()
            .ok_or_else(|| RenderError::SelectedClusterNotGiven(name.to_string()))?,
        None => {
            let created = cluster::cluster_for_rayjob(job, &cluster::rayjob_cluster_name(job, 0), &submission_id)?;
            out.push(&created)?;
            out.cluster_children(&created, config)?;
            created
        }
    };
    if job.spec.mode() == Some(SubmissionMode::K8sJob) {
        let address = service::dashboard_address(&target, config)?;
        out.push(&submitter::submitter_job(job, &target.spec, &submission_id, &address)?)?;
    }
    Ok(())
}

fn selected_cluster_name(job: &RayJob) -> Option<&str> {
    job.spec
        .cluster_selector
        .as_ref()
        .and_then(|selector| selector.get(crate::api::constants::RAY_CLUSTER_LABEL))
        .map(String::as_str)
}

fn render_service(service: &RayService, config: &OperatorConfig, out: &mut Rendered) -> Result<(), RenderError> {
    let name = cluster::rayservice_cluster_name(service, &object_seed(service));
    let created = cluster::cluster_for_rayservice(service, &name)?;
    out.push(&created)?;
    out.cluster_children(&created, config)?;
    out.push(&service::rayservice_head_service(service, &created, config))?;
    out.push(&service::rayservice_serve_service(service, &created)?)?;
    Ok(())
}

/// A manifest without a namespace lands in `default`, as `kubectl create` puts it.
fn namespace<K: Resource>(object: &K) -> &str {
    object.meta().namespace.as_deref().unwrap_or("default")
}

/// The uid when the object has one, else its name: what deterministic names are derived from.
fn object_seed<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    meta.uid.clone().filter(|uid| !uid.is_empty()).or_else(|| meta.name.clone()).unwrap_or_default()
}

/// Gives a document that has only `generateName` the name the API server would give it, derived from its content.
fn with_name<K: Resource + Clone + Serialize>(object: &K) -> Result<K, RenderError> {
    let mut named = object.clone();
    if named.meta().name.as_deref().is_none_or(str::is_empty) {
        let content = serde_json::to_string(object)?;
        let prefix = named.meta().generate_name.clone().unwrap_or_default();
        named.meta_mut().name = Some(format!("{prefix}{}", names::rand5(&content)));
    }
    Ok(named)
}
