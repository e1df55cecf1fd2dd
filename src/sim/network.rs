//! The simulated cluster's network: the processes that listen on Pods' ports (the simulated Ray dashboards, or any
//! [`Processes`] a test adds), and how a Service port, a Service's DNS name, a cluster IP or a Pod IP leads to them.
//! The `services/proxy` subresource and the in-process address resolver ([`super::Sim::send`]) both go through it.
//!
//! A Service port leads where kube-proxy would send it: to the first ready address of the Service's Endpoints for
//! that port (named ports resolved by the Endpoints controller), and on to whatever listens on that Pod's port.
//! Approximations: no load balancing (always the first address), no `pods/proxy`, no `nodes/proxy`; a DNS name
//! without a namespace is looked up in `default`.

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::error::ApiError;
use super::store::{ListOptions, Store};

pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Bytes>;
pub type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;
/// The text frames a websocket sends, in order; the end of the stream is a normal close (code 1000).
pub type Messages = Pin<Box<dyn futures::Stream<Item = String> + Send>>;
/// The answer to a websocket request: the process's accepting answer (its own headers; the server adds the
/// handshake's) with the frames it will send, or the HTTP answer that refuses the upgrade.
pub type WebSocketAnswer = Pin<Box<dyn Future<Output = Result<http::Response<Messages>, Response>> + Send>>;

/// Something listening on a Pod's port, answering HTTP.
pub trait Process: Send + Sync {
    fn call(&self, request: Request) -> Answer;

    /// A request with `Upgrade: websocket`. A process that serves no websocket answers it as plain HTTP.
    fn websocket(&self, request: Request) -> WebSocketAnswer {
        let answer = self.call(request);
        Box::pin(async move { Err(answer.await) })
    }
}

/// Finds what listens on a port of a Pod.
pub trait Processes: Send + Sync {
    fn listening(&self, store: &Store, pod: &Value, port: u16) -> Option<Arc<dyn Process>>;
}

/// A Pod and one of its ports.
#[derive(Clone, Debug)]
pub struct Target {
    pub pod: Arc<Value>,
    pub port: u16,
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn no_endpoints(service: &str) -> ApiError {
    ApiError::service_unavailable(&format!("no endpoints available for service \"{service}\""))
}

fn builtin<'a>(store: &'a Store, plural: &str) -> Result<&'a super::resources::ResourceType, ApiError> {
    store.registry().find("", "v1", plural).ok_or_else(|| ApiError::internal(&format!("{plural} are not served")))
}

/// Where a connection to port `port` (a name or a number; empty for the Service's first port) of a Service lands.
pub fn service_target(store: &Store, namespace: &str, service: &str, port: &str) -> Result<Target, ApiError> {
    let services = builtin(store, "services")?;
    let object = store.get(services, Some(namespace), service)?;
    let ports = object.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let wanted = ports
        .iter()
        .find(|p| {
            port.is_empty()
                || text(p, "/name") == port
                || p.get("port").and_then(Value::as_u64).is_some_and(|n| n.to_string() == port)
        })
        .ok_or_else(|| no_endpoints(service))?;
    let port_name = text(wanted, "/name");
    let endpoints =
        store.get(builtin(store, "endpoints")?, Some(namespace), service).map_err(|_| no_endpoints(service))?;
    for subset in endpoints.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        let Some(number) = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| text(p, "/name") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|n| u16::try_from(n).ok())
        else {
            continue;
        };
        for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            let pod_name = text(address, "/targetRef/name");
            if let Ok(pod) = store.get(builtin(store, "pods")?, Some(namespace), pod_name) {
                return Ok(Target { pod, port: number });
            }
        }
    }
    Err(no_endpoints(service))
}

