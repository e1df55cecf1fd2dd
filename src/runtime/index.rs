//! The runtime's caches: watch events fold into compact indexes, and each change names the Ray objects it concerns.
//! Nothing here talks to the API server (linkerd's pattern: watches feed pure indexes), so the mapping from events
//! to objects is tested without one.
//!
//! Memory stays lean: a RayCluster is kept whole (less its managedFields), but the objects it owns are kept only as
//! the views the machine reads ([`PodView`], [`ServiceView`], [`JobView`]) and the objects whose existence alone
//! matters as names.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::constants::{NODE_TYPE_HEAD, RAY_CLUSTER_LABEL, RAY_NODE_TYPE_LABEL};
use crate::api::{RayCluster, RayJob};
use crate::machine::raycluster::existence_checks;
use crate::machine::{
    ClusterObservation, JobObservation, JobView, MachineKind, OwnedObject, PodView, ServiceView, Trigger, WatchEvent,
};

/// A Ray object as the runtime schedules it: kind, namespace, name. A new uid under the same key is a new object;
/// the runtime tells them apart by the uid it remembers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub kind: MachineKind,
    pub namespace: String,
    pub name: String,
}

/// The kinds the runtime watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    RayCluster,
    RayJob,
    /// The batch Jobs a RayJob submits with (labelled `ray.io/originated-from-crd=RayJob`).
    Submitter,
    Pod,
    Service,
    Job,
    /// Kinds whose existence alone a machine reads.
    Named(NamedKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamedKind {
    ServiceAccount,
    Role,
    RoleBinding,
    Ingress,
}

impl NamedKind {
    pub const ALL: [NamedKind; 4] =
        [NamedKind::ServiceAccount, NamedKind::Role, NamedKind::RoleBinding, NamedKind::Ingress];

    pub fn kind(self) -> &'static str {
        match self {
            NamedKind::ServiceAccount => "ServiceAccount",
            NamedKind::Role => "Role",
            NamedKind::RoleBinding => "RoleBinding",
            NamedKind::Ingress => "Ingress",
        }
    }
}

impl Watched {
    pub fn kind(self) -> &'static str {
        match self {
            Watched::RayCluster => "RayCluster",
            Watched::RayJob => "RayJob",
            Watched::Submitter => "Job",
            Watched::Pod => "Pod",
            Watched::Service => "Service",
            Watched::Job => "Job",
            Watched::Named(named) => named.kind(),
        }
    }
}

/// One watched object, reduced to what the indexes keep.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub namespace: String,
    pub name: String,
    /// The Ray objects this one belongs to (for a RayCluster, itself).
    pub owners: Vec<Key>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Cluster(Arc<RayCluster>),
    RayJob(Arc<RayJob>),
    Pod(PodView),
    Service(ServiceView),
    Job(JobView),
    Named,
}

/// What a watcher reports: one object changed or went, or a (re)list replaced everything of its kind in its scope
/// (a namespace, or every namespace when None).
#[derive(Clone, Debug)]
pub enum Change {
    Applied(Watched, Object),
    Deleted(Watched, Object),
    Relisted(Watched, Option<String>, Vec<Object>),
}

impl Object {
    /// A RayCluster belongs to itself, and to the RayJob that created it (its status wakes that job).
    pub fn of_cluster(mut cluster: RayCluster) -> Object {
        cluster.metadata.managed_fields = None;
        let (namespace, name) = names(&cluster.metadata);
        let key = Key { kind: MachineKind::RayCluster, namespace: namespace.clone(), name: name.clone() };
        let mut owners = vec![key];
        owners.extend(ray_owners(&cluster.metadata, "RayJob", MachineKind::RayJob));
        Object { namespace, name, owners, body: Body::Cluster(Arc::new(cluster)) }
    }

    pub fn of_rayjob(mut job: RayJob) -> Object {
        job.metadata.managed_fields = None;
        let (namespace, name) = names(&job.metadata);
        let key = Key { kind: MachineKind::RayJob, namespace: namespace.clone(), name: name.clone() };
        Object { namespace, name, owners: vec![key], body: Body::RayJob(Arc::new(job)) }
    }

