//! The simulated API server driven as the operator drives a cluster: through `kube::Client` and
//! `kube::runtime::watcher`, over the in-process transport (and once over TCP and once through `kuberay sim serve`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kuberay::api::RayCluster;
use kuberay::sim::{Sim, SimConfig};
use rstest::rstest;
use serde_json::{Value, json};

fn config() -> SimConfig {
    SimConfig { seed: 1, ..SimConfig::default() }
}

fn client() -> Client {
    Sim::new(config()).client()
}

fn configmaps(client: &Client) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), "default")
}

fn configmap(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"key": "value"},
    }))
    .unwrap()
}

fn held(mut object: ConfigMap) -> ConfigMap {
    object.metadata.finalizers = Some(vec!["example.com/hold".to_string()]);
    object
}

fn owned_by<K: Resource<DynamicType = ()>>(mut object: ConfigMap, owners: &[&K], block: bool) -> ConfigMap {
    object.metadata.owner_references = Some(
        owners
            .iter()
            .map(|owner| OwnerReference {
                block_owner_deletion: Some(block),
                ..owner.controller_owner_ref(&()).unwrap()
            })
            .collect(),
    );
    object
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
    }))
    .unwrap()
}

fn names<K: Resource>(objects: &[K]) -> Vec<String> {
    objects.iter().map(|o| o.meta().name.clone().unwrap_or_default()).collect()
}

/// The API error a call failed with.
fn status<T: std::fmt::Debug>(result: kube::Result<T>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn resource_version<K: Resource>(object: &K) -> u64 {
    object.meta().resource_version.as_deref().unwrap().parse().unwrap()
}

async fn exists(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name).await.unwrap().is_some()
}

#[tokio::test]
async fn a_new_cluster_has_the_four_namespaces_and_the_kubernetes_service() {
    let client = client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&list.items), ["default", "kube-node-lease", "kube-public", "kube-system"]);
    let default = namespaces.get("default").await.unwrap();
    assert_eq!(default.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(default.metadata.labels.unwrap()["kubernetes.io/metadata.name"], "default");
    let kubernetes = Api::<Service>::namespaced(client, "default").get("kubernetes").await.unwrap();
    assert_eq!(kubernetes.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));
}

#[tokio::test]
async fn discovery_and_version_answer_as_kube_reads_them() {
    let client = client();
    assert_eq!(client.apiserver_version().await.unwrap().git_version, "v1.33.0");
    let discovery = kube::discovery::Discovery::new(client).run().await.unwrap();
    let batch = discovery.get("batch").unwrap();
    let (job, capabilities) = batch.recommended_kind("Job").unwrap();
    assert_eq!((job.plural.as_str(), job.api_version.as_str()), ("jobs", "batch/v1"));
    assert!(capabilities.subresources.iter().any(|(sub, _)| sub.plural == "status"));
    assert!(discovery.get("apiextensions.k8s.io").is_some());
}

#[tokio::test]
async fn create_answers_409_for_a_name_taken_and_get_404_for_a_name_unknown() {
    let api = configmaps(&client());
    let created = api.create(&PostParams::default(), &configmap("a", &[])).await.unwrap();
    assert_eq!(created.metadata.uid.as_ref().map(String::len), Some(36));
    assert!(created.metadata.creation_timestamp.is_some());
    let taken = status(api.create(&PostParams::default(), &configmap("a", &[])).await);
    assert_eq!((taken.code, taken.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(taken.message, "configmaps \"a\" already exists");
    let missing = status(api.get("nope").await);
    assert_eq!(
        (missing.code, missing.reason.as_str(), missing.message.as_str()),
        (404, "NotFound", "configmaps \"nope\" not found")
    );
}

#[tokio::test]
async fn an_update_from_a_stale_version_is_a_conflict_and_an_unchanged_one_writes_nothing() {
    let api = configmaps(&client());
    let created = api.create(&PostParams::default(), &configmap("a", &[])).await.unwrap();
    let unchanged = api.replace("a", &PostParams::default(), &created).await.unwrap();
    assert_eq!(resource_version(&unchanged), resource_version(&created));
    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("key".to_string(), "new".to_string())]));
    let updated = api.replace("a", &PostParams::default(), &changed).await.unwrap();
    assert!(resource_version(&updated) > resource_version(&created));
    let stale = status(api.replace("a", &PostParams::default(), &changed).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes \
         to the latest version and try again"
    );
}

#[tokio::test]
async fn generated_names_follow_the_seed() {
    let generated = |seed: u64| async move {
        let api = configmaps(&Sim::new(SimConfig { seed, ..config() }).client());
        let mut object = configmap("", &[]);
        object.metadata.name = None;
        object.metadata.generate_name = Some("gen-".to_string());
        api.create(&PostParams::default(), &object).await.unwrap().name_any()
    };
    let name = generated(7).await;
    assert_eq!(name, generated(7).await);
    assert_ne!(name, generated(8).await);
    let suffix = name.strip_prefix("gen-").unwrap();
    assert_eq!(suffix.len(), 5);
    assert!(suffix.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{name}");
}

fn event_summary(event: &WatchEvent<ConfigMap>) -> String {
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.reason),
    }
}

