//! The simulated API server's storage: every object, the global resourceVersion counter, a bounded history of
//! changes per resource for watches, and the controllers that act inside a write (garbage collection, the
//! namespace and CRD finalizers). All of it is synchronous and runs under one lock: a write and everything it
//! causes happen at once, with consecutive resourceVersions.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use serde_json::{Map, Value, json};

use super::clock::{Clock, format_time};
use super::defaults::{self, Allocator, CRD_CLEANUP_FINALIZER};
use super::error::{ApiError, Cause, CauseReason, GroupResource, unknown_field_warning};
use super::patch::{self, ApplyRequest};
use super::resources::{CRD_GROUP, CRD_PLURAL, Registry, ResourceId, ResourceType};
use super::rng::Rng;
use super::schema;
use super::selector::{FieldSelector, LabelSelector};

/// The finalizer that holds an owner deleted in the foreground until its blocking dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Namespaces every cluster starts with.
pub const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: ResourceId,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write to one object, as watches replay it.
#[derive(Clone, Debug)]
pub struct Change {
    pub resource_version: u64,
    pub kind: ChangeKind,
    pub object: Arc<Value>,
    /// The object before a modification, so that a filtered watch can tell an object that stopped matching.
    pub previous: Option<Arc<Value>>,
}

#[derive(Debug, Default)]
struct Table {
    objects: BTreeMap<(String, String), Arc<Value>>,
    history: VecDeque<Change>,
    /// A watch may resume from this resourceVersion or a later one: every change after it is still in `history`.
    oldest_watchable: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

/// What a write does with fields its kind's schema does not know (the `fieldValidation` parameter). Only custom
/// resources are checked; built-in kinds keep what they are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them with a warning each (the API server's default).
    #[default]
    Warn,
    /// Refuse the write (400).
    Strict,
}

impl FieldValidation {
    pub fn parse(text: &str) -> Result<FieldValidation, ApiError> {
        match text {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// The parts of `DeleteOptions` the store honours.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<usize>,
}

/// What a delete did.
#[derive(Clone, Debug)]
pub enum Deleted {
    /// Removed from storage.
    Gone(Arc<Value>),
    /// Marked with a deletionTimestamp; finalizers (or dependents) hold it.
    Pending(Arc<Value>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply { force: bool },
}

/// What a PATCH request carries besides its target.
#[derive(Clone, Copy, Debug)]
pub struct PatchRequest<'a> {
    pub kind: PatchKind,
    pub body: &'a Value,
    pub subresource: Subresource,
    pub field_manager: Option<&'a str>,
    pub field_validation: FieldValidation,
}

/// How an update treats its body.
#[derive(Clone, Copy, Debug)]
struct WriteMode {
    subresource: Subresource,
    /// Take the body's managedFields (server-side apply computed them) rather than keep the stored ones.
    keep_managed_fields: bool,
    field_validation: FieldValidation,
}

/// Where a watch starts.
#[derive(Clone, Debug)]
pub struct WatchStart {
    /// Synthetic ADDED events for the current state (a watch without a resourceVersion, or with `0`).
    pub initial: Vec<Arc<Value>>,
    pub cursor: u64,
}

/// What a watch finds when it looks again.
#[derive(Clone, Debug)]
pub enum WatchPoll {
    Changes {
        changes: Vec<Change>,
        cursor: u64,
    },
    /// The history no longer reaches back to the cursor: `410 Gone`, with the oldest resourceVersion left.
    Expired {
        oldest: u64,
    },
    /// The resource is no longer served (its CRD was deleted).
    Closed,
}

/// One line a container wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub text: String,
}

pub struct Store {
    resource_version: u64,
    registry: Registry,
    tables: BTreeMap<ResourceId, Table>,
    uids: HashMap<String, ObjectKey>,
    /// Owner uid -> the objects whose ownerReferences name it.
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
    rng: Rng,
    clock: Arc<dyn Clock>,
    allocator: Allocator,
    history_limit: usize,
    /// The warnings of the request being served (fields dropped), for its answer's `Warning` headers.
    warnings: Vec<String>,
    /// Containers' output by Pod uid and container name; it goes with its Pod.
    logs: HashMap<String, BTreeMap<String, Vec<LogLine>>>,
}

fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    metadata(object).and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or_default()
}

fn uid_of(object: &Value) -> &str {
    meta_str(object, "uid")
}

fn is_deleting(object: &Value) -> bool {
    metadata(object).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn set_finalizers(object: &mut Value, list: &[String]) {
    if list.is_empty() {
        if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("finalizers");
        }
    } else {
        object["metadata"]["finalizers"] = json!(list);
    }
}

fn owner_references(object: &Value) -> Vec<&Value> {
    metadata(object)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| refs.iter().collect())
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> BTreeSet<String> {
    owner_references(object).iter().filter_map(|r| r.get("uid").and_then(Value::as_str)).map(str::to_string).collect()
}

/// Everything but metadata (and status where it has its own endpoint): what `generation` counts changes of.
fn generation_content(object: &Value, status_subresource: bool) -> Value {
    let mut content = object.clone();
    if let Some(map) = content.as_object_mut() {
        map.remove("metadata");
        if status_subresource {
            map.remove("status");
        }
    }
    content
}

