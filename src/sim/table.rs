//! `Table` answers (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), what `kubectl get` prints: a CRD's
//! `additionalPrinterColumns` (with `Age` when it declares none), and for built-in kinds the columns of the API
//! server's printers for the kinds kubectl users meet most (Pods, Services, Namespaces, ConfigMaps, Secrets,
//! ServiceAccounts, Jobs, Deployments, StatefulSets, Endpoints, Events, CRDs). Approximation: every other built-in
//! kind gets `Name` and `Age` (the API server has a printer for each).
//!
//! Ages are computed by the server at the simulated cluster's time, in the API server's short form (`5m10s`).

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::resources::ResourceType;
use super::watch::present;

/// How objects are written in an answer, as the request's `Accept` header asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rendering {
    #[default]
    Object,
    /// `as=PartialObjectMetadata[List]`: metadata only.
    Metadata,
    /// `as=Table`.
    Table(IncludeObject),
}

impl Rendering {
    /// The first media type of an `Accept` header that the server speaks (JSON, in any of its three renderings);
    /// `None` when it offers none (protobuf alone, say).
    pub fn negotiate(accept: &str, include: IncludeObject) -> Option<Rendering> {
        if accept.trim().is_empty() {
            return Some(Rendering::Object);
        }
        accept.split(',').find_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default();
            let parameters: Map<String, Value> =
                parts.filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim().to_string(), json!(v.trim()))).collect();
            if !matches!(media_type, "application/json" | "application/*" | "*/*") {
                return None;
            }
            let parameter = |key: &str| parameters.get(key).and_then(Value::as_str).unwrap_or_default();
            let meta = parameter("g") == "meta.k8s.io" && matches!(parameter("v"), "v1" | "v1beta1");
            match parameter("as") {
                "" => Some(Rendering::Object),
                "Table" if meta => Some(Rendering::Table(include)),
                "PartialObjectMetadata" | "PartialObjectMetadataList" if meta => Some(Rendering::Metadata),
                _ => None,
            }
        })
    }

    /// One object (a get, a watch event) in this rendering.
    pub fn one(self, resource: &ResourceType, version: &str, object: &Value, now: Timestamp) -> Value {
        match self {
            Rendering::Object => present(resource, version, object),
            Rendering::Metadata => partial_object_metadata(object),
            Rendering::Table(include) => table(resource, version, &[object], include, json!({}), now),
        }
    }
}

/// What each row carries besides its cells (the `includeObject` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(text: &str) -> IncludeObject {
        match text {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// One column and how its cells are made.
struct Column {
    name: String,
    kind: &'static str,
    format: &'static str,
    priority: u64,
    cell: Cell,
}

enum Cell {
    /// A CRD column: a simple JSONPath (`.status.state`, `.spec.groups[0].name`) and the column's type.
    Path(String, String),
    Builtin(fn(&Value, Timestamp) -> Value),
}

impl Column {
    fn builtin(name: &str, kind: &'static str, priority: u64, cell: fn(&Value, Timestamp) -> Value) -> Column {
        let format = if name == "Name" { "name" } else { "" };
        Column { name: name.to_string(), kind, format, priority, cell: Cell::Builtin(cell) }
    }

    fn definition(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "format": self.format, "description": "", "priority": self.priority})
    }
}