#[tokio::test]
async fn a_watch_from_a_listed_version_sees_what_followed_and_resumes_from_any_event() {
    let api = configmaps(&client());
    let listed = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut object = api.create(&PostParams::default(), &configmap("a", &[])).await.unwrap();
    object.data = Some(BTreeMap::from([("key".to_string(), "changed".to_string())]));
    api.replace("a", &PostParams::default(), &object).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&WatchParams::default(), &listed).await.unwrap().take(3).try_collect().await.unwrap();
    let summaries: Vec<String> = events.iter().map(event_summary).collect();
    assert_eq!(summaries, ["ADDED a", "MODIFIED a", "DELETED a"]);

    let WatchEvent::Modified(modified) = &events[1] else { unreachable!() };
    let resumed = modified.resource_version().unwrap();
    let rest: Vec<WatchEvent<ConfigMap>> =
        api.watch(&WatchParams::default(), &resumed).await.unwrap().take(1).try_collect().await.unwrap();
    assert_eq!(event_summary(&rest[0]), "DELETED a");
}

#[tokio::test(start_paused = true)]
async fn watches_get_bookmarks_at_the_latest_version() {
    let sim = Sim::new(SimConfig { bookmark_interval: Duration::from_secs(5), ..config() });
    let api = configmaps(&sim.client());
    let from = sim.resource_version().to_string();
    let other: Api<Namespace> = Api::all(sim.client());
    other
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap())
        .await
        .unwrap();
    let mut stream = api.watch(&WatchParams::default(), &from).await.unwrap().boxed();
    let event = stream.try_next().await.unwrap().unwrap();
    assert_eq!(event_summary(&event), format!("BOOKMARK {}", sim.resource_version()));
}

#[tokio::test]
async fn initial_events_end_with_a_marked_bookmark() {
    let api = configmaps(&client());
    api.create(&PostParams::default(), &configmap("a", &[])).await.unwrap();
    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&WatchParams::default().initial_events(), "").await.unwrap().take(2).try_collect().await.unwrap();
    assert_eq!(event_summary(&events[0]), "ADDED a");
    let WatchEvent::Bookmark(bookmark) = &events[1] else { panic!("{}", event_summary(&events[1])) };
    assert_eq!(bookmark.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
}

#[tokio::test]
async fn a_watch_that_falls_behind_the_history_gets_410() {
    let sim = Sim::new(SimConfig { history_per_resource: 3, ..config() });
    let api = configmaps(&sim.client());
    let listed = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default(), &listed).await.unwrap().boxed();
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &configmap(name, &[])).await.unwrap();
    }
    let WatchEvent::Error(gone) = stream.try_next().await.unwrap().unwrap() else { panic!("expected 410") };
    assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
    assert!(gone.message.starts_with(&format!("too old resource version: {listed} (")), "{}", gone.message);
    assert!(stream.try_next().await.unwrap().is_none(), "the watch ends after its ERROR");
}

#[tokio::test]
async fn the_runtime_watcher_relists_after_410() {
    let sim = Sim::new(SimConfig { history_per_resource: 3, ..config() });
    let api = configmaps(&sim.client());
    api.create(&PostParams::default(), &configmap("first", &[])).await.unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        match event.unwrap() {
            watcher::Event::InitApply(object) => seen.push(object.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["first"]);
    // Written while nobody reads: the watch the watcher opens next starts from a version the history lost.
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &configmap(name, &[])).await.unwrap();
    }
    let error = events.next().await.unwrap().unwrap_err();
    assert!(matches!(&error, watcher::Error::WatchError(status) if status.code == 410), "{error:?}");
    let mut relisted = Vec::new();
    while let Some(event) = events.next().await {
        match event.unwrap() {
            watcher::Event::InitApply(object) => relisted.push(object.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(relisted, ["a", "b", "c", "d", "e", "first"]);
}

#[rstest]
#[case::equals("app=ray", "", &["head", "worker"])]
#[case::set("tier in (head,worker)", "", &["head", "worker"])]
#[case::not_in_set("app notin (web)", "", &["bare", "head", "worker"])]
#[case::absent_key("!tier", "", &["bare", "web"])]
#[case::present_and_absent("app,!tier", "", &["web"])]
#[case::not_equals("tier!=head", "", &["bare", "web", "worker"])]
#[case::field_name("", "metadata.name=web", &["web"])]
#[case::field_name_not("app", "metadata.name!=web", &["head", "worker"])]
#[tokio::test]
async fn selectors_pick_objects(#[case] labels: &str, #[case] fields: &str, #[case] expected: &[&str]) {
    let api = configmaps(&client());
    for object in [
        configmap("head", &[("app", "ray"), ("tier", "head")]),
        configmap("worker", &[("app", "ray"), ("tier", "worker")]),
        configmap("web", &[("app", "web")]),
        configmap("bare", &[]),
    ] {
        api.create(&PostParams::default(), &object).await.unwrap();
    }
    let list = api.list(&ListParams::default().labels(labels).fields(fields)).await.unwrap();
    assert_eq!(names(&list.items), expected);
}

#[tokio::test]
async fn lists_come_in_pages() {
    let api = configmaps(&client());
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &configmap(name, &[])).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first.items), ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    let second = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&second.items), ["c", "d"]);
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
    let last =
        api.list(&ListParams::default().limit(2).continue_token(&second.metadata.continue_.unwrap())).await.unwrap();
    assert_eq!(names(&last.items), ["e"]);
    assert_eq!(last.metadata.continue_, None);
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let api = configmaps(&client());
    api.create(&PostParams::default(), &held(configmap("f", &[]))).await.unwrap();
    let pending = api.delete("f", &DeleteParams::default()).await.unwrap().left().expect("still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(api.get("f").await.unwrap().metadata.deletion_timestamp.is_some());
    let more = Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}));
    let refused = status(api.patch("f", &PatchParams::default(), &more).await);
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        refused.message,
        "ConfigMap \"f\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is \
         being deleted"
    );
    api.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(!exists(&api, "f").await);
}

