//! The four patch types: JSON merge patch, JSON patch, strategic merge patch and server-side apply.

use serde_json::{Map, Value, json};

use super::error::ApiError;

/// How a list field merges in a strategic merge patch and in server-side apply (the `patchStrategy` and
/// `patchMergeKey` tags of the built-in types the operator writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Items are objects merged by this key.
    Keyed(&'static str),
    /// A set of scalars (finalizers).
    Set,
    /// The list is replaced whole.
    Atomic,
}

fn list_strategy(field: &str, items: &[Value]) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::Keyed("name"),
        "volumeMounts" => ListStrategy::Keyed("mountPath"),
        "volumeDevices" => ListStrategy::Keyed("devicePath"),
        "conditions" => ListStrategy::Keyed("type"),
        "ownerReferences" => ListStrategy::Keyed("uid"),
        "hostAliases" => ListStrategy::Keyed("ip"),
        "topologySpreadConstraints" => ListStrategy::Keyed("topologyKey"),
        // A container's ports merge by containerPort, a Service's by port.
        "ports" if items.iter().any(|p| p.get("containerPort").is_some()) => ListStrategy::Keyed("containerPort"),
        "ports" => ListStrategy::Keyed("port"),
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Atomic,
    }
}

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902; an operation that cannot be applied (a failed `test`, a missing path) is 422.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let operations: Vec<json_patch::PatchOperation> = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    json_patch::patch(target, &operations).map_err(|e| ApiError::unprocessable(e.to_string()))
}

/// A strategic merge patch: maps merge, `null` deletes, lists merge by their merge key or are replaced, and the
/// `$patch: replace|delete` and `$deleteFromPrimitiveList` directives are honoured (`$setElementOrder` and
/// `$retainKeys` are accepted and ignored).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    merge_into(target, patch, "");
}

fn is_directive(key: &str) -> bool {
    key.starts_with('$')
}

fn merge_into(target: &mut Value, patch: &Value, field: &str) {
    match patch {
        Value::Object(entries) => {
            if entries.get("$patch").and_then(Value::as_str) == Some("replace") {
                *target = without_directives(patch);
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Value::Object(existing) = target else { return };
            for (key, value) in entries {
                if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(items)), Some(removed)) = (existing.get_mut(list), value.as_array()) {
                        items.retain(|item| !removed.contains(item));
                    }
                } else if is_directive(key) {
                    continue;
                } else if value.is_null() {
                    existing.remove(key);
                } else {
                    merge_into(existing.entry(key.clone()).or_insert(Value::Null), value, key);
                }
            }
        }
        Value::Array(items) => *target = merge_list(target, items, field),
        scalar => *target = scalar.clone(),
    }
}