/// A list (or one object) as a `Table`.
pub fn table(
    resource: &ResourceType,
    version: &str,
    objects: &[&Value],
    include: IncludeObject,
    metadata: Value,
    now: Timestamp,
) -> Value {
    let columns = columns(resource, version);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns.iter().map(|column| cell(column, object, now)).collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_object_metadata(object),
                IncludeObject::Object => row["object"] = present(resource, version, object),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns.iter().map(Column::definition).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The object's metadata alone, as metadata-only clients read it.
pub fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

fn cell(column: &Column, object: &Value, now: Timestamp) -> Value {
    match &column.cell {
        Cell::Builtin(cell) => cell(object, now),
        Cell::Path(path, kind) => json_path(object, path).map_or(Value::Null, |value| typed_cell(kind, value, now)),
    }
}

/// A CRD column's cell: strings printed, dates as ages, other types kept when the value has that type.
fn typed_cell(kind: &str, value: &Value, now: Timestamp) -> Value {
    match kind {
        "string" => json!(value.as_str().map_or_else(|| value.to_string(), str::to_string)),
        "integer" => value.as_f64().map_or(Value::Null, |n| json!(n.trunc() as i64)),
        "number" => value.as_f64().map_or(Value::Null, |n| json!(n)),
        "boolean" => value.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => value.as_str().map_or(Value::Null, |text| match text.parse::<Timestamp>() {
            Ok(time) => json!(human_duration(now.duration_since(time))),
            Err(_) => json!("<invalid>"),
        }),
        _ => Value::Null,
    }
}

/// `.a.b[0].c`: the simple JSONPaths printer columns use; anything fancier gives no value.
fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = object;
    for segment in path.trim_start_matches('.').split('.') {
        let (name, indexes) = segment.split_once('[').map_or((segment, ""), |(name, rest)| (name, rest));
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            current = current.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

fn columns(resource: &ResourceType, version: &str) -> Vec<Column> {
    if resource.custom {
        return crd_columns(resource, version);
    }
    let name = Column::builtin("Name", "string", 0, |o, _| json!(text(o, "/metadata/name")));
    let age = || Column::builtin("Age", "string", 0, |o, now| json!(age(o, now)));
    let mut columns = vec![name];
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => {
            columns.push(Column::builtin("Ready", "string", 0, pod_ready));
            columns.push(Column::builtin("Status", "string", 0, |o, _| json!(pod_status(o))));
            columns.push(Column::builtin("Restarts", "string", 0, pod_restarts));
            columns.push(age());
            columns.push(Column::builtin("IP", "string", 1, |o, _| json!(or_none(text(o, "/status/podIP")))));
            columns.push(Column::builtin("Node", "string", 1, |o, _| json!(or_none(text(o, "/spec/nodeName")))));
            columns.push(Column::builtin("Nominated Node", "string", 1, |_, _| json!("<none>")));
            columns.push(Column::builtin("Readiness Gates", "string", 1, |_, _| json!("<none>")));
        }
        ("", "Service") => {
            columns.push(Column::builtin("Type", "string", 0, |o, _| json!(text(o, "/spec/type"))));
            columns.push(Column::builtin("Cluster-IP", "string", 0, |o, _| json!(or_none(text(o, "/spec/clusterIP")))));
            columns.push(Column::builtin("External-IP", "string", 0, service_external_ip));
            columns.push(Column::builtin("Port(s)", "string", 0, service_ports));
            columns.push(age());
            columns.push(Column::builtin("Selector", "string", 1, |o, _| json!(or_none(&pairs(o, "/spec/selector")))));
        }
        ("", "Namespace") => {
            columns.push(Column::builtin("Status", "string", 0, |o, _| json!(text(o, "/status/phase"))));
            columns.push(age());
        }
        ("", "ConfigMap") => {
            columns
                .push(Column::builtin("Data", "integer", 0, |o, _| json!(count(o, "/data") + count(o, "/binaryData"))));
            columns.push(age());
        }
        ("", "Secret") => {
            columns.push(Column::builtin("Type", "string", 0, |o, _| json!(text(o, "/type"))));
            columns.push(Column::builtin("Data", "integer", 0, |o, _| json!(count(o, "/data"))));
            columns.push(age());
        }
        ("", "ServiceAccount") => {
            columns.push(Column::builtin("Secrets", "integer", 0, |o, _| json!(count(o, "/secrets"))));
            columns.push(age());
        }
        ("", "Endpoints") => {
            columns.push(Column::builtin("Endpoints", "string", 0, endpoints));
            columns.push(age());
        }
        ("", "Event") => {
            columns.push(Column::builtin("Last Seen", "string", 0, event_last_seen));
            columns.push(Column::builtin("Type", "string", 0, |o, _| json!(text(o, "/type"))));
            columns.push(Column::builtin("Reason", "string", 0, |o, _| json!(text(o, "/reason"))));
            columns.push(Column::builtin("Object", "string", 0, |o, _| {
                json!(format!("{}/{}", text(o, "/involvedObject/kind").to_lowercase(), text(o, "/involvedObject/name")))
            }));
            columns.push(Column::builtin("Message", "string", 0, |o, _| json!(text(o, "/message"))));
        }
        ("batch", "Job") => {
            columns.push(Column::builtin("Status", "string", 0, |o, _| json!(job_status(o))));
            columns.push(Column::builtin("Completions", "string", 0, job_completions));
            columns.push(Column::builtin("Duration", "string", 0, job_duration));
            columns.push(age());
        }
        ("apps", "Deployment") => {
            columns.push(Column::builtin("Ready", "string", 0, |o, _| json!(ready_of(o))));
            columns
                .push(Column::builtin("Up-to-date", "integer", 0, |o, _| json!(number(o, "/status/updatedReplicas"))));
            columns
                .push(Column::builtin("Available", "integer", 0, |o, _| json!(number(o, "/status/availableReplicas"))));
            columns.push(age());
        }
        ("apps", "StatefulSet") => {
            columns.push(Column::builtin("Ready", "string", 0, |o, _| json!(ready_of(o))));
            columns.push(age());
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            columns
                .push(Column::builtin("Created At", "date", 0, |o, _| json!(text(o, "/metadata/creationTimestamp"))));
        }
        _ => columns.push(age()),
    }
    columns
}

fn crd_columns(resource: &ResourceType, version: &str) -> Vec<Column> {
    let name = Column::builtin("Name", "string", 0, |o, _| json!(text(o, "/metadata/name")));
    let declared: Vec<&Value> = resource
        .crd_version(version)
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map(|columns| columns.iter().collect())
        .unwrap_or_default();
    let mut columns = vec![name];
    if declared.is_empty() {
        columns.push(Column::builtin("Age", "date", 0, |o, now| json!(age(o, now))));
    }
    for column in declared {
        let field = |key: &str| column.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = match field("type").as_str() {
            "integer" => "integer",
            "number" => "number",
            "boolean" => "boolean",
            "date" => "date",
            _ => "string",
        };
        columns.push(Column {
            name: field("name"),
            kind,
            format: "",
            priority: column.get("priority").and_then(Value::as_u64).unwrap_or(0),
            cell: Cell::Path(field("jsonPath"), kind.to_string()),
        });
    }
    columns
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn count(object: &Value, pointer: &str) -> usize {
    match object.pointer(pointer) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "<none>" } else { text }
}

fn pairs(object: &Value, pointer: &str) -> String {
    let map = object.pointer(pointer).and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
    map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
}

fn age(object: &Value, now: Timestamp) -> String {
    match text(object, "/metadata/creationTimestamp").parse::<Timestamp>() {
        Ok(created) => human_duration(now.duration_since(created)),
        Err(_) => "<unknown>".to_string(),
    }
}

/// The API server's short durations (`duration.HumanDuration`): exact seconds under two minutes, then coarser.
pub fn human_duration(duration: jiff::SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    let with = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 { format!("{big}{big_unit}") } else { format!("{big}{big_unit}{small}{small_unit}") }
    };
    if minutes < 10 {
        return with(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return with(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

fn pod_ready(pod: &Value, _: Timestamp) -> Value {
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    let ready = statuses.into_iter().flatten().filter(|c| c.get("ready") == Some(&json!(true))).count();
    json!(format!("{ready}/{}", count(pod, "/spec/containers")))
}

fn pod_restarts(pod: &Value, _: Timestamp) -> Value {
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    let restarts: i64 = statuses.into_iter().flatten().map(|c| number(c, "/restartCount")).sum();
    json!(restarts.to_string())
}

/// The phase, or what the last container with a reason says (`CrashLoopBackOff`, `Completed`), or `Terminating`.
fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return "Terminating".to_string();
    }
    let mut reason = text(pod, "/status/phase").to_string();
    for container in pod.pointer("/status/containerStatuses").and_then(Value::as_array).into_iter().flatten() {
        let waiting = text(container, "/state/waiting/reason");
        let terminated = text(container, "/state/terminated/reason");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if !terminated.is_empty() {
            reason = terminated.to_string();
        }
    }
    reason
}

fn service_external_ip(service: &Value, _: Timestamp) -> Value {
    let ingress = service.pointer("/status/loadBalancer/ingress").and_then(Value::as_array);
    let addresses: Vec<&str> = ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str))
        .collect();
    json!(match (text(service, "/spec/type"), addresses.is_empty()) {
        ("LoadBalancer", true) => "<pending>".to_string(),
        ("ExternalName", _) => text(service, "/spec/externalName").to_string(),
        (_, true) => "<none>".to_string(),
        (_, false) => addresses.join(","),
    })
}