#[tokio::test]
async fn background_deletion_collects_dependents_and_keeps_those_with_another_owner() {
    let api = configmaps(&client());
    let owner = api.create(&PostParams::default(), &configmap("owner", &[])).await.unwrap();
    let other = api.create(&PostParams::default(), &configmap("other", &[])).await.unwrap();
    let child = api.create(&PostParams::default(), &owned_by(configmap("child", &[]), &[&owner], true)).await.unwrap();
    api.create(&PostParams::default(), &owned_by(configmap("grandchild", &[]), &[&child], false)).await.unwrap();
    api.create(&PostParams::default(), &owned_by(configmap("shared", &[]), &[&owner, &other], false)).await.unwrap();

    let gone = api.delete("owner", &DeleteParams::background()).await.unwrap().right().expect("a Status");
    assert_eq!(gone.details.unwrap().name, "owner");
    assert!(!exists(&api, "child").await);
    assert!(!exists(&api, "grandchild").await);
    let shared = api.get("shared").await.unwrap();
    assert_eq!(shared.owner_references().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["other"]);
}

#[tokio::test]
async fn an_object_whose_owner_does_not_exist_is_collected() {
    let api = configmaps(&client());
    let mut ghost = api.create(&PostParams::default(), &configmap("ghost", &[])).await.unwrap();
    api.delete("ghost", &DeleteParams::default()).await.unwrap();
    ghost.metadata.uid = Some("00000000-0000-4000-8000-000000000000".to_string());
    api.create(&PostParams::default(), &owned_by(configmap("orphan", &[]), &[&ghost], false)).await.unwrap();
    assert!(!exists(&api, "orphan").await);
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let api = configmaps(&client());
    let owner = api.create(&PostParams::default(), &configmap("owner", &[])).await.unwrap();
    api.create(&PostParams::default(), &held(owned_by(configmap("blocking", &[]), &[&owner], true))).await.unwrap();
    api.create(&PostParams::default(), &owned_by(configmap("free", &[]), &[&owner], false)).await.unwrap();

    let waiting = api.delete("owner", &DeleteParams::foreground()).await.unwrap().left().expect("the owner waits");
    assert_eq!(waiting.finalizers(), ["foregroundDeletion"]);
    assert!(!exists(&api, "free").await);
    assert!(api.get("blocking").await.unwrap().metadata.deletion_timestamp.is_some());
    assert!(exists(&api, "owner").await);

    api.patch("blocking", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert!(!exists(&api, "blocking").await);
    assert!(!exists(&api, "owner").await);
}

#[tokio::test]
async fn deleting_a_job_orphans_its_pods_by_default() {
    let client = client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i:1"}]}}},
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.unwrap();
    let mut owned = pod("j-pod");
    owned.metadata.owner_references = Some(vec![job.controller_owner_ref(&()).unwrap()]);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &owned).await.unwrap();
    jobs.delete("j", &DeleteParams::default()).await.unwrap();
    assert!(pods.get("j-pod").await.unwrap().metadata.owner_references.is_none());
}

#[tokio::test]
async fn the_status_subresource_alone_changes_status_and_generation_counts_spec_changes() {
    let pods: Api<Pod> = Api::namespaced(client(), "default");
    let mut requested = pod("p");
    requested.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
    let created = pods.create(&PostParams::default(), &requested).await.unwrap();
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone()).unwrap();
    assert_eq!(phase(&created), "Pending");
    assert_eq!(created.status.as_ref().unwrap().qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(created.metadata.generation, Some(1));

    let mut relabelled = created.clone();
    relabelled.labels_mut().insert("x".to_string(), "y".to_string());
    relabelled.status = requested.status.clone();
    let relabelled = pods.replace("p", &PostParams::default(), &relabelled).await.unwrap();
    assert_eq!((phase(&relabelled).as_str(), relabelled.metadata.generation), ("Pending", Some(1)));

    let running = Patch::Merge(json!({"status": {"phase": "Running"}, "metadata": {"labels": {"x": "z"}}}));
    let running = pods.patch_status("p", &PatchParams::default(), &running).await.unwrap();
    assert_eq!(phase(&running), "Running");
    assert_eq!(running.labels()["x"], "y", "/status ignores everything but status");

    let deadline = Patch::Merge(json!({"spec": {"activeDeadlineSeconds": 30}}));
    let changed = pods.patch("p", &PatchParams::default(), &deadline).await.unwrap();
    assert_eq!((phase(&changed).as_str(), changed.metadata.generation), ("Running", Some(2)));
}

#[tokio::test]
async fn json_patch_tests_its_preconditions() {
    let api = configmaps(&client());
    api.create(&PostParams::default(), &configmap("a", &[])).await.unwrap();
    let patch = |expected: &str| -> json_patch::Patch {
        serde_json::from_value(json!([
            {"op": "test", "path": "/data/key", "value": expected},
            {"op": "replace", "path": "/data/key", "value": "patched"},
        ]))
        .unwrap()
    };
    let failed = status(api.patch("a", &PatchParams::default(), &Patch::Json::<()>(patch("other"))).await);
    assert_eq!((failed.code, failed.reason.as_str()), (422, "Invalid"));
    let patched = api.patch("a", &PatchParams::default(), &Patch::Json::<()>(patch("value"))).await.unwrap();
    assert_eq!(patched.data.unwrap()["key"], "patched");
}