    /// A RayJob's submitter Job belongs to the RayJob that owns it.
    pub fn of_submitter(job: &Job) -> Object {
        let (namespace, name) = names(&job.metadata);
        let owners = ray_owners(&job.metadata, "RayJob", MachineKind::RayJob);
        Object { namespace, name, owners, body: Body::Job(JobView::of(job)) }
    }

    pub fn of_pod(pod: &Pod) -> Object {
        Object::owned(&pod.metadata, Body::Pod(PodView::of(pod)))
    }

    pub fn of_service(service: &Service) -> Object {
        Object::owned(&service.metadata, Body::Service(ServiceView::of(service)))
    }

    pub fn of_job(job: &Job) -> Object {
        Object::owned(&job.metadata, Body::Job(JobView::of(job)))
    }

    pub fn of_named(metadata: &ObjectMeta) -> Object {
        Object::owned(metadata, Body::Named)
    }

    /// An object owned by RayClusters: those its `ray.io/cluster` label names, and those its ownerReferences name.
    fn owned(metadata: &ObjectMeta, body: Body) -> Object {
        let (namespace, name) = names(metadata);
        let cluster =
            |name: &str| Key { kind: MachineKind::RayCluster, namespace: namespace.clone(), name: name.into() };
        let labelled = metadata.labels.as_ref().and_then(|labels| labels.get(RAY_CLUSTER_LABEL));
        let referenced = metadata.owner_references.iter().flatten().filter(|owner| is_ray_cluster(owner));
        let mut owners: Vec<Key> = labelled
            .map(|name| cluster(name))
            .into_iter()
            .chain(referenced.map(|owner| cluster(&owner.name)))
            .collect();
        owners.sort();
        owners.dedup();
        Object { namespace, name, owners, body }
    }
}

/// Whether a change to a RayCluster wakes its machine: KubeRay's predicates (generation, labels or annotations
/// changed), and its deletion starting. A status write — most often the operator's own — does not; it would only
/// wake a step that finds nothing to do.
fn wakes(before: &RayCluster, after: &RayCluster) -> bool {
    let (before, after) = (&before.metadata, &after.metadata);
    before.generation != after.generation
        || before.labels != after.labels
        || before.annotations != after.annotations
        || before.deletion_timestamp != after.deletion_timestamp
        || before.finalizers != after.finalizers
}

/// The Ray objects of `kind` an object's ownerReferences name.
fn ray_owners(metadata: &ObjectMeta, kind: &str, machine: MachineKind) -> Vec<Key> {
    let namespace = metadata.namespace.clone().unwrap_or_default();
    let owners = metadata.owner_references.iter().flatten();
    owners
        .filter(|owner| owner.kind == kind && owner.api_version.starts_with("ray.io/"))
        .map(|owner| Key { kind: machine, namespace: namespace.clone(), name: owner.name.clone() })
        .collect()
}

fn is_ray_cluster(owner: &OwnerReference) -> bool {
    owner.kind == "RayCluster" && owner.api_version.starts_with("ray.io/")
}

fn names(metadata: &ObjectMeta) -> (String, String) {
    (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default())
}

/// Objects of one watched kind, by namespace and name.
type Objects = BTreeMap<(String, String), Object>;

/// Everything the watchers have shown, and which kinds have been listed at least once.
#[derive(Default)]
pub struct Index {
    objects: HashMap<Watched, Objects>,
    /// Owned objects by the Ray object they belong to, for observations: key → (kind, name).
    owned: HashMap<Key, BTreeSet<(Watched, String)>>,
    listed: BTreeSet<(Watched, Option<String>)>,
}