fn service_ports(service: &Value, _: Timestamp) -> Value {
    let ports: Vec<String> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|port| {
            let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{}:{node_port}/{protocol}", number(port, "/port")),
                None => format!("{}/{protocol}", number(port, "/port")),
            }
        })
        .collect();
    json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") })
}

fn endpoints(object: &Value, _: Timestamp) -> Value {
    let mut listed = Vec::new();
    for subset in object.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        let ports: Vec<i64> =
            subset.get("ports").and_then(Value::as_array).into_iter().flatten().map(|p| number(p, "/port")).collect();
        for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            let ip = text(address, "/ip");
            if ports.is_empty() {
                listed.push(ip.to_string());
            }
            listed.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    json!(if listed.is_empty() { "<none>".to_string() } else { listed.join(",") })
}

fn event_last_seen(event: &Value, now: Timestamp) -> Value {
    let seen = [text(event, "/lastTimestamp"), text(event, "/eventTime"), text(event, "/metadata/creationTimestamp")]
        .into_iter()
        .find_map(|t| t.parse::<Timestamp>().ok());
    json!(seen.map_or_else(|| "<unknown>".to_string(), |time| human_duration(now.duration_since(time))))
}

fn has_condition(object: &Value, kind: &str) -> bool {
    object.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind) && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    }
}