#[tokio::test]
async fn strategic_merge_merges_containers_by_name() {
    let pods: Api<Pod> = Api::namespaced(client(), "default");
    pods.create(&PostParams::default(), &pod("p")).await.unwrap();
    let patch = Patch::Strategic(json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}));
    let patched = pods.patch("p", &PatchParams::default(), &patch).await.unwrap();
    let images: Vec<(String, Option<String>)> =
        patched.spec.unwrap().containers.into_iter().map(|c| (c.name, c.image)).collect();
    assert_eq!(images, [("a".to_string(), Some("a:1".to_string())), ("b".to_string(), Some("b:2".to_string()))]);
}

fn applied(data: Value) -> Patch<Value> {
    Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}))
}

#[tokio::test]
async fn server_side_apply_creates_merges_removes_and_conflicts() {
    let api = configmaps(&client());
    let created = api.patch("ssa", &PatchParams::apply("alice"), &applied(json!({"a": "1", "b": "2"}))).await.unwrap();
    assert_eq!(created.data.unwrap().len(), 2);
    assert_eq!(created.metadata.managed_fields.unwrap()[0].manager.as_deref(), Some("alice"));

    let fewer = api.patch("ssa", &PatchParams::apply("alice"), &applied(json!({"a": "1"}))).await.unwrap();
    assert_eq!(fewer.data.unwrap(), BTreeMap::from([("a".to_string(), "1".to_string())]));

    let conflict = status(api.patch("ssa", &PatchParams::apply("bob"), &applied(json!({"a": "9"}))).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(conflict.message, "Apply failed with 1 conflict: conflict with \"alice\": .data.a");

    let forced = api.patch("ssa", &PatchParams::apply("bob").force(), &applied(json!({"a": "9"}))).await.unwrap();
    assert_eq!(forced.data.unwrap()["a"], "9");
}

async fn create_ray_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    for file in ["ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
        let created = crds.create(&PostParams::default(), &crd).await.unwrap();
        let conditions = created.status.unwrap().conditions.unwrap();
        assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{file}");
    }
}

fn ray_cluster(name: &str) -> RayCluster {
    serde_json::from_value(json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {"headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.41.0"}]}}}},
    }))
    .unwrap()
}

#[tokio::test]
async fn ray_crds_serve_ray_clusters_with_their_status_subresource() {
    let client = client();
    create_ray_crds(&client).await;
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    let ray = discovery.get("ray.io").unwrap();
    assert!(ray.recommended_kind("RayJob").is_some() && ray.recommended_kind("RayService").is_some());

    let clusters: Api<RayCluster> = Api::namespaced(client.clone(), "default");
    let created = clusters.create(&PostParams::default(), &ray_cluster("raycluster-kuberay")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let ready = Patch::Merge(json!({"status": {"state": "ready"}}));
    let patched = clusters.patch_status("raycluster-kuberay", &PatchParams::default(), &ready).await.unwrap();
    assert_eq!(patched.status.unwrap().state.as_deref(), Some("ready"));
    assert_eq!(patched.metadata.generation, Some(1));
    let listed = clusters.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&listed.items), ["raycluster-kuberay"]);

    let strategic = Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}}));
    let refused = status(clusters.patch("raycluster-kuberay", &PatchParams::default(), &strategic).await);
    assert_eq!(refused.code, 415);

    let crds: Api<CustomResourceDefinition> = Api::all(client);
    crds.delete("rayclusters.ray.io", &DeleteParams::default()).await.unwrap();
    assert_eq!(crds.get_opt("rayclusters.ray.io").await.unwrap().map(|c| c.name_any()), None);
    assert_eq!(status(clusters.list(&ListParams::default()).await).code, 404);
}

fn ray_clusters(client: &Client) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("ray.io", "v1", "RayCluster");
    Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk_with_plural(&gvk, "rayclusters"))
}

fn ray_cluster_with(spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"}, "spec": spec}),
    )
    .unwrap()
}

fn head_group() -> Value {
    json!({"template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.41.0"}]}}})
}

fn causes(status: &Status) -> Vec<(String, String)> {
    let details = status.details.as_ref().unwrap();
    details.causes.iter().map(|c| (c.field.clone(), c.reason.clone())).collect()
}

#[rstest]
#[case::no_head_group(json!({}), "spec.headGroupSpec: Required value", &[("spec.headGroupSpec", "FieldValueRequired")])]
#[case::replicas_as_text(
    json!({"headGroupSpec": head_group(), "workerGroupSpecs": [{"groupName": "w", "replicas": "three", "template": {}}]}),
    "spec.workerGroupSpecs[0].replicas: Invalid value: \"string\": spec.workerGroupSpecs[0].replicas in body must be of type integer: \"string\"",
    &[("spec.workerGroupSpecs[0].replicas", "FieldValueTypeInvalid")],
)]
#[case::two_problems(
    json!({"headGroupSpec": {"rayStartParams": {}}, "workerGroupSpecs": [{"template": {}}]}),
    "[spec.headGroupSpec.template: Required value, spec.workerGroupSpecs[0].groupName: Required value]",
    &[("spec.headGroupSpec.template", "FieldValueRequired"), ("spec.workerGroupSpecs[0].groupName", "FieldValueRequired")],
)]
#[case::unknown_manager(
    json!({"headGroupSpec": head_group(), "managedBy": "someone"}),
    "spec.managedBy: Invalid value: \"string\": the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
    &[("spec.managedBy", "FieldValueInvalid")],
)]
#[case::upscaling_mode(
    json!({"headGroupSpec": head_group(), "autoscalerOptions": {"upscalingMode": "Fast"}}),
    "spec.autoscalerOptions.upscalingMode: Unsupported value: \"Fast\": supported values: \"Default\", \"Aggressive\", \"Conservative\", \"null\"",
    &[("spec.autoscalerOptions.upscalingMode", "FieldValueNotSupported")],
)]
#[tokio::test]
async fn ray_clusters_that_violate_the_crd_schema_are_invalid(
    #[case] spec: Value,
    #[case] message: &str,
    #[case] expected: &[(&str, &str)],
) {
    let client = client();
    create_ray_crds(&client).await;
    let refused = status(ray_clusters(&client).create(&PostParams::default(), &ray_cluster_with(spec)).await);
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert_eq!(refused.message, format!("RayCluster.ray.io \"c\" is invalid: {message}"));
    let expected: Vec<(String, String)> = expected.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
    assert_eq!(causes(&refused), expected);
}