impl Index {
    /// Folds a change in; returns the Ray objects to step and the trigger for each.
    pub fn apply(&mut self, change: Change) -> Vec<(Key, Trigger)> {
        match change {
            Change::Applied(kind, object) => self.put(kind, object, WatchEvent::Applied),
            Change::Deleted(kind, object) => self.remove(kind, &(object.namespace, object.name)),
            Change::Relisted(kind, scope, objects) => {
                let fresh: BTreeSet<(String, String)> = objects.iter().map(ids).collect();
                let in_scope = |id: &(String, String)| scope.as_ref().is_none_or(|namespace| *namespace == id.0);
                let gone: Vec<(String, String)> = self
                    .objects
                    .get(&kind)
                    .map(|known| known.keys().filter(|id| in_scope(id) && !fresh.contains(*id)).cloned().collect())
                    .unwrap_or_default();
                self.listed.insert((kind, scope));
                let mut triggers: Vec<(Key, Trigger)> = gone.iter().flat_map(|id| self.remove(kind, id)).collect();
                for object in objects {
                    let unchanged = self.objects.get(&kind).and_then(|known| known.get(&ids(&object))) == Some(&object);
                    if !unchanged {
                        triggers.extend(self.put(kind, object, WatchEvent::Applied));
                    }
                }
                triggers
            }
        }
    }

    /// Whether every kind in `kinds` has been listed in every scope: until then an observation could miss what
    /// exists.
    pub fn synced(&self, kinds: &[Watched], scopes: &[Option<String>]) -> bool {
        kinds.iter().all(|kind| scopes.iter().all(|scope| self.listed.contains(&(*kind, scope.clone()))))
    }

    fn put(&mut self, kind: Watched, object: Object, event: WatchEvent) -> Vec<(Key, Trigger)> {
        let id = ids(&object);
        let before = self.objects.entry(kind).or_default().insert(id.clone(), object.clone());
        let mut owners: BTreeSet<Key> = object.owners.iter().cloned().collect();
        if let (Some(Body::Cluster(before)), Body::Cluster(after)) = (before.as_ref().map(|b| &b.body), &object.body)
            && !wakes(before, after)
        {
            // Its own status write does not wake the cluster; the RayJob that waits on that status it does wake.
            owners.retain(|owner| owner.kind != MachineKind::RayCluster);
        }
        if let Some(before) = before {
            // An owner the object no longer names must look again too: it lost something.
            for owner in before.owners.iter().filter(|owner| !object.owners.contains(owner)) {
                self.unlink(owner, kind, &id.1);
                owners.insert(owner.clone());
            }
        }
        if !matches!(kind, Watched::RayCluster | Watched::RayJob) {
            for owner in &object.owners {
                self.owned.entry(owner.clone()).or_default().insert((kind, id.1.clone()));
            }
        }
        let trigger = Trigger::Watch { kind: kind.kind().to_string(), name: object.name.clone(), event };
        owners.into_iter().map(|owner| (owner, trigger.clone())).collect()
    }

    fn remove(&mut self, kind: Watched, id: &(String, String)) -> Vec<(Key, Trigger)> {
        let Some(object) = self.objects.get_mut(&kind).and_then(|known| known.remove(id)) else { return Vec::new() };
        for owner in &object.owners {
            self.unlink(owner, kind, &id.1);
        }
        let trigger = Trigger::Watch { kind: kind.kind().to_string(), name: id.1.clone(), event: WatchEvent::Deleted };
        object.owners.into_iter().map(|owner| (owner, trigger.clone())).collect()
    }

    fn unlink(&mut self, owner: &Key, kind: Watched, name: &str) {
        if let Some(owned) = self.owned.get_mut(owner) {
            owned.remove(&(kind, name.to_string()));
            if owned.is_empty() {
                self.owned.remove(owner);
            }
        }
    }

    pub fn cluster(&self, namespace: &str, name: &str) -> Option<Arc<RayCluster>> {
        match &self.objects.get(&Watched::RayCluster)?.get(&(namespace.to_string(), name.to_string()))?.body {
            Body::Cluster(cluster) => Some(cluster.clone()),
            _ => None,
        }
    }

    /// Every Ray object the caches hold.
    pub fn object_keys(&self) -> Vec<Key> {
        let kinds = [(Watched::RayCluster, MachineKind::RayCluster), (Watched::RayJob, MachineKind::RayJob)];
        kinds
            .into_iter()
            .flat_map(|(watched, kind)| {
                let known = self.objects.get(&watched).into_iter().flat_map(|known| known.keys());
                known.map(move |(namespace, name)| Key { kind, namespace: namespace.clone(), name: name.clone() })
            })
            .collect()
    }

