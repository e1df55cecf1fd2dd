//! The watches: one `kube::runtime::watcher` per watched kind and namespace, each event reduced at once to what the
//! indexes keep ([`Object`]) and sent to the runtime. A (re)list arrives as one [`Change::Relisted`] for the watch's
//! scope (a namespace, or all), so objects deleted while a watch was down are noticed. The watcher's default backoff retries a failed watch; a `410 Gone`
//! becomes a relist.

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::index::{Change, NamedKind, Object, Watched};
use crate::api::constants::{RAY_CLUSTER_LABEL, RAY_ORIGINATED_FROM_CRD_LABEL};
use crate::api::{RayCluster, RayJob};

/// Where the watches look: every namespace, or these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Namespaces {
    #[default]
    All,
    Only(Vec<String>),
}

impl Namespaces {
    /// `--watch-namespace`: a comma-separated list; empty means every namespace.
    pub fn parse(list: &str) -> Namespaces {
        let names: Vec<String> =
            list.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect();
        if names.is_empty() { Namespaces::All } else { Namespaces::Only(names) }
    }

    /// The scope of each watch: None for every namespace.
    pub fn scopes(&self) -> Vec<Option<String>> {
        match self {
            Namespaces::All => vec![None],
            Namespaces::Only(names) => names.iter().cloned().map(Some).collect(),
        }
    }

    fn apis<K>(&self, client: &kube::Client) -> Vec<(Option<String>, Api<K>)>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        let api = |scope: &Option<String>| match scope {
            None => Api::all(client.clone()),
            Some(namespace) => Api::namespaced(client.clone(), namespace),
        };
        self.scopes().into_iter().map(|scope| (scope.clone(), api(&scope))).collect()
    }
}

/// The kinds the machines need watched; the runtime steps nothing before each has been listed once.
pub const WATCHED: [Watched; 10] = [
    Watched::RayCluster,
    Watched::RayJob,
    Watched::Submitter,
    Watched::Pod,
    Watched::Service,
    Watched::Job,
    Watched::Named(NamedKind::ServiceAccount),
    Watched::Named(NamedKind::Role),
    Watched::Named(NamedKind::RoleBinding),
    Watched::Named(NamedKind::Ingress),
];

/// Starts every watch; each runs until `changes` is closed.
pub fn spawn_all(client: &kube::Client, namespaces: &Namespaces, changes: mpsc::Sender<Change>) {
    let owned = watcher::Config::default().labels(RAY_CLUSTER_LABEL);
    let everything = watcher::Config::default();
    let merged = changes;
    for (scope, api) in namespaces.apis::<RayCluster>(client) {
        spawn(watcher(api, everything.clone()), (Watched::RayCluster, scope), Object::of_cluster, merged.clone());
    }
    for (scope, api) in namespaces.apis::<RayJob>(client) {
        spawn(watcher(api, everything.clone()), (Watched::RayJob, scope), Object::of_rayjob, merged.clone());
    }
    let submitters = watcher::Config::default().labels(&format!("{RAY_ORIGINATED_FROM_CRD_LABEL}=RayJob"));
    for (scope, api) in namespaces.apis::<Job>(client) {
        spawn(
            watcher(api, submitters.clone()),
            (Watched::Submitter, scope),
            |j| Object::of_submitter(&j),
            merged.clone(),
        );
    }
    for (scope, api) in namespaces.apis::<Pod>(client) {
        spawn(watcher(api, owned.clone()), (Watched::Pod, scope), |pod| Object::of_pod(&pod), merged.clone());
    }
    // Services are matched to clusters by label or by owner, and the serve Service carries no cluster label.
    for (scope, api) in namespaces.apis::<Service>(client) {
        spawn(watcher(api, everything.clone()), (Watched::Service, scope), |s| Object::of_service(&s), merged.clone());
    }
    for (scope, api) in namespaces.apis::<Job>(client) {
        spawn(watcher(api, owned.clone()), (Watched::Job, scope), |job| Object::of_job(&job), merged.clone());
    }
    spawn_named::<ServiceAccount>(client, namespaces, NamedKind::ServiceAccount, &merged);
    spawn_named::<Role>(client, namespaces, NamedKind::Role, &merged);
    spawn_named::<RoleBinding>(client, namespaces, NamedKind::RoleBinding, &merged);
    spawn_named::<Ingress>(client, namespaces, NamedKind::Ingress, &merged);
}

/// Kinds read for their names only are watched as metadata: their bodies are never sent.
fn spawn_named<K>(client: &kube::Client, namespaces: &Namespaces, kind: NamedKind, changes: &mpsc::Sender<Change>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    for (scope, api) in namespaces.apis::<PartialObjectMeta<K>>(client) {
        let stream = watcher(api, watcher::Config::default());
        let reduce = |object: PartialObjectMeta<K>| Object::of_named(&object.metadata);
        spawn(stream, (Watched::Named(kind), scope), reduce, changes.clone());
    }
}

fn spawn<K, S>(
    stream: S,
    (kind, scope): (Watched, Option<String>),
    reduce: fn(K) -> Object,
    changes: mpsc::Sender<Change>,
) where
    K: Send + 'static,
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        let mut relist = Vec::new();
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(Event::Init) => {
                    relist.clear();
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    relist.push(reduce(object));
                    continue;
                }
                Ok(Event::InitDone) => Change::Relisted(kind, scope.clone(), std::mem::take(&mut relist)),
                Ok(Event::Apply(object)) => Change::Applied(kind, reduce(object)),
                Ok(Event::Delete(object)) => Change::Deleted(kind, reduce(object)),
                Err(error) => {
                    tracing::warn!(kind = kind.kind(), %error, "watch failed; retrying with backoff");
                    continue;
                }
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
    });
}
