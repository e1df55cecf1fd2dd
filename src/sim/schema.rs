//! Structural schemas, as the API server applies a CRD's `openAPIV3Schema` to every write of a custom resource:
//! the fields the schema does not describe are pruned (each one a warning, or a 400 under `fieldValidation=Strict`),
//! then `default`s are applied, then the value is validated (a 422 Invalid whose causes name the fields, in the
//! API server's words).
//!
//! Checked: `type` (with `nullable`; an integral number passes for an integer, an integer for a number),
//! `x-kubernetes-int-or-string`, `required`, `enum`, `format: date-time` on strings, `properties`,
//! `additionalProperties`, `items`, `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-embedded-resource` (its
//! `apiVersion`, `kind` and `metadata` are kept), and of `x-kubernetes-validations` the two rule shapes the Ray CRDs
//! use: `self in ['a', 'b']` and the transition rule `self == oldSelf` (checked on update only, where the old object
//! has the field). As in the API server, a null where the schema does not allow one is dropped before defaulting (or
//! replaced by the default), and integers are not range-checked by their `int32`/`int64` format (kube-openapi's type
//! validator accepts any integer there).
//!
//! Approximations: other CEL rules, `pattern`, `minimum`/`maximum`, lengths, sizes, `x-kubernetes-list-type` and
//! string formats other than `date-time` are not checked; duplicate keys in a request body are not detected (the
//! JSON decoder keeps the last). The root's `apiVersion`, `kind` and `metadata` are left to the store.

use serde_json::{Map, Value};

use super::error::{Cause, CauseReason};

/// Root fields the schema does not govern.
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

/// `additionalProperties` as a schema (`true` is "any value", handled as preserving unknown fields).
fn additional_properties(schema: &Value) -> Option<&Value> {
    schema.get("additionalProperties").filter(|a| a.is_object())
}

fn keeps_unknown(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-preserve-unknown-fields")
        || schema.get("additionalProperties").and_then(Value::as_bool) == Some(true)
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// The schema of a member of an object: its property's, else `additionalProperties`.
fn member_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    properties(schema).and_then(|p| p.get(key)).or_else(|| additional_properties(schema))
}

/// Removes the fields the schema does not describe, and answers their paths (`spec.foo`, `spec.groups[0].bar`) in
/// document order.
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_node(schema, object, "", true, &mut unknown);
    unknown
}