    pub fn rayjob(&self, namespace: &str, name: &str) -> Option<Arc<RayJob>> {
        match &self.objects.get(&Watched::RayJob)?.get(&(namespace.to_string(), name.to_string()))?.body {
            Body::RayJob(job) => Some(job.clone()),
            _ => None,
        }
    }

    /// What the RayJob machine of `key` sees, but the dashboard's answer (the runtime asks for it): the job, the
    /// cluster its status names with that cluster's head Service, and its submitter Job.
    pub fn observe_job(&self, key: &Key) -> JobObservation {
        let job = self.rayjob(&key.namespace, &key.name);
        let cluster_name = job.as_ref().and_then(|job| job.status.as_ref()).and_then(|s| s.ray_cluster_name.clone());
        let cluster_key = cluster_name.filter(|name| !name.is_empty()).map(|name| Key {
            kind: MachineKind::RayCluster,
            namespace: key.namespace.clone(),
            name,
        });
        let (cluster, head_service) = match &cluster_key {
            Some(cluster_key) => {
                let cluster = self.cluster(&cluster_key.namespace, &cluster_key.name);
                let mut services = self.owned.get(cluster_key).into_iter().flatten().filter_map(|(kind, name)| {
                    let object = self.objects.get(kind)?.get(&(key.namespace.clone(), name.clone()))?;
                    match &object.body {
                        Body::Service(service) => Some(service),
                        _ => None,
                    }
                });
                let head = services
                    .find(|service| {
                        service.labels.get(RAY_CLUSTER_LABEL) == Some(&cluster_key.name)
                            && service.labels.get(RAY_NODE_TYPE_LABEL).map(String::as_str) == Some(NODE_TYPE_HEAD)
                    })
                    .cloned();
                (cluster.map(|cluster| RayCluster::clone(&cluster)), head)
            }
            None => (None, None),
        };
        let submitter = self
            .objects
            .get(&Watched::Submitter)
            .and_then(|known| known.get(&(key.namespace.clone(), key.name.clone())))
            .and_then(|object| match &object.body {
                Body::Job(view) => Some(view.clone()),
                _ => None,
            });
        JobObservation { job: job.map(|job| RayJob::clone(&job)), cluster, head_service, submitter, dashboard: None }
    }

    /// What the RayCluster machine of `key` sees: the cluster (if it still exists), the Pods, Services and Jobs that
    /// belong to it, sorted by name, and which of the objects a pass checks by name exist.
    pub fn observe_cluster(&self, key: &Key) -> ClusterObservation {
        let cluster = self.cluster(&key.namespace, &key.name);
        let mut observation = ClusterObservation::default();
        for (kind, name) in self.owned.get(key).into_iter().flatten() {
            let Some(object) =
                self.objects.get(kind).and_then(|known| known.get(&(key.namespace.clone(), name.clone())))
            else {
                continue;
            };
            match &object.body {
                Body::Pod(pod) => observation.pods.push(pod.clone()),
                Body::Service(service) => observation.services.push(service.clone()),
                Body::Job(job) => observation.jobs.push(job.clone()),
                Body::Cluster(_) | Body::RayJob(_) | Body::Named => {}
            }
        }
        if let Some(cluster) = &cluster {
            observation.owned =
                existence_checks(cluster).into_iter().filter(|check| self.exists(&key.namespace, check)).collect();
        }
        observation.cluster = cluster.map(|cluster| RayCluster::clone(&cluster));
        observation
    }

    fn exists(&self, namespace: &str, check: &OwnedObject) -> bool {
        let kind = NamedKind::ALL.into_iter().find(|named| named.kind() == check.kind);
        kind.and_then(|kind| self.objects.get(&Watched::Named(kind)))
            .is_some_and(|known| known.contains_key(&(namespace.to_string(), check.name.clone())))
    }
}