fn merge_list(target: &Value, items: &[Value], field: &str) -> Value {
    let replace = |item: &Value| item.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(replace) {
        return Value::Array(items.iter().filter(|i| !replace(i)).map(without_directives).collect());
    }
    let mut merged: Vec<Value> = target.as_array().cloned().unwrap_or_default();
    match list_strategy(field, items) {
        ListStrategy::Keyed(key) => {
            for item in items {
                let position = item.get(key).and_then(|k| merged.iter().position(|m| m.get(key) == Some(k)));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(index), true) => {
                        merged.remove(index);
                    }
                    (None, true) => {}
                    (Some(index), false) => merge_into(&mut merged[index], item, ""),
                    (None, false) => merged.push(without_directives(item)),
                }
            }
        }
        ListStrategy::Set => {
            for item in items {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
        }
        ListStrategy::Atomic => merged = items.iter().map(without_directives).collect(),
    }
    Value::Array(merged)
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(entries) => Value::Object(
            entries
                .iter()
                .filter(|(key, value)| !is_directive(key) && !value.is_null())
                .map(|(key, value)| (key.clone(), without_directives(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        scalar => scalar.clone(),
    }
}

/// One step of a managed-fields path, in the `FieldsV1` spelling: `f:name`, `k:{"name":"x"}`, `v:"x"`, `.`.
type Path = Vec<String>;

/// The `FieldsV1` set of an applied configuration: every field it sets, with list items of keyed lists owned as
/// wholes (`.`) and set items as values. The object's identity (apiVersion, kind, name, namespace) is not owned.
pub fn field_set(applied: &Value) -> Value {
    let mut set = fields_of_map(applied, "");
    if let Some(Value::Object(root)) = Some(&mut set) {
        root.remove("f:apiVersion");
        root.remove("f:kind");
        if let Some(Value::Object(metadata)) = root.get_mut("f:metadata") {
            for identity in ["f:name", "f:namespace", "f:resourceVersion", "f:managedFields"] {
                metadata.remove(identity);
            }
            if metadata.is_empty() {
                root.remove("f:metadata");
            }
        }
    }
    set
}

fn fields_of_map(value: &Value, _field: &str) -> Value {
    let Value::Object(entries) = value else { return json!({}) };
    let mut set = Map::new();
    for (key, child) in entries.iter().filter(|(k, v)| !is_directive(k) && !v.is_null()) {
        set.insert(format!("f:{key}"), fields_of_value(child, key));
    }
    Value::Object(set)
}

fn fields_of_value(value: &Value, field: &str) -> Value {
    match value {
        Value::Object(entries) if !entries.is_empty() => fields_of_map(value, field),
        Value::Array(items) => match list_strategy(field, items) {
            ListStrategy::Keyed(key) => {
                let mut set = Map::new();
                for item in items {
                    let Some(key_value) = item.get(key) else { continue };
                    let mut item_set = match fields_of_map(item, "") {
                        Value::Object(map) => map,
                        _ => Map::new(),
                    };
                    item_set.insert(".".to_string(), json!({}));
                    set.insert(format!("k:{}", json!({key: key_value})), Value::Object(item_set));
                }
                Value::Object(set)
            }
            ListStrategy::Set => Value::Object(items.iter().map(|item| (format!("v:{item}"), json!({}))).collect()),
            ListStrategy::Atomic => json!({}),
        },
        _ => json!({}),
    }
}

/// The leaves of a field set: the fields owned outright.
fn leaves(set: &Value) -> Vec<Path> {
    fn walk(node: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
        match node.as_object() {
            Some(children) if !children.is_empty() => {
                for (step, child) in children {
                    prefix.push(step.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push(prefix.clone()),
        }
    }
    let mut out = Vec::new();
    if set.as_object().is_some_and(|m| !m.is_empty()) {
        walk(set, &mut Vec::new(), &mut out);
    }
    out
}

fn contains_leaf(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for step in path {
        match node.get(step) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.as_object().is_none_or(Map::is_empty)
}

/// Removes an owned field, and the parents it leaves empty (an empty parent would read as a leaf).
fn remove_leaf(set: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else { return };
    let Some(map) = set.as_object_mut() else { return };
    if rest.is_empty() {
        map.remove(first);
        return;
    }
    if let Some(child) = map.get_mut(first) {
        remove_leaf(child, rest);
        if child.as_object().is_some_and(Map::is_empty) {
            map.remove(first);
        }
    }
}

/// The value a path names in an object (for `.`, the list item itself).
fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = object;
    for step in path {
        node = if step == "." {
            node
        } else if let Some(field) = step.strip_prefix("f:") {
            node.get(field)?
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).ok()?;
            node.as_array()?.iter().find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
        } else {
            let wanted: Value = serde_json::from_str(step.strip_prefix("v:")?).ok()?;
            node.as_array()?.iter().find(|item| **item == wanted)?
        };
    }
    Some(node)
}

fn remove_at(object: &mut Value, path: &[String]) {
    let path = path.strip_suffix(&[".".to_string()]).unwrap_or(path);
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = object;
    for step in parents {
        let next = if let Some(field) = step.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            node.as_array_mut()
                .and_then(|items| items.iter_mut().find(|i| key.iter().all(|(k, v)| i.get(k) == Some(v))))
        } else {
            None
        };
        match next {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(items) = node.as_array_mut() {
        let wanted = Value::Array(items.clone());
        let path = [last.clone()];
        if let Some(item) = value_at(&wanted, &path)
            && let Some(index) = items.iter().position(|i| i == item)
        {
            items.remove(index);
        }
    }
}

/// `.spec.containers[name="a"].image`, as apply conflicts name fields.
fn display_path(path: &[String]) -> String {
    let mut text = String::new();
    for step in path {
        if let Some(field) = step.strip_prefix("f:") {
            text.push('.');
            text.push_str(field);
        } else if let Some(key) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let pairs: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&format!("[{}]", pairs.join(",")));
        } else if let Some(value) = step.strip_prefix("v:") {
            text.push_str(&format!("[{value}]"));
        }
    }
    text
}

/// Who is applying, and how.
#[derive(Clone, Debug)]
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub api_version: &'a str,
    pub time: &'a str,
}

/// Server-side apply onto `current` (an empty object when the object does not exist yet). A pragmatic
/// approximation of structured-merge-diff: the applied fields are merged in with the strategic merge rules; only
/// Apply managers own fields (updates and patches record no ownership); a field another Apply manager owns with a
/// different value is a conflict unless `force` takes it over; fields this manager applied before and no longer
/// applies are removed unless another manager owns them. Answers the merged object with its `managedFields`, or
/// the conflicts as (manager, field) pairs.
pub fn apply(current: &Value, applied: &Value, request: &ApplyRequest) -> Result<Value, Vec<(String, String)>> {
    let new_set = field_set(applied);
    let new_leaves = leaves(&new_set);
    let mut entries: Vec<Value> =
        current.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    let is_apply = |entry: &Value| entry.get("operation").and_then(Value::as_str) == Some("Apply");
    let manager_of = |entry: &Value| entry.get("manager").and_then(Value::as_str).unwrap_or_default().to_string();

    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| is_apply(e) && manager_of(e) != request.manager) {
        let manager = manager_of(entry);
        let Some(set) = entry.get_mut("fieldsV1") else { continue };
        // Owning a list item (`.`) is shared; only its fields' values conflict.
        for path in new_leaves.iter().filter(|path| path.last().is_none_or(|step| step != ".")) {
            if contains_leaf(set, path) && value_at(current, path) != value_at(applied, path) {
                if request.force {
                    remove_leaf(set, path);
                } else {
                    conflicts.push((manager.clone(), display_path(path)));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    let mut merged = current.clone();
    let previous = entries.iter().find(|e| is_apply(e) && manager_of(e) == request.manager);
    if let Some(previous_set) = previous.and_then(|e| e.get("fieldsV1")) {
        let others: Vec<&Value> =
            entries.iter().filter(|e| manager_of(e) != request.manager).filter_map(|e| e.get("fieldsV1")).collect();
        for path in leaves(previous_set) {
            if !contains_leaf(&new_set, &path) && !others.iter().any(|set| contains_leaf(set, &path)) {
                remove_at(&mut merged, &path);
            }
        }
    }
    let mut applied_body = applied.clone();
    if let Some(metadata) = applied_body.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    merge_into(&mut merged, &applied_body, "");

    entries
        .retain(|e| manager_of(e) != request.manager && !leaves(e.get("fieldsV1").unwrap_or(&Value::Null)).is_empty());
    entries.push(json!({
        "manager": request.manager,
        "operation": "Apply",
        "apiVersion": request.api_version,
        "time": request.time,
        "fieldsType": "FieldsV1",
        "fieldsV1": new_set,
    }));
    merged["metadata"]["managedFields"] = Value::Array(entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]}, "spec": {"containers": containers}})
    }

    #[rstest]
    #[case::map_merge(json!({"metadata": {"labels": {"b": "2"}}}), "/metadata/labels", json!({"a": "1", "b": "2"}))]
    #[case::null_deletes(json!({"metadata": {"labels": {"a": null}}}), "/metadata/labels", json!({}))]
    #[case::replace_directive(json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}), "/metadata/labels", json!({"c": "3"}))]
    #[case::set_list_unions(json!({"metadata": {"finalizers": ["y", "x"]}}), "/metadata/finalizers", json!(["x", "y"]))]
    #[case::delete_from_set(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}), "/metadata/finalizers", json!([]))]
    #[case::containers_merge_by_name(
        json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
        "/spec/containers/1",
        json!({"name": "b", "image": "b:2", "env": [{"name": "E", "value": "1"}]})
    )]
    #[case::new_containers_are_appended(json!({"spec": {"containers": [{"name": "c"}]}}), "/spec/containers/2", json!({"name": "c"}))]
    #[case::env_merges_by_name(
        json!({"spec": {"containers": [{"name": "b", "env": [{"name": "F", "value": "2"}, {"name": "E", "value": "9"}]}]}}),
        "/spec/containers/1/env",
        json!([{"name": "E", "value": "9"}, {"name": "F", "value": "2"}])
    )]
    #[case::delete_directive_removes_the_item(json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}), "/spec/containers/0/name", json!("b"))]
    #[case::other_lists_are_replaced(json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}), "/spec/containers/0/args", json!(["z"]))]
    fn strategic_merge_follows_the_patch_strategies(#[case] patch: Value, #[case] at: &str, #[case] expected: Value) {
        let mut target = pod(json!([
            {"name": "a", "image": "a:1", "args": ["x", "y"]},
            {"name": "b", "image": "b:1", "env": [{"name": "E", "value": "1"}]},
        ]));
        strategic_merge(&mut target, &patch);
        assert_eq!(target.pointer(at), Some(&expected), "{target}");
    }

    #[test]
    fn service_ports_merge_by_port() {
        let mut service = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        strategic_merge(&mut service, &json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}));
        assert_eq!(service["spec"]["ports"][1], json!({"port": 443, "name": "https", "targetPort": 8443}));
    }

    #[test]
    fn a_failed_json_patch_test_is_422() {
        let mut object = json!({"spec": {"replicas": 1}});
        let patch = json!([{"op": "test", "path": "/spec/replicas", "value": 2}, {"op": "replace", "path": "/spec/replicas", "value": 3}]);
        let error = json_patch(&mut object, &patch).unwrap_err();
        assert_eq!((error.code, error.reason), (422, "Invalid"));
        assert_eq!(object["spec"]["replicas"], 1);
        json_patch(&mut object, &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])).unwrap();
        assert_eq!(object["spec"]["replicas"], 3);
    }

    #[test]
    fn field_sets_spell_fields_v1() {
        let applied = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["1"]},
        });
        assert_eq!(
            field_set(&applied),
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}, "f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {}}}, "f:args": {}},
            })
        );
    }

    fn request(manager: &str, force: bool) -> ApplyRequest<'_> {
        ApplyRequest { manager, force, api_version: "v1", time: "2025-01-01T00:00:00Z" }
    }

    #[test]
    fn apply_merges_and_records_the_manager() {
        let current = json!({"metadata": {"name": "c", "labels": {"keep": "1"}}, "data": {"a": "1"}});
        let applied = json!({"metadata": {"name": "c", "labels": {"mine": "2"}}, "data": {"b": "2"}});
        let merged = apply(&current, &applied, &request("op", false)).unwrap();
        assert_eq!(merged["metadata"]["labels"], json!({"keep": "1", "mine": "2"}));
        assert_eq!(merged["data"], json!({"a": "1", "b": "2"}));
        let entries = merged["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "op");
        assert_eq!(entries[0]["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:mine": {}}}, "f:data": {"f:b": {}}}));
    }

    #[test]
    fn apply_removes_what_the_manager_no_longer_applies() {
        let first =
            apply(&json!({}), &json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}), &request("op", false))
                .unwrap();
        let second =
            apply(&first, &json!({"metadata": {"name": "c"}, "data": {"a": "1"}}), &request("op", false)).unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn apply_removes_list_items_it_no_longer_applies() {
        let containers = |names: &[&str]| json!({"spec": {"containers": names.iter().map(|n| json!({"name": n, "image": "i"})).collect::<Vec<_>>()}});
        let first = apply(&json!({}), &containers(&["a", "b"]), &request("op", false)).unwrap();
        let second = apply(&first, &containers(&["a"]), &request("op", false)).unwrap();
        assert_eq!(second["spec"]["containers"], json!([{"name": "a", "image": "i"}]));
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let first = apply(&json!({}), &json!({"spec": {"replicas": 1}}), &request("alice", false)).unwrap();
        let conflicts = apply(&first, &json!({"spec": {"replicas": 2}}), &request("bob", false)).unwrap_err();
        assert_eq!(conflicts, [("alice".to_string(), ".spec.replicas".to_string())]);
        let same_value = apply(&first, &json!({"spec": {"replicas": 1}}), &request("bob", false));
        assert!(same_value.is_ok());
        let forced = apply(&first, &json!({"spec": {"replicas": 2}}), &request("bob", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["bob"], "alice lost her only field");
    }

    #[test]
    fn conflicts_name_keyed_fields() {
        let applied = |image: &str| json!({"spec": {"containers": [{"name": "c", "image": image}]}});
        let first = apply(&json!({}), &applied("a"), &request("alice", false)).unwrap();
        let conflicts = apply(&first, &applied("b"), &request("bob", false)).unwrap_err();
        assert_eq!(conflicts, [("alice".to_string(), ".spec.containers[name=\"c\"].image".to_string())]);
    }
}