fn job_completions(job: &Value, _: Timestamp) -> Value {
    let succeeded = number(job, "/status/succeeded");
    json!(match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => format!("{succeeded}/1 of {}", number(job, "/spec/parallelism")),
    })
}

fn job_duration(job: &Value, now: Timestamp) -> Value {
    let Ok(start) = text(job, "/status/startTime").parse::<Timestamp>() else { return json!("") };
    let end = text(job, "/status/completionTime").parse::<Timestamp>().unwrap_or(now);
    json!(human_duration(end.duration_since(start)))
}

fn ready_of(object: &Value) -> String {
    format!(
        "{}/{}",
        number(object, "/status/readyReplicas"),
        object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
    )
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::super::resources::{Registry, resource_of_crd};
    use super::*;

    const NOW: &str = "2025-01-01T01:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn builtin(group: &str, plural: &str) -> ResourceType {
        Registry::default().types().find(|t| t.group == group && t.plural == plural).cloned().unwrap()
    }

    fn rows(resource: &ResourceType, object: Value) -> (Vec<String>, Vec<Value>) {
        let table = table(resource, "v1", &[&object], IncludeObject::Metadata, json!({}), now());
        let names =
            table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string());
        (names.collect(), table["rows"][0]["cells"].as_array().unwrap().clone())
    }

    #[rstest]
    #[case::seconds(90, "90s")]
    #[case::minutes_and_seconds(310, "5m10s")]
    #[case::whole_minutes(300, "5m")]
    #[case::many_minutes(3000, "50m")]
    #[case::hours_and_minutes(4 * 3600 + 120, "4h2m")]
    #[case::hours(20 * 3600, "20h")]
    #[case::days_and_hours(3 * 86400 + 3600, "3d1h")]
    #[case::days(30 * 86400, "30d")]
    #[case::years_and_days(3 * 365 * 86400 + 86400, "3y1d")]
    #[case::clock_skew(-1, "0s")]
    #[case::future(-5, "<invalid>")]
    fn durations_read_as_the_api_server_writes_them(#[case] seconds: i64, #[case] text: &str) {
        assert_eq!(human_duration(jiff::SignedDuration::from_secs(seconds)), text);
    }

    #[test]
    fn pods_show_readiness_status_restarts_and_age() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2025-01-01T00:55:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.2", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]},
        });
        let (names, cells) = rows(&builtin("", "pods"), pod);
        assert_eq!(
            names,
            ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        assert_eq!(
            cells,
            [
                json!("p"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("2"),
                json!("5m"),
                json!("10.244.0.2"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn services_show_addresses_and_ports() {
        let service = json!({
            "metadata": {"name": "s", "creationTimestamp": "2025-01-01T00:59:30Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "selector": {"app": "web"},
                     "ports": [{"port": 80, "nodePort": 30000, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
        });
        let (_, cells) = rows(&builtin("", "services"), service);
        assert_eq!(
            cells,
            [
                json!("s"),
                json!("NodePort"),
                json!("10.96.0.5"),
                json!("<none>"),
                json!("80:30000/TCP,53/UDP"),
                json!("30s"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let job = json!({
            "metadata": {"name": "j", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"completions": 2},
            "status": {"succeeded": 2, "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:40Z",
                       "conditions": [{"type": "Complete", "status": "True"}]},
        });
        let (names, cells) = rows(&builtin("batch", "jobs"), job);
        assert_eq!(names, ["Name", "Status", "Completions", "Duration", "Age"]);
        assert_eq!(cells, [json!("j"), json!("Complete"), json!("2/2"), json!("40s"), json!("60m")]);
    }

    #[rstest]
    #[case::kubectl_get(
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        Some(Rendering::Table(IncludeObject::Metadata))
    )]
    #[case::plain_json("application/json", Some(Rendering::Object))]
    #[case::anything("*/*", Some(Rendering::Object))]
    #[case::nothing_said("", Some(Rendering::Object))]
    #[case::protobuf_then_json("application/vnd.kubernetes.protobuf, application/json", Some(Rendering::Object))]
    #[case::metadata("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", Some(Rendering::Metadata))]
    #[case::protobuf_only("application/vnd.kubernetes.protobuf", None)]
    #[case::unknown_rendering("application/json;as=Other;g=meta.k8s.io;v=v1", None)]
    fn accept_headers_choose_the_rendering(#[case] accept: &str, #[case] rendering: Option<Rendering>) {
        assert_eq!(Rendering::negotiate(accept, IncludeObject::Metadata), rendering);
    }

    #[test]
    fn other_builtins_show_name_and_age() {
        let (names, cells) = rows(&builtin("coordination.k8s.io", "leases"), json!({"metadata": {"name": "l"}}));
        assert_eq!((names, cells), (vec!["Name".to_string(), "Age".to_string()], vec![json!("l"), json!("<unknown>")]));
    }

    fn crd(columns: Value) -> ResourceType {
        resource_of_crd(&json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true, "additionalPrinterColumns": columns}]},
        }))
        .unwrap()
    }

    #[test]
    fn crd_columns_follow_their_json_paths_and_types() {
        let columns = json!([
            {"name": "desired workers", "type": "integer", "jsonPath": ".status.desired"},
            {"name": "status", "type": "string", "jsonPath": ".status.state"},
            {"name": "first", "type": "string", "jsonPath": ".spec.groups[0].name", "priority": 1},
            {"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "missing", "type": "string", "jsonPath": ".status.nothing"},
        ]);
        let widget = json!({
            "metadata": {"name": "w", "creationTimestamp": "2025-01-01T00:58:00Z"},
            "spec": {"groups": [{"name": "g"}]},
            "status": {"desired": 3, "state": "ready"},
        });
        let resource = crd(columns);
        let table = table(&resource, "v1", &[&widget], IncludeObject::Object, json!({}), now());
        let priorities: Vec<u64> =
            table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["priority"].as_u64().unwrap()).collect();
        assert_eq!(priorities, [0, 0, 0, 1, 0, 0]);
        assert_eq!(table["rows"][0]["cells"], json!(["w", 3, "ready", "g", "2m", null]));
        assert_eq!(table["rows"][0]["object"]["spec"]["groups"][0]["name"], "g");
    }

    #[test]
    fn a_crd_without_columns_shows_age() {
        let (names, cells) =
            rows(&crd(json!([])), json!({"metadata": {"name": "w", "creationTimestamp": "2025-01-01T00:00:00Z"}}));
        assert_eq!((names, cells), (vec!["Name".to_string(), "Age".to_string()], vec![json!("w"), json!("60m")]));
    }
}