#[tokio::test]
async fn ray_clusters_get_the_crd_defaults_and_lose_unknown_fields() {
    let client = client();
    create_ray_crds(&client).await;
    let spec = json!({
        "headGroupSpec": head_group(),
        "workerGroupSpecs": [{"groupName": "w", "template": {}, "colour": "blue"}],
        "typo": true,
    });
    let created = ray_clusters(&client).create(&PostParams::default(), &ray_cluster_with(spec)).await.unwrap();
    let spec = &created.data["spec"];
    assert_eq!(spec["headGroupSpec"]["rayStartParams"], json!({}));
    let worker = &spec["workerGroupSpecs"][0];
    assert_eq!((worker["numOfHosts"].clone(), worker["replicas"].clone()), (json!(1), json!(0)));
    assert_eq!((worker["minReplicas"].clone(), worker["maxReplicas"].clone()), (json!(0), json!(2147483647)));
    assert_eq!((worker.get("colour"), spec.get("typo")), (None, None));
}

#[tokio::test]
async fn unknown_fields_are_warned_of_or_refused_under_strict_validation() {
    use tower::ServiceExt;
    let sim = Sim::new(config());
    let client = sim.client();
    create_ray_crds(&client).await;
    let body = json!({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"},
                      "spec": {"headGroupSpec": head_group(), "typo": 1}});
    let post = |query: &str| {
        http::Request::post(format!("/apis/ray.io/v1/namespaces/default/rayclusters{query}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .unwrap()
    };
    let strict = sim.service().oneshot(post("?fieldValidation=Strict")).await.unwrap();
    assert_eq!(strict.status(), 400);
    let answer: Value = serde_json::from_slice(&strict.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        answer["message"],
        "RayCluster in version \"v1\" cannot be handled as a RayCluster: strict decoding error: unknown field \"spec.typo\""
    );
    let warned = sim.service().oneshot(post("")).await.unwrap();
    assert_eq!(warned.status(), 201);
    let warnings: Vec<&str> = warned.headers().get_all("warning").iter().map(|w| w.to_str().unwrap()).collect();
    assert_eq!(warnings, ["299 - \"unknown field \\\"spec.typo\\\"\""]);
}

#[tokio::test]
async fn the_managed_by_field_cannot_change() {
    let client = client();
    create_ray_crds(&client).await;
    let clusters = ray_clusters(&client);
    let spec = json!({"headGroupSpec": head_group(), "managedBy": "ray.io/kuberay-operator"});
    clusters.create(&PostParams::default(), &ray_cluster_with(spec)).await.unwrap();
    let change = Patch::Merge(json!({"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}}));
    let refused = status(clusters.patch("c", &PatchParams::default(), &change).await);
    assert_eq!(
        refused.message,
        "RayCluster.ray.io \"c\" is invalid: spec.managedBy: Invalid value: \"string\": the managedBy field is immutable"
    );
    let unknown = Patch::Merge(json!({"spec": {"typo": 1}}));
    let strict = status(clusters.patch("c", &PatchParams::default().validation_strict(), &unknown).await);
    assert_eq!(strict.code, 400);
    let label = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    assert!(clusters.patch("c", &PatchParams::default().validation_strict(), &label).await.is_ok());
}

#[tokio::test]
async fn a_deleted_namespace_empties_itself_and_refuses_new_content() {
    let client = client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap())
        .await
        .unwrap();
    let team = Api::<ConfigMap>::namespaced(client.clone(), "team");
    team.create(&PostParams::default(), &held(configmap("held", &[]))).await.unwrap();
    team.create(&PostParams::default(), &configmap("free", &[])).await.unwrap();

    let terminating = namespaces.delete("team", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(!exists(&team, "free").await);
    let refused = status(team.create(&PostParams::default(), &configmap("late", &[])).await);
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        refused.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );

    team.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert!(namespaces.get_opt("team").await.unwrap().is_none());
    let missing =
        status(Api::<ConfigMap>::namespaced(client, "nope").create(&PostParams::default(), &configmap("a", &[])).await);
    assert_eq!((missing.code, missing.message.as_str()), (404, "namespaces \"nope\" not found"));
}

async fn client_for(kubeconfig: &str) -> Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn the_tcp_transport_serves_the_same_api() {
    let sim = Sim::new(config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let client = client_for(&kuberay::sim::kubeconfig(&server)).await;
    let api = configmaps(&client);
    let listed = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &configmap("over-tcp", &[])).await.unwrap();
    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&WatchParams::default(), &listed).await.unwrap().take(1).try_collect().await.unwrap();
    assert_eq!(event_summary(&events[0]), "ADDED over-tcp");
    assert!(configmaps(&sim.client()).get_opt("over-tcp").await.unwrap().is_some(), "one server behind both");
}

/// Kills the child when the test ends, however it ends.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kuberay_sim_serve_prints_its_address_and_writes_a_kubeconfig() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("kuberay-sim-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kuberay"))
        .args(["sim", "serve", "--port", "0", "--kubeconfig-out", kubeconfig.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _serving = Serving(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let server = line.trim().strip_prefix("serving the simulated cluster on ").unwrap().to_string();
    assert!(server.starts_with("http://127.0.0.1:") && !server.ends_with(":0"), "{line}");
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(written.contains(&format!("server: {server}")), "{written}");
    let client = client_for(&written).await;
    let namespaces = Api::<Namespace>::all(client).list(&ListParams::default()).await.unwrap();
    assert_eq!(namespaces.items.len(), 4);
}

// ---- the kubelet, the Endpoints controller and the Job controller ----

/// A simulated cluster on paused time with its controllers running: Pods start after 1 s, get Ready 1 s later,
/// and run 5 s when they are not restarted.
fn cluster_with_controllers(failing: &str) -> Sim {
    let clock = std::sync::Arc::new(kuberay::sim::TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = Sim::new(SimConfig { clock, ..config() });
    let controllers = kuberay::sim::ControllerConfig {
        failing_pods: kuberay::sim::selector::LabelSelector::parse(failing).unwrap(),
        ..kuberay::sim::ControllerConfig::default()
    };
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(controllers).await });
    sim
}

async fn after(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

fn pod_phase(pod: &Pod) -> (String, bool) {
    let status = pod.status.clone().unwrap_or_default();
    let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
    (status.phase.unwrap_or_default(), ready)
}

#[tokio::test(start_paused = true)]
async fn the_kubelet_starts_pods_then_makes_them_ready() {
    let sim = cluster_with_controllers("");
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(&PostParams::default(), &pod("p")).await.unwrap();
    after(0.5).await;
    assert_eq!(pod_phase(&pods.get("p").await.unwrap()), ("Pending".to_string(), false));
    after(1.0).await;
    let running = pods.get("p").await.unwrap();
    assert_eq!(pod_phase(&running), ("Running".to_string(), false));
    let status = running.status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.2"));
    assert_eq!(status.start_time.unwrap().0.to_string(), "2025-01-01T00:00:01Z");
    after(1.0).await;
    assert_eq!(pod_phase(&pods.get("p").await.unwrap()), ("Running".to_string(), true));
}

#[tokio::test(start_paused = true)]
async fn a_failing_restarted_pod_never_gets_ready() {
    let sim = cluster_with_controllers("app=broken");
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let mut broken = pod("broken");
    broken.metadata.labels = Some(BTreeMap::from([("app".to_string(), "broken".to_string())]));
    pods.create(&PostParams::default(), &broken).await.unwrap();
    after(10.0).await;
    let pod = pods.get("broken").await.unwrap();
    assert_eq!(pod_phase(&pod), ("Running".to_string(), false));
    let container = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(container.restart_count, 1);
    assert_eq!(container.state.clone().unwrap().waiting.unwrap().reason.as_deref(), Some("CrashLoopBackOff"));
}

/// Two containers of a Ray head, as autoscaler v2 makes them: `restartPolicy: Never`.
fn ray_head_spec() -> serde_json::Value {
    json!({"restartPolicy": "Never", "containers": [
        {"name": "ray-head", "image": "rayproject/ray:2.41.0", "command": ["/bin/bash", "-c", "ray start --head --block"]},
        {"name": "autoscaler", "image": "rayproject/ray:2.41.0", "command": ["ray", "kuberay-autoscaler"]},
    ]})
}

/// The containers of a Ray node's Pod run until it goes, though they are not restarted; any other Pod that is not
/// restarted runs to completion.
#[rstest::rstest]
#[case::ray_node(json!({"ray.io/node-type": "head"}), ("Running", true))]
#[case::any_other_pod(json!({"app": "x"}), ("Succeeded", false))]
#[tokio::test(start_paused = true)]
async fn run_once_pods_end_unless_they_are_ray_nodes(
    #[case] labels: serde_json::Value,
    #[case] expected: (&str, bool),
) {
    let sim = cluster_with_controllers("");
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels}, "spec": ray_head_spec()})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    after(30.0).await;
    let (phase, ready) = pod_phase(&pods.get("p").await.unwrap());
    assert_eq!((phase.as_str(), ready), expected);
}

/// A Job's Pods run to completion, Ray labels or not (the Redis cleanup Job's carry the head's).
#[tokio::test(start_paused = true)]
async fn a_jobs_pod_with_ray_labels_runs_to_completion() {
    let sim = cluster_with_controllers("");
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "cleanup"},
        "spec": {"template": {"metadata": {"labels": {"ray.io/node-type": "head"}}, "spec": ray_head_spec()}},
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    after(30.0).await;
    let conditions = jobs.get("cleanup").await.unwrap().status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True"), "{conditions:?}");
}

/// The Pods (of 20 run-once Pods `p00`..`p19`) that end Failed under `controllers`.
async fn failed_pods(controllers: kuberay::sim::ControllerConfig) -> Vec<String> {
    let clock = std::sync::Arc::new(kuberay::sim::TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = Sim::new(SimConfig { clock, ..config() });
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(controllers).await });
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    for index in 0..20 {
        let mut once = pod(&format!("p{index:02}"));
        once.spec.get_or_insert_with(Default::default).restart_policy = Some("Never".to_string());
        pods.create(&PostParams::default(), &once).await.unwrap();
    }
    after(10.0).await;
    let mut failed: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pod| pod_phase(pod).0 == "Failed")
        .filter_map(|pod| pod.metadata.name)
        .collect();
    failed.sort();
    failed
}