fn namespace_spec_finalizers(object: &Value) -> bool {
    object.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

impl Store {
    /// A cluster as a fresh one looks: the four namespaces and the `kubernetes` Service.
    pub fn new(seed: u64, clock: Arc<dyn Clock>, history_limit: usize) -> Store {
        let registry = Registry::default();
        let tables = registry.types().map(|t| (t.id(), Table::default())).collect();
        let mut store = Store {
            resource_version: 0,
            registry,
            tables,
            uids: HashMap::new(),
            dependents: HashMap::new(),
            rng: Rng::seeded(seed),
            clock,
            allocator: Allocator::default(),
            history_limit: history_limit.max(1),
            warnings: Vec::new(),
            logs: HashMap::new(),
        };
        store.bootstrap();
        store
    }

    fn bootstrap(&mut self) {
        let builtin = |group: &str, plural: &str| {
            self.registry.get(&ResourceId { group: group.to_string(), plural: plural.to_string() }).cloned()
        };
        let (Some(namespaces), Some(services)) = (builtin("", "namespaces"), builtin("", "services")) else { return };
        let mut created = Vec::new();
        for name in INITIAL_NAMESPACES {
            created.push(self.create(&namespaces, None, json!({"metadata": {"name": name}}), FieldValidation::Ignore));
        }
        let kubernetes = json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        });
        created.push(self.create(&services, Some("default"), kubernetes, FieldValidation::Ignore));
        debug_assert!(created.iter().all(Result::is_ok), "{created:?}");
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Appends a line to a container's output (the simulated kubelet and processes write there).
    pub fn append_log(&mut self, pod_uid: &str, container: &str, text: &str) {
        let line = LogLine { time: self.now_text(), text: text.to_string() };
        self.logs.entry(pod_uid.to_string()).or_default().entry(container.to_string()).or_default().push(line);
    }

    /// What a container wrote so far.
    pub fn log(&self, pod_uid: &str, container: &str) -> &[LogLine] {
        self.logs.get(pod_uid).and_then(|containers| containers.get(container)).map_or(&[], Vec::as_slice)
    }

    /// The warnings the writes since the last call gave.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The simulated cluster's time.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    fn now_text(&self) -> String {
        format_time(self.clock.now())
    }

    fn key(resource: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectKey {
        let namespace = if resource.namespaced { namespace.unwrap_or_default() } else { "" };
        ObjectKey { resource: resource.id(), namespace: namespace.to_string(), name: name.to_string() }
    }

    fn object(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.tables.get(&key.resource)?.objects.get(&(key.namespace.clone(), key.name.clone())).cloned()
    }

    /// The object with this uid, and its resource.
    pub fn by_uid(&self, uid: &str) -> Option<(&ResourceId, Arc<Value>)> {
        let key = self.uids.get(uid)?;
        Some((&key.resource, self.object(key)?))
    }

    /// The objects whose ownerReferences name `uid`, in key order.
    pub fn dependents_of(&self, uid: &str) -> Vec<(&ResourceId, Arc<Value>)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|key| Some((&key.resource, self.object(key)?)))
            .collect()
    }

    pub fn get(&self, resource: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Arc<Value>, ApiError> {
        self.object(&Self::key(resource, namespace, name))
            .ok_or_else(|| ApiError::not_found(resource.group_resource(), name))
    }

    // ---- the primitive writes: every change goes through these three ----

    fn record(&mut self, resource: &ResourceId, change: Change) {
        let limit = self.history_limit;
        if let Some(table) = self.tables.get_mut(resource) {
            table.history.push_back(change);
            while table.history.len() > limit {
                if let Some(evicted) = table.history.pop_front() {
                    table.oldest_watchable = evicted.resource_version;
                }
            }
        }
    }

    fn stamp(&mut self, object: &mut Value) -> u64 {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.resource_version
    }

    fn index(&mut self, key: &ObjectKey, before: Option<&Value>, after: Option<&Value>) {
        let old = before.map(owner_uids).unwrap_or_default();
        let new = after.map(owner_uids).unwrap_or_default();
        for uid in old.difference(&new) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in new.difference(&old) {
            self.dependents.entry(uid.clone()).or_default().insert(key.clone());
        }
        match (before, after) {
            (_, Some(object)) => {
                self.uids.insert(uid_of(object).to_string(), key.clone());
            }
            (Some(object), None) => {
                self.uids.remove(uid_of(object));
            }
            (None, None) => {}
        }
    }

    fn insert(&mut self, key: &ObjectKey, mut object: Value) -> Arc<Value> {
        let resource_version = self.stamp(&mut object);
        let object = Arc::new(object);
        self.index(key, None, Some(&object));
        if let Some(table) = self.tables.get_mut(&key.resource) {
            table.objects.insert((key.namespace.clone(), key.name.clone()), object.clone());
        }
        let change = Change { resource_version, kind: ChangeKind::Added, object: object.clone(), previous: None };
        self.record(&key.resource, change);
        self.after_write(key, &object);
        object
    }

    fn replace(&mut self, key: &ObjectKey, mut object: Value) -> Arc<Value> {
        let resource_version = self.stamp(&mut object);
        let object = Arc::new(object);
        let previous = self
            .tables
            .get_mut(&key.resource)
            .and_then(|t| t.objects.insert((key.namespace.clone(), key.name.clone()), object.clone()));
        self.index(key, previous.as_deref(), Some(&object));
        let change = Change { resource_version, kind: ChangeKind::Modified, object: object.clone(), previous };
        self.record(&key.resource, change);
        self.after_write(key, &object);
        object
    }

    /// Removes the object, then lets the garbage collector and the finalizing controllers react.
    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Value>> {
        let stored = self.tables.get_mut(&key.resource)?.objects.remove(&(key.namespace.clone(), key.name.clone()))?;
        let mut last = stored.as_ref().clone();
        let resource_version = self.stamp(&mut last);
        let last = Arc::new(last);
        self.index(key, Some(&stored), None);
        if key.resource.group.is_empty() && key.resource.plural == "pods" {
            self.logs.remove(uid_of(&stored));
        }
        let change =
            Change { resource_version, kind: ChangeKind::Deleted, object: last.clone(), previous: Some(stored) };
        self.record(&key.resource, change);
        self.after_removal(key, &last);
        Some(last)
    }

    /// A CRD written is served (again) at once.
    fn after_write(&mut self, key: &ObjectKey, object: &Value) {
        if key.resource.group == CRD_GROUP
            && key.resource.plural == CRD_PLURAL
            && let Some(resource) = self.registry.register_crd(object)
        {
            let oldest_watchable = self.resource_version;
            self.tables.entry(resource.id()).or_insert_with(|| Table { oldest_watchable, ..Table::default() });
        }
    }

    fn after_removal(&mut self, key: &ObjectKey, removed: &Value) {
        let uid = uid_of(removed).to_string();
        for dependent in self.dependents.get(&uid).cloned().unwrap_or_default() {
            self.collect_dependent(&dependent, Propagation::Background);
        }
        for owner in owner_uids(removed) {
            if let Some(owner_key) = self.uids.get(&owner).cloned() {
                self.try_finish(&owner_key);
            }
        }
        if !key.namespace.is_empty() {
            self.try_finish(&namespace_key(&key.namespace));
        }
        if let Some(crd) = self.crd_key_of(&key.resource) {
            self.try_finish(&crd);
        }
        if key.resource.group == CRD_GROUP
            && key.resource.plural == CRD_PLURAL
            && let Some(resource) = crd_resource_id(removed)
        {
            self.registry.unregister(&resource);
            if self.registry.get(&resource).is_none() {
                self.tables.remove(&resource);
            }
        }
    }

    fn crd_key_of(&self, resource: &ResourceId) -> Option<ObjectKey> {
        self.registry.get(resource).filter(|t| t.custom).map(|t| ObjectKey {
            resource: ResourceId { group: CRD_GROUP.to_string(), plural: CRD_PLURAL.to_string() },
            namespace: String::new(),
            name: format!("{}.{}", t.plural, t.group),
        })
    }

    // ---- garbage collection and finalizing controllers ----

    /// An owner that exists and is not waiting for its dependents keeps a dependent alive.
    fn is_solid_owner(&self, uid: &str, dependent: &ObjectKey) -> bool {
        self.uids
            .get(uid)
            .filter(|owner| owner.namespace.is_empty() || owner.namespace == dependent.namespace)
            .is_some_and(|owner| {
                self.object(owner).is_some_and(|o| !finalizers(&o).iter().any(|f| f == FOREGROUND_FINALIZER))
            })
    }

    /// What the garbage collector does with a dependent whose owner went away (or waits for it): delete it when no
    /// solid owner is left, else drop the references to owners that are gone or going.
    fn collect_dependent(&mut self, key: &ObjectKey, propagation: Propagation) {
        let Some(object) = self.object(key) else { return };
        let uids = owner_uids(&object);
        if uids.is_empty() {
            return;
        }
        let solid: BTreeSet<&String> = uids.iter().filter(|uid| self.is_solid_owner(uid, key)).collect();
        if solid.is_empty() {
            self.delete_key(key, propagation);
            return;
        }
        let mut next = object.as_ref().clone();
        if let Some(refs) = next.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
            refs.retain(|r| r.get("uid").and_then(Value::as_str).is_some_and(|uid| solid.contains(&uid.to_string())));
        }
        if next != *object {
            self.replace(key, next);
        }
    }

    /// The garbage collector deletes an object whose owners all do not exist (say, created with a wrong uid).
    fn collect_if_orphaned(&mut self, key: &ObjectKey) {
        if let Some(object) = self.object(key)
            && !owner_uids(&object).is_empty()
            && !is_deleting(&object)
        {
            self.collect_dependent(key, Propagation::Background);
        }
    }

    fn has_blocking_dependents(&self, uid: &str) -> bool {
        self.dependents.get(uid).into_iter().flatten().any(|key| {
            self.object(key).is_some_and(|dependent| {
                owner_references(&dependent).iter().any(|r| {
                    r.get("uid").and_then(Value::as_str) == Some(uid)
                        && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                })
            })
        })
    }

    fn is_namespace(key: &ObjectKey) -> bool {
        key.resource.group.is_empty() && key.resource.plural == "namespaces"
    }

    fn is_crd(key: &ObjectKey) -> bool {
        key.resource.group == CRD_GROUP && key.resource.plural == CRD_PLURAL
    }

    fn namespace_is_empty(&self, namespace: &str) -> bool {
        !self.tables.values().any(|t| t.objects.keys().any(|(ns, _)| ns == namespace))
    }

    fn instances(&self, crd: &Value) -> Vec<ObjectKey> {
        let Some(resource) = crd_resource_id(crd) else { return Vec::new() };
        self.tables
            .get(&resource)
            .map(|t| {
                t.objects
                    .keys()
                    .map(|(ns, name)| ObjectKey {
                        resource: resource.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Lets an object being deleted go once nothing holds it: the foreground finalizer drops when no blocking
    /// dependent is left, a namespace's when it is empty, a CRD's when its custom resources are gone.
    fn try_finish(&mut self, key: &ObjectKey) {
        let Some(object) = self.object(key) else { return };
        if !is_deleting(&object) {
            return;
        }
        let mut next = object.as_ref().clone();
        let mut list = finalizers(&object);
        if list.iter().any(|f| f == FOREGROUND_FINALIZER) && !self.has_blocking_dependents(uid_of(&object)) {
            list.retain(|f| f != FOREGROUND_FINALIZER);
        }
        if Self::is_crd(key) && list.iter().any(|f| f == CRD_CLEANUP_FINALIZER) && self.instances(&object).is_empty() {
            list.retain(|f| f != CRD_CLEANUP_FINALIZER);
        }
        set_finalizers(&mut next, &list);
        if Self::is_namespace(key) && namespace_spec_finalizers(&next) && self.namespace_is_empty(&key.name) {
            next["spec"]["finalizers"] = json!([]);
        }
        if list.is_empty() && !(Self::is_namespace(key) && namespace_spec_finalizers(&next)) {
            self.remove(key);
        } else if next != *object {
            self.replace(key, next);
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for key in self.dependents.get(uid).cloned().unwrap_or_default() {
            if let Some(object) = self.object(&key) {
                let mut next = object.as_ref().clone();
                if let Some(refs) = next.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                    if refs.is_empty()
                        && let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("ownerReferences");
                    }
                }
                self.replace(&key, next);
            }
        }
    }

    /// Deletes an object as the API server and its controllers together would.
    fn delete_key(&mut self, key: &ObjectKey, propagation: Propagation) -> Option<Deleted> {
        let current = self.object(key)?;
        if is_deleting(&current) {
            return Some(Deleted::Pending(current));
        }
        let uid = uid_of(&current).to_string();
        if propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let mut list = finalizers(&current);
        let foreground = propagation == Propagation::Foreground;
        if foreground && !list.iter().any(|f| f == FOREGROUND_FINALIZER) {
            list.push(FOREGROUND_FINALIZER.to_string());
        }
        let held = !list.is_empty() || (Self::is_namespace(key) && namespace_spec_finalizers(&current));
        if !held {
            return self.remove(key).map(Deleted::Gone);
        }
        let mut next = current.as_ref().clone();
        next["metadata"]["deletionTimestamp"] = json!(self.now_text());
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        set_finalizers(&mut next, &list);
        if Self::is_namespace(key) {
            next["status"]["phase"] = json!("Terminating");
        }
        let marked = self.replace(key, next);
        if foreground {
            for dependent in self.dependents.get(&uid).cloned().unwrap_or_default() {
                self.collect_dependent(&dependent, Propagation::Foreground);
            }
        }
        if Self::is_namespace(key) {
            let contents: Vec<ObjectKey> = self
                .tables
                .iter()
                .flat_map(|(resource, table)| {
                    table.objects.keys().filter(|(ns, _)| *ns == key.name).map(|(ns, name)| ObjectKey {
                        resource: resource.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    })
                })
                .collect();
            for content in contents {
                self.delete_key(&content, Propagation::Background);
            }
        }
        if Self::is_crd(key) {
            for instance in self.instances(&marked) {
                self.delete_key(&instance, Propagation::Background);
            }
        }
        self.try_finish(key);
        Some(match self.object(key) {
            Some(object) => Deleted::Pending(object),
            None => Deleted::Gone(marked),
        })
    }

    // ---- the API operations ----

    /// Checks the body's apiVersion and kind against the endpoint and fills them in.
    fn check_type(resource: &ResourceType, body: &mut Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        if !api_version.is_empty() && !resource.versions.iter().any(|v| resource.api_version(v) == api_version) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                resource.api_version(resource.preferred_version())
            )));
        }
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !kind.is_empty() && kind != resource.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        body["apiVersion"] = json!(resource.api_version(resource.preferred_version()));
        body["kind"] = json!(resource.kind);
        if !body.get("metadata").is_some_and(Value::is_object) {
            body["metadata"] = json!({});
        }
        Ok(())
    }

    fn check_namespace(resource: &ResourceType, body: &mut Value, namespace: Option<&str>) -> Result<(), ApiError> {
        let in_body = meta_str(body, "namespace").to_string();
        match (resource.namespaced, namespace) {
            (true, Some(namespace)) => {
                if !in_body.is_empty() && in_body != namespace {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                body["metadata"]["namespace"] = json!(namespace);
            }
            (true, None) => return Err(ApiError::no_such_path()),
            (false, _) => {
                if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("namespace");
                }
            }
        }
        Ok(())
    }

    fn invalid(resource: &ResourceType, name: &str, causes: &[Cause]) -> ApiError {
        ApiError::invalid(&resource.kind, &resource.group, name, causes)
    }

    /// What decoding a custom resource does: drops the fields its schema does not know (or refuses them), then
    /// applies the schema's defaults.
    fn decode_custom(
        &mut self,
        resource: &ResourceType,
        body: &mut Value,
        field_validation: FieldValidation,
    ) -> Result<(), ApiError> {
        let version = resource.preferred_version();
        let Some(schema) = resource.schema(version) else { return Ok(()) };
        let unknown = schema::prune(schema, body);
        match field_validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                return Err(ApiError::strict_decoding(&resource.kind, version, &unknown));
            }
            FieldValidation::Warn => self.warnings.extend(unknown.iter().map(|field| unknown_field_warning(field))),
            _ => {}
        }
        schema::apply_defaults(schema, body);
        Ok(())
    }

    /// A custom resource against its schema and validation rules (`old`: the stored object, on update).
    fn validate_custom(resource: &ResourceType, body: &Value, old: Option<&Value>, name: &str) -> Result<(), ApiError> {
        let Some(schema) = resource.schema(resource.preferred_version()) else { return Ok(()) };
        let causes = schema::validate(schema, body, old);
        if causes.is_empty() { Ok(()) } else { Err(Self::invalid(resource, name, &causes)) }
    }

    pub fn create(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        mut body: Value,
        field_validation: FieldValidation,
    ) -> Result<Arc<Value>, ApiError> {
        Self::check_type(resource, &mut body)?;
        Self::check_namespace(resource, &mut body, namespace)?;
        self.decode_custom(resource, &mut body, field_validation)?;
        let mut name = meta_str(&body, "name").to_string();
        let generate_name = meta_str(&body, "generateName").to_string();
        if name.is_empty() && !generate_name.is_empty() {
            let prefix: String = generate_name.chars().take(58).collect();
            name = loop {
                let candidate = format!("{prefix}{}", self.rng.name_suffix());
                if self.object(&Self::key(resource, namespace, &candidate)).is_none() {
                    break candidate;
                }
            };
            body["metadata"]["name"] = json!(name);
        }
        if name.is_empty() {
            let cause = Cause::new("metadata.name", CauseReason::Required, "name or generateName is required");
            return Err(Self::invalid(resource, "", &[cause]));
        }
        if let Some(cause) = defaults::check_name(resource, &name) {
            return Err(Self::invalid(resource, &name, &[cause]));
        }
        if !meta_str(&body, "resourceVersion").is_empty() {
            return Err(ApiError::internal("resourceVersion should not be set on objects to be created"));
        }
        let key = Self::key(resource, namespace, &name);
        if resource.namespaced {
            self.check_namespace_accepts(resource, &key.namespace, &name)?;
        }
        Self::validate_custom(resource, &body, None, &name)?;
        if self.object(&key).is_some() {
            return Err(ApiError::already_exists(resource.group_resource(), &name));
        }
        if self.crd_key_of(&resource.id()).and_then(|crd| self.object(&crd)).is_some_and(|crd| is_deleting(&crd)) {
            return Err(ApiError::method_not_allowed_because(
                "create not allowed while custom resource definition is terminating",
            ));
        }
        let now = self.now_text();
        let uid = self.rng.uid();
        let metadata = body["metadata"].as_object_mut().ok_or_else(|| ApiError::bad_request("metadata"))?;
        metadata.insert("uid".to_string(), json!(uid));
        metadata.insert("creationTimestamp".to_string(), json!(now));
        for server_set in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            metadata.remove(server_set);
        }
        if resource.generation {
            metadata.insert("generation".to_string(), json!(1));
        } else {
            metadata.remove("generation");
        }
        if resource.status_subresource {
            match defaults::initial_status(resource, &body) {
                Some(status) => body["status"] = status,
                None => {
                    if let Some(map) = body.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        defaults::on_create(resource, &mut body, &now, &mut self.allocator)
            .map_err(|causes| Self::invalid(resource, &name, &causes))?;
        let created = self.insert(&key, body);
        self.collect_if_orphaned(&key);
        Ok(created)
    }

    fn check_namespace_accepts(&self, resource: &ResourceType, namespace: &str, name: &str) -> Result<(), ApiError> {
        match self.object(&namespace_key(namespace)) {
            None => Err(ApiError::not_found(GroupResource { group: "", resource: "namespaces" }, namespace)),
            Some(ns) if is_deleting(&ns) => Err(ApiError::forbidden(
                resource.group_resource(),
                name,
                &format!("unable to create new content in namespace {namespace} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// PUT (and the end of every patch): preconditions, the status rules, generation, finalizer rules, then write.
    /// An update that changes nothing writes nothing and keeps the resourceVersion.
    pub fn update(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        subresource: Subresource,
        field_validation: FieldValidation,
    ) -> Result<Arc<Value>, ApiError> {
        let mode = WriteMode { subresource, keep_managed_fields: false, field_validation };
        self.write(resource, namespace, name, body, mode)
    }

    fn write(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut body: Value,
        mode: WriteMode,
    ) -> Result<Arc<Value>, ApiError> {
        let WriteMode { subresource, keep_managed_fields, field_validation } = mode;
        let current = self.get(resource, namespace, name)?;
        Self::check_type(resource, &mut body)?;
        Self::check_namespace(resource, &mut body, namespace)?;
        self.decode_custom(resource, &mut body, field_validation)?;
        let body_name = meta_str(&body, "name");
        if body_name.is_empty() {
            body["metadata"]["name"] = json!(name);
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let group_resource = resource.group_resource();
        let wanted_version = meta_str(&body, "resourceVersion");
        if !wanted_version.is_empty() && wanted_version != meta_str(&current, "resourceVersion") {
            return Err(ApiError::stale_resource_version(group_resource, name));
        }
        let wanted_uid = uid_of(&body);
        if !wanted_uid.is_empty() && wanted_uid != uid_of(&current) {
            let why = format!(
                "Precondition failed: UID in precondition: {wanted_uid}, UID in object meta: {}",
                uid_of(&current)
            );
            return Err(ApiError::conflict(group_resource, name, &why));
        }
        let managed_fields = body.pointer("/metadata/managedFields").cloned();
        let mut next = match subresource {
            Subresource::Main => {
                let mut next = body;
                if resource.status_subresource {
                    carry_status(&mut next, &current);
                }
                next
            }
            Subresource::Status => {
                let mut next = current.as_ref().clone();
                carry_status(&mut next, &body);
                next
            }
        };
        let metadata = next["metadata"].as_object_mut().ok_or_else(|| ApiError::bad_request("metadata"))?;
        for server_set in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
        ] {
            match current.pointer(&format!("/metadata/{server_set}")) {
                Some(value) => metadata.insert(server_set.to_string(), value.clone()),
                None => metadata.remove(server_set),
            };
        }
        metadata.insert("resourceVersion".to_string(), json!(meta_str(&current, "resourceVersion")));
        if let Some(fields) = managed_fields.filter(|_| keep_managed_fields) {
            metadata.insert("managedFields".to_string(), fields);
        }
        if is_deleting(&current) {
            let before = finalizers(&current);
            if finalizers(&next).iter().any(|f| !before.contains(f)) {
                let cause = Cause::new(
                    "metadata.finalizers",
                    CauseReason::Forbidden,
                    "no new finalizers can be added if the object is being deleted",
                );
                return Err(Self::invalid(resource, name, &[cause]));
            }
        }
        defaults::on_update(resource, &mut next, &current, &mut self.allocator)
            .map_err(|causes| Self::invalid(resource, name, &causes))?;
        Self::validate_custom(resource, &next, Some(&current), name)?;
        if resource.generation
            && generation_content(&next, resource.status_subresource)
                != generation_content(&current, resource.status_subresource)
        {
            let generation = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            next["metadata"]["generation"] = json!(generation + 1);
        }
        if next == *current {
            return Ok(current);
        }
        let key = Self::key(resource, namespace, name);
        let namespace_held = Self::is_namespace(&key) && namespace_spec_finalizers(&next);
        if is_deleting(&next) && finalizers(&next).is_empty() && !namespace_held {
            // The last finalizer is gone: the update is the deletion, and the DELETED event carries this state.
            self.replace_silently(&key, next);
            return self.remove(&key).ok_or_else(|| ApiError::not_found(group_resource, name));
        }
        let written = self.replace(&key, next);
        self.collect_if_orphaned(&key);
        if is_deleting(&written) {
            self.try_finish(&key);
        }
        Ok(self.object(&key).unwrap_or(written))
    }

    /// Stores an object without a change event: only for the final state of an object about to be removed, whose
    /// DELETED event carries it.
    fn replace_silently(&mut self, key: &ObjectKey, object: Value) {
        let object = Arc::new(object);
        let previous = self
            .tables
            .get_mut(&key.resource)
            .and_then(|t| t.objects.insert((key.namespace.clone(), key.name.clone()), object.clone()));
        self.index(key, previous.as_deref(), Some(&object));
    }

    /// A PATCH; answers the object and whether it was created (server-side apply creates what does not exist).
    pub fn patch(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        request: &PatchRequest,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let PatchRequest { kind, body, subresource, field_manager, field_validation } = *request;
        let current = match self.get(resource, namespace, name) {
            Ok(current) => current,
            Err(missing) => {
                return match kind {
                    PatchKind::Apply { force } if subresource == Subresource::Main => {
                        let applied = self.apply_onto(resource, &json!({}), body, field_manager, force, name)?;
                        self.create(resource, namespace, applied, field_validation).map(|created| (created, true))
                    }
                    _ => Err(missing),
                };
            }
        };
        let mut patched = current.as_ref().clone();
        match kind {
            PatchKind::Merge => patch::merge_patch(&mut patched, body),
            PatchKind::Json => patch::json_patch(&mut patched, body)?,
            PatchKind::Strategic => {
                if resource.custom {
                    return Err(ApiError::unsupported_media_type(
                        "application/strategic-merge-patch+json",
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                        ],
                    ));
                }
                patch::strategic_merge(&mut patched, body);
            }
            PatchKind::Apply { force } => {
                let applied = match subresource {
                    Subresource::Main if resource.status_subresource => without(body, "status"),
                    Subresource::Main => body.clone(),
                    Subresource::Status => {
                        let mut only_status = json!({"metadata": body.get("metadata").cloned().unwrap_or(json!({}))});
                        if let Some(status) = body.get("status") {
                            only_status["status"] = status.clone();
                        }
                        only_status
                    }
                };
                patched = self.apply_onto(resource, &current, &applied, field_manager, force, name)?;
            }
        }
        // A patch that sets a resourceVersion makes it a precondition; otherwise it applies to the current version.
        if meta_str(&patched, "resourceVersion").is_empty() {
            patched["metadata"]["resourceVersion"] = json!(meta_str(&current, "resourceVersion"));
        }
        let mode =
            WriteMode { subresource, keep_managed_fields: matches!(kind, PatchKind::Apply { .. }), field_validation };
        self.write(resource, namespace, name, patched, mode).map(|updated| (updated, false))
    }

    fn apply_onto(
        &self,
        resource: &ResourceType,
        current: &Value,
        applied: &Value,
        field_manager: Option<&str>,
        force: bool,
        name: &str,
    ) -> Result<Value, ApiError> {
        let manager = field_manager
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad_request("PATCH (apply) requests must set the fieldManager parameter"))?;
        let api_version = applied.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        if api_version.is_empty() || applied.get("kind").and_then(Value::as_str).unwrap_or_default().is_empty() {
            return Err(ApiError::bad_request("apiVersion and kind must be set in an applied configuration"));
        }
        let time = self.now_text();
        let request = ApplyRequest { manager, force, api_version, time: &time };
        patch::apply(current, applied, &request)
            .map_err(|conflicts| ApiError::apply_conflicts(resource.group_resource(), name, &conflicts))
    }

    pub fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let current = self.get(resource, namespace, name)?;
        let group_resource = resource.group_resource();
        if let Some(uid) = options.precondition_uid.as_deref().filter(|uid| *uid != uid_of(&current)) {
            let why =
                format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", uid_of(&current));
            return Err(ApiError::conflict(group_resource, name, &why));
        }
        let stored_version = meta_str(&current, "resourceVersion");
        if let Some(version) = options.precondition_resource_version.as_deref().filter(|v| *v != stored_version) {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in meta: {stored_version}"
            );
            return Err(ApiError::conflict(group_resource, name, &why));
        }
        let default = if resource.orphans_by_default { Propagation::Orphan } else { Propagation::Background };
        let key = Self::key(resource, namespace, name);
        self.delete_key(&key, options.propagation.unwrap_or(default))
            .ok_or_else(|| ApiError::not_found(resource.group_resource(), name))
    }

    /// DELETE on a collection: deletes every object the selectors match and answers what they were.
    pub fn delete_collection(
        &mut self,
        resource: &ResourceType,
        namespace: Option<&str>,
        list: &ListOptions,
        options: &DeleteOptions,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let everything = ListOptions { limit: None, continue_token: None, ..list.clone() };
        let page = self.list(resource, namespace, &everything)?;
        let mut deleted = Vec::new();
        for item in page.items {
            let item_namespace = meta_str(&item, "namespace").to_string();
            let name = meta_str(&item, "name").to_string();
            let namespace = (!item_namespace.is_empty()).then_some(item_namespace.as_str());
            match self.delete(resource, namespace, &name, options) {
                Ok(Deleted::Gone(object) | Deleted::Pending(object)) => deleted.push(object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// The objects of a resource in key order (namespace, then name), within one namespace if given, that the
    /// selectors match.
    fn matching<'a>(
        &'a self,
        resource: &ResourceType,
        namespace: Option<&'a str>,
        options: &'a ListOptions,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let start = (namespace.unwrap_or_default().to_string(), String::new());
        self.tables
            .get(&resource.id())
            .into_iter()
            .flat_map(move |table| table.objects.range(start.clone()..))
            .take_while(move |(key, _)| namespace.is_none_or(|ns| key.0 == ns))
            .map(|(_, object)| object)
            .filter(move |object| options.labels.matches(object) && options.fields.matches(object))
    }

    pub fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        let table = self.tables.get(&resource.id());
        let oldest_watchable = table.map_or(0, |t| t.oldest_watchable);
        let (list_version, after) = match options.continue_token.as_deref() {
            Some(token) => {
                let (version, after) = decode_continue(token)?;
                if version < oldest_watchable {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter.",
                    ));
                }
                (version, Some(after))
            }
            None => (self.resource_version, None),
        };
        if options.resource_version_match.as_deref() == Some("Exact")
            && let Some(wanted) = options.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok())
        {
            let changed_since = table.and_then(|t| t.history.back()).is_some_and(|c| c.resource_version > wanted);
            if wanted < oldest_watchable || changed_since {
                return Err(ApiError::expired(format!(
                    "too old resource version: {wanted} ({})",
                    self.resource_version
                )));
            }
        }
        let mut items: Vec<Arc<Value>> = Vec::new();
        let mut more = false;
        let mut remaining = 0usize;
        let limit = options.limit.filter(|l| *l > 0);
        for object in self.matching(resource, namespace, options) {
            let key = (meta_str(object, "namespace").to_string(), meta_str(object, "name").to_string());
            if after.as_ref().is_some_and(|after| key <= *after) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                remaining += 1;
                continue;
            }
            items.push(object.clone());
        }
        let continue_token = more.then(|| {
            let last = items.last().map(|o| (meta_str(o, "namespace").to_string(), meta_str(o, "name").to_string()));
            encode_continue(list_version, &last.unwrap_or_default())
        });
        let selective = !options.labels.is_empty() || options.fields != FieldSelector::default();
        Ok(ListPage {
            items,
            resource_version: list_version,
            continue_token,
            remaining_item_count: (more && !selective).then_some(remaining),
        })
    }

    /// Where a watch starts: with synthetic ADDED events for the current state when it names no resourceVersion
    /// (or `0`, or asks for initial events), else right after the one it names — or `410 Gone` if the history no
    /// longer reaches that far.
    pub fn watch_start(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        options: &ListOptions,
        send_initial_events: bool,
    ) -> Result<WatchStart, ApiError> {
        let requested = options.resource_version.as_deref().filter(|v| !v.is_empty() && *v != "0");
        match requested {
            Some(version) if !send_initial_events => {
                let version: u64 = version
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {version}")))?;
                let oldest = self.tables.get(&resource.id()).map_or(0, |t| t.oldest_watchable);
                if version < oldest {
                    return Err(ApiError::expired(format!("too old resource version: {version} ({})", oldest + 1)));
                }
                Ok(WatchStart { initial: Vec::new(), cursor: version })
            }
            _ => Ok(WatchStart {
                initial: self.matching(resource, namespace, options).cloned().collect(),
                cursor: self.resource_version,
            }),
        }
    }

    /// The changes to a resource after `cursor` (unfiltered; the watch filters them).
    pub fn changes_since(&self, resource: &ResourceId, cursor: u64) -> WatchPoll {
        let Some(table) = self.tables.get(resource) else { return WatchPoll::Closed };
        if cursor < table.oldest_watchable {
            return WatchPoll::Expired { oldest: table.oldest_watchable + 1 };
        }
        let start = table.history.partition_point(|c| c.resource_version <= cursor);
        let changes: Vec<Change> = table.history.range(start..).cloned().collect();
        let cursor = changes.last().map_or(cursor, |c| c.resource_version);
        WatchPoll::Changes { changes, cursor }
    }
}