fn ids(object: &Object) -> (String, String) {
    (object.namespace.clone(), object.name.clone())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodStatus;
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn meta(name: &str, labels: &[(&str, &str)], owners: &[&str]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("ns".to_string()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|owner| OwnerReference {
                        api_version: "ray.io/v1".to_string(),
                        kind: "RayCluster".to_string(),
                        name: owner.to_string(),
                        uid: format!("uid-{owner}"),
                        ..OwnerReference::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn pod(name: &str, cluster: &str, phase: &str) -> Object {
        let pod = Pod {
            metadata: meta(name, &[(RAY_CLUSTER_LABEL, cluster)], &[]),
            status: Some(PodStatus { phase: Some(phase.to_string()), ..PodStatus::default() }),
            ..Pod::default()
        };
        Object::of_pod(&pod)
    }

    fn cluster(name: &str) -> Object {
        let mut cluster = RayCluster::new(name, Default::default());
        cluster.metadata.namespace = Some("ns".to_string());
        Object::of_cluster(cluster)
    }

    fn key(name: &str) -> Key {
        Key { kind: MachineKind::RayCluster, namespace: "ns".to_string(), name: name.to_string() }
    }

    fn watch(kind: &str, name: &str, event: WatchEvent) -> Trigger {
        Trigger::Watch { kind: kind.to_string(), name: name.to_string(), event }
    }

    fn pod_names(index: &Index, cluster: &str) -> Vec<(String, String)> {
        index.observe_cluster(&key(cluster)).pods.into_iter().map(|pod| (pod.name, pod.phase)).collect()
    }

    #[test]
    fn a_pod_event_wakes_the_cluster_its_label_names() {
        let mut index = Index::default();
        index.apply(Change::Applied(Watched::RayCluster, cluster("c")));
        let triggers = index.apply(Change::Applied(Watched::Pod, pod("c-head-x", "c", "Pending")));
        assert_eq!(triggers, vec![(key("c"), watch("Pod", "c-head-x", WatchEvent::Applied))]);
        index.apply(Change::Applied(Watched::Pod, pod("c-head-x", "c", "Running")));
        assert_eq!(pod_names(&index, "c"), vec![("c-head-x".to_string(), "Running".to_string())]);
        let triggers = index.apply(Change::Deleted(Watched::Pod, pod("c-head-x", "c", "Running")));
        assert_eq!(triggers, vec![(key("c"), watch("Pod", "c-head-x", WatchEvent::Deleted))]);
        assert!(pod_names(&index, "c").is_empty());
    }

    #[test]
    fn a_relabelled_pod_wakes_both_clusters_and_moves() {
        let mut index = Index::default();
        index.apply(Change::Applied(Watched::Pod, pod("p", "a", "Running")));
        let triggers = index.apply(Change::Applied(Watched::Pod, pod("p", "b", "Running")));
        let woken: Vec<Key> = triggers.into_iter().map(|(key, _)| key).collect();
        assert_eq!(woken, vec![key("a"), key("b")]);
        assert!(pod_names(&index, "a").is_empty());
        assert_eq!(pod_names(&index, "b").len(), 1);
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_shows_and_skips_what_did_not_change() {
        let mut index = Index::default();
        let all = [None];
        index.apply(Change::Relisted(Watched::Pod, None, vec![pod("p1", "c", "Running"), pod("p2", "c", "Running")]));
        assert!(index.synced(&[Watched::Pod], &all));
        assert!(!index.synced(&[Watched::Pod, Watched::Service], &all));
        let triggers = index.apply(Change::Relisted(Watched::Pod, None, vec![pod("p2", "c", "Running")]));
        assert_eq!(triggers, vec![(key("c"), watch("Pod", "p1", WatchEvent::Deleted))]);
        assert_eq!(pod_names(&index, "c"), vec![("p2".to_string(), "Running".to_string())]);
    }

    #[test]
    fn a_relist_of_one_namespace_leaves_the_others_alone() {
        let mut index = Index::default();
        let mut elsewhere = pod("q", "d", "Running");
        elsewhere.namespace = "other".to_string();
        index.apply(Change::Relisted(Watched::Pod, Some("other".to_string()), vec![elsewhere]));
        index.apply(Change::Relisted(Watched::Pod, Some("ns".to_string()), vec![pod("p", "c", "Running")]));
        let scopes = [Some("ns".to_string()), Some("other".to_string())];
        assert!(index.synced(&[Watched::Pod], &scopes));
        let triggers = index.apply(Change::Relisted(Watched::Pod, Some("ns".to_string()), Vec::new()));
        assert_eq!(triggers, vec![(key("c"), watch("Pod", "p", WatchEvent::Deleted))]);
        assert_eq!(index.objects[&Watched::Pod].len(), 1, "the other namespace's Pod stays");
    }

    #[rstest]
    #[case::by_label(&[(RAY_CLUSTER_LABEL, "c")], &[], vec![key("c")])]
    #[case::by_owner_reference(&[], &["c"], vec![key("c")])]
    #[case::both_the_same(&[(RAY_CLUSTER_LABEL, "c")], &["c"], vec![key("c")])]
    #[case::unrelated(&[("app", "x")], &[], vec![])]
    fn services_belong_by_label_or_owner(
        #[case] labels: &[(&str, &str)],
        #[case] owners: &[&str],
        #[case] expected: Vec<Key>,
    ) {
        let service = Service { metadata: meta("svc", labels, owners), ..Service::default() };
        assert_eq!(Object::of_service(&service).owners, expected);
    }

    #[test]
    fn named_objects_count_by_name_whoever_owns_them() {
        let mut index = Index::default();
        let mut autoscaled = RayCluster::new("c", Default::default());
        autoscaled.metadata.namespace = Some("ns".to_string());
        autoscaled.spec.enable_in_tree_autoscaling = Some(true);
        index.apply(Change::Applied(Watched::RayCluster, Object::of_cluster(autoscaled)));
        let account = Object::of_named(&meta("c", &[], &[]));
        assert!(index.apply(Change::Applied(Watched::Named(NamedKind::ServiceAccount), account)).is_empty());
        let role = Object::of_named(&meta("c", &[], &["c"]));
        assert_eq!(index.apply(Change::Applied(Watched::Named(NamedKind::Role), role)).len(), 1);
        let owned: Vec<String> = index.observe_cluster(&key("c")).owned.into_iter().map(|o| o.kind).collect();
        assert_eq!(owned, vec!["ServiceAccount", "Role"]);
    }

    #[rstest]
    #[case::status_only(json!({"status": {"state": "ready"}}), false)]
    #[case::spec(json!({"metadata": {"generation": 2}}), true)]
    #[case::labels(json!({"metadata": {"labels": {"a": "b"}}}), true)]
    #[case::annotations(json!({"metadata": {"annotations": {"a": "b"}}}), true)]
    #[case::deletion(json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}), true)]
    fn only_what_kuberays_predicates_pass_wakes_a_cluster(#[case] change: serde_json::Value, #[case] woken: bool) {
        let mut index = Index::default();
        let mut before = serde_json::to_value(RayCluster::new("c", Default::default())).unwrap();
        before["metadata"]["namespace"] = json!("ns");
        before["metadata"]["generation"] = json!(1);
        let mut after = before.clone();
        json_patch::merge(&mut after, &change);
        let decode = |value: serde_json::Value| Object::of_cluster(serde_json::from_value(value).unwrap());
        index.apply(Change::Applied(Watched::RayCluster, decode(before)));
        let triggers = index.apply(Change::Applied(Watched::RayCluster, decode(after.clone())));
        assert_eq!(!triggers.is_empty(), woken);
        let cached = index.cluster("ns", "c").unwrap();
        assert_eq!(serde_json::to_value(&*cached).unwrap()["status"], after["status"], "the cache follows anyway");
    }

    #[test]
    fn a_deleted_cluster_is_observed_gone_with_what_is_left_of_it() {
        let mut index = Index::default();
        index.apply(Change::Applied(Watched::RayCluster, cluster("c")));
        index.apply(Change::Applied(Watched::Pod, pod("p", "c", "Running")));
        let triggers = index.apply(Change::Deleted(Watched::RayCluster, cluster("c")));
        assert_eq!(triggers, vec![(key("c"), watch("RayCluster", "c", WatchEvent::Deleted))]);
        let observation = index.observe_cluster(&key("c"));
        assert!(observation.cluster.is_none());
        assert_eq!(observation.pods.len(), 1);
        assert_eq!(index.object_keys(), Vec::<Key>::new());
    }
}