#[tokio::test(start_paused = true)]
async fn the_kubelet_fails_pods_by_name_and_at_random_with_a_seed() {
    let by_name = kuberay::sim::ControllerConfig {
        failing_pod_names: ["p03".to_string(), "p11".to_string()].into(),
        ..kuberay::sim::ControllerConfig::default()
    };
    assert_eq!(failed_pods(by_name).await, ["p03", "p11"]);
    let at_random = || kuberay::sim::ControllerConfig {
        failure_rate: 0.5,
        failure_seed: 7,
        ..kuberay::sim::ControllerConfig::default()
    };
    let first = failed_pods(at_random()).await;
    assert!(!first.is_empty() && first.len() < 20, "about half fail: {first:?}");
    assert_eq!(failed_pods(at_random()).await, first, "the same seed fails the same Pods");
    let other_seed = kuberay::sim::ControllerConfig { failure_seed: 8, ..at_random() };
    assert_ne!(failed_pods(other_seed).await, first, "another seed, other Pods");
}

#[tokio::test(start_paused = true)]
async fn endpoints_follow_the_readiness_of_matching_pods() {
    let sim = cluster_with_controllers("");
    let client = sim.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let web: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &web).await.unwrap();
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client, "default");
    let subsets = |e: k8s_openapi::api::core::v1::Endpoints| serde_json::to_value(e.subsets).unwrap();
    after(0.5).await;
    assert_eq!(subsets(endpoints.get("web").await.unwrap()), Value::Null);
    after(1.0).await;
    let starting = subsets(endpoints.get("web").await.unwrap());
    assert_eq!(starting[0]["notReadyAddresses"][0]["ip"], "10.244.0.2");
    assert_eq!(starting[0]["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    after(1.0).await;
    let ready = subsets(endpoints.get("web").await.unwrap());
    assert_eq!(ready[0]["addresses"][0]["targetRef"]["name"], "web-1");
    assert_eq!(ready[0].get("notReadyAddresses"), None);
    pods.delete("web-1", &DeleteParams::default()).await.unwrap();
    after(0.1).await;
    assert_eq!(subsets(endpoints.get("web").await.unwrap()), Value::Null);
    services.delete("web", &DeleteParams::default()).await.unwrap();
    after(0.1).await;
    assert!(endpoints.get_opt("web").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_service_that_publishes_not_ready_addresses_lists_a_starting_pod() {
    let sim = cluster_with_controllers("");
    let client = sim.client();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "head"},
        "spec": {"selector": {"app": "head"}, "publishNotReadyAddresses": true, "clusterIP": "None",
                 "ports": [{"name": "dashboard", "port": 8265}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &service).await.unwrap();
    let mut head = pod("head-1");
    head.metadata.labels = Some(BTreeMap::from([("app".to_string(), "head".to_string())]));
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &head).await.unwrap();
    after(1.5).await;
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client, "default");
    let subsets = serde_json::to_value(endpoints.get("head").await.unwrap().subsets).unwrap();
    assert_eq!(subsets[0]["addresses"][0]["targetRef"]["name"], "head-1", "running, not ready, yet listed");
    assert_eq!(subsets[0].get("notReadyAddresses"), None);
}

fn job(name: &str, spec: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn job_outcome(job: &Job) -> (Vec<String>, Option<i32>, Option<i32>) {
    let status = job.status.clone().unwrap_or_default();
    let conditions = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| format!("{} {}", c.type_, c.reason.unwrap_or_default()))
        .collect();
    (conditions, status.succeeded, status.failed)
}

#[tokio::test(start_paused = true)]
async fn a_job_completes_when_its_pods_succeed() {
    let sim = cluster_with_controllers("");
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    jobs.create(&PostParams::default(), &job("ok", json!({"completions": 2}))).await.unwrap();
    after(0.5).await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let first = pods.list(&ListParams::default().labels("job-name=ok")).await.unwrap();
    assert_eq!(first.items.len(), 1, "parallelism 1");
    assert!(first.items[0].name_any().starts_with("ok-"));
    after(15.0).await;
    let done = jobs.get("ok").await.unwrap();
    assert_eq!(
        job_outcome(&done),
        (
            vec!["SuccessCriteriaMet CompletionsReached".to_string(), "Complete CompletionsReached".to_string()],
            Some(2),
            Some(0)
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_pod_fails_twice_with_backoff_limit_1_fails() {
    let sim = cluster_with_controllers("job-name=bad");
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    jobs.create(&PostParams::default(), &job("bad", json!({"backoffLimit": 1}))).await.unwrap();
    after(8.0).await;
    let once = jobs.get("bad").await.unwrap();
    assert_eq!(job_outcome(&once), (vec![], Some(0), Some(1)));
    after(8.0).await;
    let failed = jobs.get("bad").await.unwrap();
    assert_eq!(
        job_outcome(&failed),
        (
            vec!["FailureTarget BackoffLimitExceeded".to_string(), "Failed BackoffLimitExceeded".to_string()],
            Some(0),
            Some(2)
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_deadline_fails_and_loses_its_pods() {
    let sim = cluster_with_controllers("");
    let jobs: Api<Job> = Api::namespaced(sim.client(), "default");
    jobs.create(&PostParams::default(), &job("slow", json!({"activeDeadlineSeconds": 3}))).await.unwrap();
    after(4.0).await;
    let failed = jobs.get("slow").await.unwrap();
    assert_eq!(job_outcome(&failed).0, ["FailureTarget DeadlineExceeded", "Failed DeadlineExceeded"]);
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    assert!(pods.list(&ListParams::default().labels("job-name=slow")).await.unwrap().items.is_empty());
}

/// Every event a scenario causes, with names, uids and resourceVersions.
async fn scenario_events(seed: u64) -> Vec<String> {
    let sim = Sim::new(SimConfig { seed, ..config() });
    let client = sim.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let start = sim.resource_version().to_string();
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap())
        .await
        .unwrap();
    let team = Api::<ConfigMap>::namespaced(client.clone(), "team");
    let mut generated = configmap("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".to_string());
    let owner = team.create(&PostParams::default(), &generated).await.unwrap();
    for _ in 0..2 {
        team.create(&PostParams::default(), &owned_by(generated.clone(), &[&owner], true)).await.unwrap();
    }
    Api::<Pod>::namespaced(client.clone(), "team").create(&PostParams::default(), &pod("p")).await.unwrap();
    namespaces.delete("team", &DeleteParams::default()).await.unwrap();
    let all: Api<ConfigMap> = Api::all(client);
    let stream = all.watch(&WatchParams::default(), &start).await.unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = stream.take(6).try_collect().await.unwrap();
    let events: Vec<String> = events
        .iter()
        .map(|event| match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                format!("{} {} {}", event_summary(event), o.uid().unwrap(), o.resource_version().unwrap())
            }
            other => panic!("{}", event_summary(other)),
        })
        .collect();
    events
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_events() {
    let events = scenario_events(42).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.split(' ').next().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "ADDED", "DELETED", "DELETED", "DELETED"]);
    assert_eq!(events, scenario_events(42).await);
    assert_ne!(events, scenario_events(43).await);
}

// ---- the network: services/proxy, the address resolver, and pods/log ----

/// Answers every request with its method and URI.
struct Echo;

impl kuberay::sim::network::Process for Echo {
    fn call(&self, request: kuberay::sim::network::Request) -> kuberay::sim::network::Answer {
        let text = format!("{} {}", request.method(), request.uri());
        Box::pin(async move { http::Response::new(bytes::Bytes::from(text)) })
    }
}

/// `Echo` listens on port 8080 of the Pods labelled `app=web`.
struct WebServers;

impl kuberay::sim::network::Processes for WebServers {
    fn listening(
        &self,
        _: &kuberay::sim::store::Store,
        pod: &Value,
        port: u16,
    ) -> Option<std::sync::Arc<dyn kuberay::sim::network::Process>> {
        (pod.pointer("/metadata/labels/app") == Some(&json!("web")) && port == 8080)
            .then(|| std::sync::Arc::new(Echo) as _)
    }
}

async fn web_cluster() -> Sim {
    let clock = std::sync::Arc::new(kuberay::sim::TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = Sim::new(SimConfig { clock, processes: vec![std::sync::Arc::new(WebServers)], ..config() });
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(kuberay::sim::ControllerConfig::default()).await });
    let client = sim.client();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &service).await.unwrap();
    let web: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "python:3", "command": ["python", "-m"], "args": ["http.server", "8080"]}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client, "default").create(&PostParams::default(), &web).await.unwrap();
    sim
}