/// Where a connection to `host:port` lands: `<service>.<namespace>[.svc[.cluster.local]]`, a cluster IP or a Pod IP.
pub fn resolve(store: &Store, authority: &str) -> Result<Target, ApiError> {
    let unknown = || ApiError::service_unavailable(&format!("dial tcp {authority}: lookup failed: no such host"));
    let (host, port) = authority.rsplit_once(':').ok_or_else(unknown)?;
    if host.parse::<Ipv4Addr>().is_ok() {
        let everything = ListOptions::default();
        let services = store.list(builtin(store, "services")?, None, &everything)?;
        if let Some(service) = services.items.iter().find(|s| text(s, "/spec/clusterIP") == host) {
            return service_target(store, text(service, "/metadata/namespace"), text(service, "/metadata/name"), port);
        }
        let pods = store.list(builtin(store, "pods")?, None, &everything)?;
        let pod = pods.items.into_iter().find(|p| text(p, "/status/podIP") == host).ok_or_else(unknown)?;
        return Ok(Target { pod, port: port.parse().map_err(|_| unknown())? });
    }
    let name = host.trim_end_matches(".cluster.local").trim_end_matches(".svc");
    let (service, namespace) = name.split_once('.').unwrap_or((name, "default"));
    if namespace.contains('.') {
        return Err(unknown());
    }
    service_target(store, namespace, service, port)
}

/// The answer of a process that is not there, as the API server's proxy gives it.
pub fn connection_refused(target: &Target) -> ApiError {
    let ip = text(&target.pod, "/status/podIP");
    ApiError::service_unavailable(&format!(
        "error trying to reach service: dial tcp {ip}:{}: connect: connection refused",
        target.port
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::clock;
    use super::super::store::{FieldValidation, Subresource};
    use super::*;

    /// A store with a Service `web` (port `http` 80 → 8080) and its Endpoints on one ready Pod.
    fn store() -> Store {
        let mut store = Store::new(1, clock::wall(), 100);
        let create = |store: &mut Store, plural: &str, object: Value| {
            let resource = store.registry().find("", "v1", plural).unwrap().clone();
            store.create(&resource, Some("default"), object, FieldValidation::Ignore).unwrap();
        };
        create(
            &mut store,
            "pods",
            json!({"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        let pods = store.registry().find("", "v1", "pods").unwrap().clone();
        let mut pod = store.get(&pods, Some("default"), "web-1").unwrap().as_ref().clone();
        pod["status"]["podIP"] = json!("10.244.0.9");
        store.update(&pods, Some("default"), "web-1", pod, Subresource::Status, FieldValidation::Ignore).unwrap();
        create(
            &mut store,
            "services",
            json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        );
        create(
            &mut store,
            "endpoints",
            json!({"metadata": {"name": "web"}, "subsets": [{
                "addresses": [{"ip": "10.244.0.9", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}}],
                "ports": [{"name": "http", "port": 8080}],
            }]}),
        );
        store
    }

    fn landing(result: Result<Target, ApiError>) -> (String, u16) {
        let target = result.unwrap();
        (text(&target.pod, "/metadata/name").to_string(), target.port)
    }

    #[test]
    fn service_ports_lead_to_the_ready_pods_port() {
        let store = store();
        for port in ["http", "80", ""] {
            assert_eq!(landing(service_target(&store, "default", "web", port)), ("web-1".to_string(), 8080), "{port}");
        }
        let error = service_target(&store, "default", "web", "grpc").unwrap_err();
        assert_eq!((error.code, error.message.as_str()), (503, "no endpoints available for service \"web\""));
        assert_eq!(service_target(&store, "default", "nope", "").unwrap_err().code, 404);
    }

    #[test]
    fn names_and_addresses_resolve_as_cluster_dns_would() {
        let store = store();
        for authority in ["web.default.svc.cluster.local:80", "web.default.svc:http", "web:80", "10.96.0.50:80"] {
            assert_eq!(landing(resolve(&store, authority)), ("web-1".to_string(), 8080), "{authority}");
        }
        assert_eq!(landing(resolve(&store, "10.244.0.9:9000")), ("web-1".to_string(), 9000));
        assert_eq!(resolve(&store, "10.1.2.3:80").unwrap_err().code, 503);
        assert_eq!(resolve(&store, "web.default.example.com:80").unwrap_err().code, 503);
    }
}