fn namespace_key(name: &str) -> ObjectKey {
    ObjectKey {
        resource: ResourceId { group: String::new(), plural: "namespaces".to_string() },
        namespace: String::new(),
        name: name.to_string(),
    }
}

fn without(value: &Value, field: &str) -> Value {
    let mut copy = value.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove(field);
    }
    copy
}

/// The resource a CRD object defines, by group and plural.
fn crd_resource_id(crd: &Value) -> Option<ResourceId> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str)?;
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str)?;
    Some(ResourceId { group: group.to_string(), plural: plural.to_string() })
}

/// The continue token's shape follows the API server's: base64url of `{"v","rv","start"}`.
fn encode_continue(resource_version: u64, after: &(String, String)) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": format!("{}/{}\u{0}", after.0, after.1)});
    BASE64URL_NOPAD.encode(token.to_string().as_bytes())
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion");
    let bytes = BASE64URL_NOPAD.decode(token.as_bytes()).map_err(|_| invalid())?;
    let token: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let version = token.get("rv").and_then(Value::as_u64).ok_or_else(invalid)?;
    let start = token.get("start").and_then(Value::as_str).ok_or_else(invalid)?.trim_end_matches('\u{0}');
    let (namespace, name) = start.split_once('/').ok_or_else(invalid)?;
    Ok((version, (namespace.to_string(), name.to_string())))
}

/// Gives `to` the status of `from` (none when `from` has none): the main endpoint keeps the stored status, the
/// status subresource takes only the status of the request.
fn carry_status(to: &mut Value, from: &Value) {
    match from.get("status") {
        Some(status) => to["status"] = status.clone(),
        None => {
            if let Some(map) = to.as_object_mut() {
                map.remove("status");
            }
        }
    }
}