#[tokio::test(start_paused = true)]
async fn services_proxy_forwards_to_what_listens_behind_the_service_port() {
    let sim = web_cluster().await;
    let client = sim.client();
    let proxied = |path: &str| http::Request::get(path.to_string()).body(Vec::new()).unwrap();
    let early = client.request_text(proxied("/api/v1/namespaces/default/services/web:http/proxy/")).await;
    match early {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.message.as_str()), (503, "no endpoints available for service \"web\""))
        }
        other => panic!("expected 503, got {other:?}"),
    }
    after(2.5).await;
    for service in ["web:http", "web:80", "web", "http:web:80"] {
        let path = format!("/api/v1/namespaces/default/services/{service}/proxy/api/jobs/?limit=2");
        assert_eq!(client.request_text(proxied(&path)).await.unwrap(), "GET /api/jobs/?limit=2", "{service}");
    }
    let request = http::Request::post("/api/version").body(bytes::Bytes::new()).unwrap();
    let answer = sim.send("web.default.svc.cluster.local:80", request).await.unwrap();
    assert_eq!(answer.into_body(), "POST /api/version");
    let request = http::Request::get("/").body(bytes::Bytes::new()).unwrap();
    assert_eq!(sim.send("kubernetes.default.svc:443", request).await.unwrap_err().code, 503);
}

#[tokio::test(start_paused = true)]
async fn pod_logs_are_what_the_kubelet_started() {
    let sim = web_cluster().await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let waiting = status(pods.logs("web-1", &kube::api::LogParams::default()).await);
    assert_eq!(
        (waiting.code, waiting.message.as_str()),
        (400, "container \"web\" in pod \"web-1\" is waiting to start: ContainerCreating")
    );
    after(1.5).await;
    assert_eq!(pods.logs("web-1", &kube::api::LogParams::default()).await.unwrap(), "python -m http.server 8080\n");
    let other = kube::api::LogParams { container: Some("sidecar".to_string()), ..Default::default() };
    assert_eq!(status(pods.logs("web-1", &other).await).message, "container sidecar is not valid for pod web-1");
    assert_eq!(status(pods.logs("nope", &kube::api::LogParams::default()).await).code, 404);
}