fn prune_node(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let keep_unknown = keeps_unknown(schema);
            let embedded = flag(schema, "x-kubernetes-embedded-resource");
            map.retain(|key, member| {
                if (root || embedded) && ROOT_FIELDS.contains(&key.as_str()) {
                    return true;
                }
                match member_schema(schema, key) {
                    Some(member_schema) => {
                        prune_node(member_schema, member, &child_path(path, key), false, unknown);
                        true
                    }
                    None if keep_unknown => true,
                    None => {
                        unknown.push(child_path(path, key));
                        false
                    }
                }
            });
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune_node(item_schema, item, &format!("{path}[{index}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies the schema's defaults to missing fields, and to nulls where the schema allows no null; drops the other
/// nulls the schema does not allow. Defaults are applied inside defaulted values too.
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    default_node(schema, object, true);
}

fn default_node(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            for (key, property) in properties(schema).into_iter().flatten() {
                if root && ROOT_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                let unset = match map.get(key) {
                    None => true,
                    Some(Value::Null) => !flag(property, "nullable"),
                    Some(_) => false,
                };
                match (unset, property.get("default")) {
                    (true, Some(default)) => {
                        map.insert(key.clone(), default.clone());
                    }
                    (true, None) => {
                        map.remove(key);
                    }
                    (false, _) => {}
                }
            }
            if let Some(additional) = additional_properties(schema)
                && !flag(additional, "nullable")
                && additional.get("default").is_none()
            {
                let named = properties(schema);
                map.retain(|key, member| !member.is_null() || named.is_some_and(|p| p.contains_key(key)));
            }
            for (key, member) in map.iter_mut() {
                if root && ROOT_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                if let Some(member_schema) = member_schema(schema, key) {
                    default_node(member_schema, member, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_node(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

/// The causes of a 422 Invalid: the value against the schema, then its validation rules; `old` is the stored object
/// (on update), for transition rules.
pub fn validate(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(schema, object, old, "", true, &mut causes);
    causes
}

/// The JSON type of a value as kube-openapi names it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(expected: &str, value: &Value) -> bool {
    let actual = json_type(value);
    expected == actual
        || (expected == "number" && actual == "integer")
        || (expected == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
}

/// A value as field errors print it: strings quoted, numbers and booleans bare, anything else as JSON.
pub fn printed(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn type_invalid(path: &str, expected: &str, actual: &str) -> Cause {
    Cause::new(
        path,
        CauseReason::TypeInvalid,
        format!("\"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
    )
}

fn check(schema: &Value, value: &Value, old: Option<&Value>, path: &str, root: bool, causes: &mut Vec<Cause>) {
    let declared = schema.get("type").and_then(Value::as_str);
    if flag(schema, "x-kubernetes-int-or-string") {
        let allowed = matches!(json_type(value), "integer" | "string") || (value.is_null() && flag(schema, "nullable"));
        if !allowed {
            let detail = format!("\"\": {path} in body must validate at least one schema (anyOf)");
            causes.push(Cause::new(path, CauseReason::Invalid, detail));
            causes.push(type_invalid(path, "integer", json_type(value)));
            return;
        }
    } else if value.is_null() {
        if let Some(expected) = declared.filter(|_| !flag(schema, "nullable")) {
            causes.push(type_invalid(path, expected, "null"));
        }
        return;
    } else if let Some(expected) = declared.filter(|expected| !has_type(expected, value)) {
        causes.push(type_invalid(path, expected, json_type(value)));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let quoted: Vec<String> = allowed
            .iter()
            .map(|v| v.as_str().map_or_else(|| printed(v), str::to_string))
            .map(|v| printed(&Value::String(v)))
            .collect();
        let detail = format!("{}: supported values: {}", printed(value), quoted.join(", "));
        causes.push(Cause::new(path, CauseReason::NotSupported, detail));
    }
    if let Some(text) = value.as_str()
        && schema.get("format").and_then(Value::as_str) == Some("date-time")
        && text.parse::<jiff::Timestamp>().is_err()
    {
        let detail = format!("{}: {path} in body must be of type date-time: {}", printed(value), printed(value));
        causes.push(Cause::new(path, CauseReason::TypeInvalid, detail));
    }
    match value {
        Value::Object(map) => {
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(name) = required.as_str().filter(|name| !map.contains_key(*name)) {
                    causes.push(Cause::new(&child_path(path, name), CauseReason::Required, ""));
                }
            }
            for (key, member) in map {
                if root && ROOT_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                if let Some(member_schema) = member_schema(schema, key) {
                    let old_member = old.and_then(|o| o.get(key));
                    check(member_schema, member, old_member, &child_path(path, key), false, causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                // List items are not correlated with the old list's: transition rules do not apply inside them.
                for (index, item) in items.iter().enumerate() {
                    check(item_schema, item, None, &format!("{path}[{index}]"), false, causes);
                }
            }
        }
        _ => {}
    }
    for rule in schema.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        let holds = match Rule::parse(text) {
            Some(Rule::Immutable) => old.is_none_or(|old| old == value),
            Some(Rule::OneOf(allowed)) => value.as_str().is_some_and(|v| allowed.iter().any(|a| a == v)),
            None => true,
        };
        if !holds {
            let message = rule
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("failed rule: {text}"), str::to_string);
            let type_name = declared.unwrap_or(json_type(value));
            causes.push(Cause::new(path, CauseReason::Invalid, format!("\"{type_name}\": {message}")));
        }
    }
}

/// The CEL rules the simulated API server understands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// `self == oldSelf`.
    Immutable,
    /// `self in ['a', 'b']`.
    OneOf(Vec<String>),
}

impl Rule {
    fn parse(text: &str) -> Option<Rule> {
        let compact: String = text.split_whitespace().collect();
        if compact == "self==oldSelf" {
            return Some(Rule::Immutable);
        }
        let list = text.trim().strip_prefix("self")?.trim_start().strip_prefix("in")?.trim();
        let inner = list.strip_prefix('[')?.strip_suffix(']')?;
        inner
            .split(',')
            .map(|item| {
                let item = item.trim();
                item.strip_prefix('\'')
                    .and_then(|i| i.strip_suffix('\''))
                    .or_else(|| item.strip_prefix('"').and_then(|i| i.strip_suffix('"')))
                    .map(str::to_string)
            })
            .collect::<Option<Vec<String>>>()
            .map(Rule::OneOf)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    /// A small schema in the shape of the Ray CRDs'.
    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["head"],
                    "properties": {
                        "head": {
                            "type": "object",
                            "properties": {
                                "params": {"type": "object", "default": {}, "additionalProperties": {"type": "string"}},
                                "port": {"type": "integer", "format": "int32", "nullable": true},
                            },
                        },
                        "groups": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "replicas": {"type": "integer", "format": "int32", "default": 0, "nullable": true},
                                    "size": {"x-kubernetes-int-or-string": true},
                                },
                            },
                        },
                        "mode": {"type": "string", "enum": ["Default", "Aggressive", null], "nullable": true},
                        "managedBy": {
                            "type": "string",
                            "x-kubernetes-validations": [
                                {"rule": "self == oldSelf", "message": "the managedBy field is immutable"},
                                {"rule": "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']",
                                 "message": "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'"},
                            ],
                        },
                        "policy": {"type": "string", "x-kubernetes-validations": [{"rule": "self in ['A', 'B']"}]},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {}},
                    },
                },
                "status": {"type": "object", "properties": {"lastUpdateTime": {"type": "string", "format": "date-time"}}},
            },
        })
    }

    fn object(spec: Value) -> Value {
        json!({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c", "labels": {"a": "b"}}, "spec": spec})
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {:?}: {}", c.field, c.reason, c.detail)).collect()
    }

    #[test]
    fn unknown_fields_are_pruned_and_named_but_metadata_and_open_objects_are_kept() {
        let mut value = object(json!({
            "head": {"params": {"x": "1"}, "bogus": 1},
            "groups": [{"name": "a", "extra": true}],
            "free": {"anything": {"goes": 1}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
            "typo": "x",
        }));
        let unknown = prune(&schema(), &mut value);
        assert_eq!(unknown, ["spec.groups[0].extra", "spec.head.bogus", "spec.template.spec", "spec.typo"]);
        assert_eq!(value["metadata"], json!({"name": "c", "labels": {"a": "b"}}));
        assert_eq!(value["spec"]["free"], json!({"anything": {"goes": 1}}));
        assert_eq!(value["spec"]["template"], json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}));
        assert_eq!(value["spec"]["groups"], json!([{"name": "a"}]));
    }

    #[rstest]
    #[case::missing_field_gets_its_default(json!({"head": {}, "groups": [{"name": "a"}]}), json!({"head": {"params": {}}, "groups": [{"name": "a", "replicas": 0}]}))]
    #[case::nullable_null_is_kept(json!({"head": {"port": null}, "groups": [{"name": "a", "replicas": null}]}), json!({"head": {"params": {}, "port": null}, "groups": [{"name": "a", "replicas": null}]}))]
    #[case::null_not_allowed_takes_the_default(json!({"head": {"params": null}}), json!({"head": {"params": {}}}))]
    #[case::null_not_allowed_without_default_is_dropped(json!({"head": {}, "policy": null}), json!({"head": {"params": {}}}))]
    #[case::null_map_values_are_dropped(json!({"head": {"params": {"a": null, "b": "1"}}}), json!({"head": {"params": {"b": "1"}}}))]
    #[case::no_parent_no_default(json!({}), json!({}))]
    fn defaults_fill_what_is_missing(#[case] spec: Value, #[case] expected: Value) {
        let mut value = object(spec);
        apply_defaults(&schema(), &mut value);
        assert_eq!(value["spec"], expected);
        assert_eq!(value["metadata"], json!({"name": "c", "labels": {"a": "b"}}));
    }

    #[rstest]
    #[case::valid(json!({"head": {"port": 8265}, "groups": [{"name": "a", "replicas": 2.0, "size": "1Gi"}]}), &[])]
    #[case::required(json!({"groups": [{"replicas": 1}]}), &[
        "spec.head: Required: ",
        "spec.groups[0].name: Required: ",
    ])]
    #[case::wrong_type(json!({"head": {"port": "80"}}), &[
        "spec.head.port: TypeInvalid: \"string\": spec.head.port in body must be of type integer: \"string\"",
    ])]
    #[case::fraction_for_an_integer(json!({"head": {"port": 1.5}}), &[
        "spec.head.port: TypeInvalid: \"number\": spec.head.port in body must be of type integer: \"number\"",
    ])]
    #[case::int32_is_not_range_checked(json!({"head": {"port": 4_294_967_296_i64}}), &[])]
    #[case::null_not_allowed_in_a_list(json!({"head": {}, "groups": [null]}), &[
        "spec.groups[0]: TypeInvalid: \"null\": spec.groups[0] in body must be of type object: \"null\"",
    ])]
    #[case::int_or_string(json!({"head": {}, "groups": [{"name": "a", "size": true}]}), &[
        "spec.groups[0].size: Invalid: \"\": spec.groups[0].size in body must validate at least one schema (anyOf)",
        "spec.groups[0].size: TypeInvalid: \"boolean\": spec.groups[0].size in body must be of type integer: \"boolean\"",
    ])]
    #[case::enum_with_null(json!({"head": {}, "mode": "Fast"}), &[
        "spec.mode: NotSupported: \"Fast\": supported values: \"Default\", \"Aggressive\", \"null\"",
    ])]
    #[case::enum_null_allowed(json!({"head": {}, "mode": null}), &[])]
    #[case::rule_in_list(json!({"head": {}, "managedBy": "someone"}), &[
        "spec.managedBy: Invalid: \"string\": the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
    ])]
    #[case::rule_without_message(json!({"head": {}, "policy": "C"}), &[
        "spec.policy: Invalid: \"string\": failed rule: self in ['A', 'B']",
    ])]
    fn validation_names_each_field(#[case] spec: Value, #[case] expected: &[&str]) {
        assert_eq!(messages(&validate(&schema(), &object(spec), None)), expected);
    }

    #[test]
    fn date_times_are_checked() {
        let mut value = object(json!({"head": {}}));
        value["status"] = json!({"lastUpdateTime": "2025-01-01T00:00:00Z"});
        assert!(validate(&schema(), &value, None).is_empty());
        value["status"] = json!({"lastUpdateTime": "yesterday"});
        assert_eq!(
            messages(&validate(&schema(), &value, None)),
            [
                "status.lastUpdateTime: TypeInvalid: \"yesterday\": status.lastUpdateTime in body must be of type date-time: \"yesterday\""
            ]
        );
    }

    #[rstest]
    #[case::unchanged(Some("ray.io/kuberay-operator"), "ray.io/kuberay-operator", true)]
    #[case::changed(Some("ray.io/kuberay-operator"), "kueue.x-k8s.io/multikueue", false)]
    #[case::added_on_update(None, "kueue.x-k8s.io/multikueue", true)]
    fn transition_rules_compare_with_the_stored_object(
        #[case] before: Option<&str>,
        #[case] after: &str,
        #[case] valid: bool,
    ) {
        let old = object(before.map_or(json!({"head": {}}), |b| json!({"head": {}, "managedBy": b})));
        let causes = validate(&schema(), &object(json!({"head": {}, "managedBy": after})), Some(&old));
        let expected: &[&str] =
            if valid { &[] } else { &["spec.managedBy: Invalid: \"string\": the managedBy field is immutable"] };
        assert_eq!(messages(&causes), expected);
    }

    #[rstest]
    #[case::immutable("self == oldSelf", Some(Rule::Immutable))]
    #[case::one_of("self in ['a', \"b\"]", Some(Rule::OneOf(vec!["a".into(), "b".into()])))]
    #[case::other("self.size() > 1", None)]
    #[case::unquoted("self in [a]", None)]
    fn rules_of_two_shapes_are_understood(#[case] text: &str, #[case] rule: Option<Rule>) {
        assert_eq!(Rule::parse(text), rule);
    }
}
