//! The REST API over HTTP: paths to resources, verbs to store operations, query parameters and content types as
//! the API server reads them, and answers as it writes them.
//!
//! A `services/proxy` request with `Upgrade: websocket` and a `Sec-WebSocket-Key` is proxied as a websocket, as
//! the API server proxies upgrades: what the process refuses is answered as it answered; what it accepts is
//! `101 Switching Protocols` (with the process's headers), and then its frames, as text, ending with a close 1000.
//! A client that offers `permessage-deflate` gets the extension accepted and then, when the first frame would go,
//! a close 1000 without data: a real Ray dashboard fails that way (`../shared/spec/ray-dashboard-api.md` §3.7), and
//! the websocket layer is the one place that knows what was offered. Only connections that can be upgraded
//! ([`super::Sim::serve`]) get websockets; the in-process transport answers 400 (in-process, use
//! [`super::Sim::tail`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::StreamExt;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::Shared;
use super::controllers::{self, LogCursor, LogOptions};
use super::error::ApiError;
use super::network::{self, Process};
use super::openapi;
use super::protobuf::{self, ProtobufError};
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{
    DeleteOptions, Deleted, FieldValidation, ListOptions, PatchKind, PatchRequest, Propagation, Store, Subresource,
};
use super::table::{self, IncludeObject, Rendering};
use super::watch::{self, WatchPlan, present};

/// The body of every answer: a whole JSON document, or a watch stream.
pub type SimBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// What the server answers with.
enum Reply {
    Json(StatusCode, Value),
    Text(String),
    Watch(Box<WatchPlan>),
    /// `pods/NAME/log?follow=true`: the container's output, streamed until it ends.
    FollowLog(Box<LogCursor>),
    /// A request for a process inside the cluster (`services/proxy`).
    Forward(Arc<dyn Process>, Box<network::Request>),
    /// A websocket request for a process inside the cluster (`services/proxy` with `Upgrade: websocket`).
    WebSocket(Arc<dyn Process>, Box<network::Request>),
}

/// The version the simulated cluster reports (the Kubernetes API it follows).
pub(crate) const GIT_VERSION: &str = "v1.33.0";

/// How often a log follower looks for lines written without any object changing (a change wakes it at once).
const LOG_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A watch without `timeoutSeconds` ends after this long (the API server picks 30–60 minutes at random).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long a websocket that sent its close waits for the client's, so the close handshake completes.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub async fn handle(shared: Arc<Shared>, mut parts: http::request::Parts, body: Bytes) -> Response<SimBody> {
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut warnings = Vec::new();
    let mut response = match route(&shared, &parts, &body, &mut warnings) {
        Ok(Reply::Json(status, value)) => json_response(status, &value),
        Ok(Reply::Text(text)) => text_response(Full::new(Bytes::from(text)).boxed_unsync()),
        Ok(Reply::FollowLog(cursor)) => {
            let frames = follow_log(shared, *cursor).map(|chunk| Ok(http_body::Frame::data(chunk)));
            text_response(StreamBody::new(frames).boxed_unsync())
        }
        Ok(Reply::Forward(process, request)) => {
            let (parts, body) = process.call(*request).await.into_parts();
            Response::from_parts(parts, Full::new(body).boxed_unsync())
        }
        Ok(Reply::WebSocket(process, request)) => open_websocket(process.as_ref(), *request, upgrade).await,
        Ok(Reply::Watch(plan)) => {
            let frames = watch::stream(shared, *plan).map(|chunk| Ok(http_body::Frame::data(chunk)));
            let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
            response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            let mut response = json_response(
                StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &error.status(),
            );
            if error.code == 429 {
                response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            response
        }
    };
    for warning in warnings {
        // RFC 7234 warning headers, code 299, as the API server sends them (kubectl prints them).
        let text = format!("299 - {}", serde_json::to_string(&warning).unwrap_or_default());
        if let Ok(value) = header::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// A write whose warnings go to the answer.
fn write<R>(shared: &Shared, warnings: &mut Vec<String>, f: impl FnOnce(&mut Store) -> R) -> R {
    shared.write(|store| {
        let result = f(store);
        warnings.extend(store.take_warnings());
        result
    })
}

fn text_response(body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

/// The body of `pods/NAME/log?follow=true`: what was written so far, then each line as it is written, until the
/// container terminates or its Pod is deleted.
fn follow_log(shared: Arc<Shared>, cursor: LogCursor) -> impl futures::Stream<Item = Bytes> + Send {
    let changed = shared.subscribe();
    futures::stream::unfold(Some((shared, cursor, changed)), |following| async move {
        let (shared, mut cursor, mut changed) = following?;
        loop {
            let chunk = shared.read(|store| cursor.read(store));
            if chunk.ended {
                return (!chunk.text.is_empty()).then(|| (Bytes::from(chunk.text), None));
            }
            if !chunk.text.is_empty() {
                return Some((Bytes::from(chunk.text), Some((shared, cursor, changed))));
            }
            // The sender lives in `shared`, so `changed` cannot fail while this waits.
            tokio::select! {
                _ = changed.changed() => {}
                () = tokio::time::sleep(LOG_POLL_INTERVAL) => {}
            }
        }
    })
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<SimBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// The request's query, decoded (`+` is a space, as in a form).
fn query(parts: &http::request::Parts) -> BTreeMap<String, String> {
    let decode = |text: &str| percent_decode_str(&text.replace('+', " ")).decode_utf8_lossy().into_owned();
    parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// A request for a resource: `/api/v1/namespaces/NS/PLURAL/NAME/SUB` and its shorter forms.
struct Target {
    resource: ResourceType,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Subresource,
}

fn route(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    warnings: &mut Vec<String>,
) -> Result<Reply, ApiError> {
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get_only = |reply: Option<Value>| -> Result<Reply, ApiError> {
        if parts.method != Method::GET {
            return Err(ApiError::method_not_allowed(parts.method.as_str()));
        }
        reply.map(|v| Reply::Json(StatusCode::OK, v)).ok_or_else(ApiError::no_such_path)
    };
    match segments.as_slice() {
        ["healthz" | "livez" | "readyz"] => Ok(Reply::Text("ok".to_string())),
        ["version"] => get_only(Some(version())),
        ["api"] => {
            let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            get_only(Some(shared.read(|s| s.registry().core_versions(host))))
        }
        ["apis"] => get_only(Some(shared.read(|s| s.registry().group_list()))),
        ["api", version] => get_only(shared.read(|s| s.registry().resource_list("", version))),
        ["apis", group] => get_only(shared.read(|s| s.registry().group_document(group))),
        ["apis", group, version] => get_only(shared.read(|s| s.registry().resource_list(group, version))),
        ["openapi", "v3"] => get_only(Some(shared.read(|s| openapi::index(s.registry())))),
        ["openapi", "v3", rest @ ..] => get_only(shared.read(|s| openapi::document(s.registry(), &rest.join("/")))),
        ["api", "v1", "namespaces", namespace, "pods", name, "log"] => {
            if parts.method != Method::GET {
                return Err(ApiError::method_not_allowed(parts.method.as_str()));
            }
            let query = query(parts);
            let options = LogOptions {
                container: query.get("container").filter(|c| !c.is_empty()).cloned(),
                tail_lines: query.get("tailLines").and_then(|t| t.parse().ok()),
                timestamps: query.get("timestamps").is_some_and(|t| t == "true"),
            };
            let follow = query.get("follow").is_some_and(|f| f == "true");
            shared.read(|s| {
                let mut cursor = controllers::pod_log(s, namespace, name, &options)?;
                Ok(if follow { Reply::FollowLog(Box::new(cursor)) } else { Reply::Text(cursor.read(s).text) })
            })
        }
        ["api", "v1", "namespaces", namespace, "services", service, "proxy", ..] => {
            proxy(shared, parts, body, namespace, service)
        }
        ["api", version, rest @ ..] => resource_request(shared, parts, body, "", version, rest, warnings),
        ["apis", group, version, rest @ ..] => resource_request(shared, parts, body, group, version, rest, warnings),
        _ => Err(ApiError::no_such_path()),
    }
}

/// `services/[SCHEME:]NAME[:PORT]/proxy/PATH`: the request, with PATH as its path, to what listens behind that
/// Service port.
fn proxy(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    namespace: &str,
    service: &str,
) -> Result<Reply, ApiError> {
    let (name, port) = match service.split(':').collect::<Vec<_>>().as_slice() {
        [name] => (*name, ""),
        [name, port] => (*name, *port),
        [_scheme, name, port] => (*name, *port),
        _ => return Err(ApiError::bad_request(format!("invalid service request {service}"))),
    };
    let target = shared.read(|s| network::service_target(s, namespace, name, port))?;
    let process = shared.process(&target).ok_or_else(|| network::connection_refused(&target))?;
    let path = parts.uri.path();
    let rest = path.find("/proxy").map_or("", |at| &path[at + "/proxy".len()..]);
    let rest = if rest.is_empty() { "/" } else { rest };
    let uri = match parts.uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_string(),
    };
    let mut request = http::Request::new(Bytes::copy_from_slice(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri.parse().map_err(|_| ApiError::bad_request(format!("invalid proxied path {uri}")))?;
    *request.headers_mut() = parts.headers.clone();
    if is_websocket(&parts.headers) {
        return Ok(Reply::WebSocket(process, Box::new(request)));
    }
    Ok(Reply::Forward(process, Box::new(request)))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers.get(header::UPGRADE).and_then(|u| u.to_str().ok()).unwrap_or_default();
    upgrade.trim().eq_ignore_ascii_case("websocket") && headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

fn offers_deflate(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offer| offer.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("permessage-deflate"))
}

/// Answers a websocket request for `process`: its refusal, or `101` and a task that speaks the websocket once the
/// connection is handed over.
async fn open_websocket(
    process: &dyn Process,
    request: network::Request,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<SimBody> {
    let Some(upgrade) = upgrade else {
        let error = ApiError::bad_request(
            "websocket upgrades are served over TCP (Sim::serve); in-process, use Sim::tail".to_string(),
        );
        return json_response(StatusCode::BAD_REQUEST, &error.status());
    };
    let deflate = offers_deflate(request.headers());
    let key = request.headers().get(header::SEC_WEBSOCKET_KEY).map(|key| key.as_bytes().to_vec()).unwrap_or_default();
    let (mut parts, messages) = match process.websocket(request).await {
        Ok(accepted) => accepted.into_parts(),
        Err(refused) => {
            let (parts, body) = refused.into_parts();
            return Response::from_parts(parts, Full::new(body).boxed_unsync());
        }
    };
    parts.status = StatusCode::SWITCHING_PROTOCOLS;
    let handshake = [
        (header::UPGRADE, "websocket".to_string()),
        (header::CONNECTION, "upgrade".to_string()),
        (header::SEC_WEBSOCKET_ACCEPT, tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key)),
    ];
    let extension = deflate.then(|| (header::SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate".to_string()));
    for (name, value) in handshake.into_iter().chain(extension) {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            parts.headers.insert(name, value);
        }
    }
    tokio::spawn(async move {
        // A client that leaves before the handover leaves nothing to speak to.
        if let Ok(upgraded) = upgrade.await {
            let io = hyper_util::rt::TokioIo::new(upgraded);
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                io,
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            speak(socket, messages, deflate).await;
        }
    });
    Response::from_parts(parts, Full::new(Bytes::new()).boxed_unsync())
}

/// Sends `messages` as text frames, then a close 1000; with `deflate`, the close instead of the first frame. Stops
/// when the client closes or goes away.
async fn speak<S>(socket: tokio_tungstenite::WebSocketStream<S>, mut messages: network::Messages, deflate: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(text) if !deflate => {
                    if sink.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                _ => break,
            },
            // tungstenite answers pings itself; the tail reads nothing else, as a real dashboard.
            received = incoming.next() => if !matches!(received, Some(Ok(_))) {
                return;
            },
        }
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    if sink.send(Message::Close(Some(close))).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = incoming.next().await {} }).await;
    }
}

fn target(shared: &Shared, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let namespace_subresource = matches!(rest, ["namespaces", _, "status" | "finalize"]);
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, tail @ ..] if !namespace_subresource => (Some(*namespace), {
            let mut path = vec![*plural];
            path.extend_from_slice(tail);
            path
        }),
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
        _ => return Err(ApiError::no_such_path()),
    };
    let resource =
        shared.read(|s| s.registry().find(group, version, plural).cloned()).ok_or_else(ApiError::no_such_path)?;
    let misplaced = matches!((resource.namespaced, namespace, name), (false, Some(_), _) | (true, None, Some(_)));
    let subresource = match subresource {
        None => Subresource::Main,
        Some("status") if resource.status_subresource => Subresource::Status,
        Some(_) => return Err(ApiError::no_such_path()),
    };
    if misplaced {
        return Err(ApiError::no_such_path());
    }
    Ok(Target {
        resource,
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource,
    })
}

fn resource_request(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    group: &str,
    version: &str,
    rest: &[&str],
    warnings: &mut Vec<String>,
) -> Result<Reply, ApiError> {
    let target = target(shared, group, version, rest)?;
    let query = query(parts);
    let field_validation = FieldValidation::parse(query.get("fieldValidation").map_or("", String::as_str))?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if matches!(parts.method, Method::POST | Method::PUT)
        && !body.is_empty()
        && !matches!(media_type, "" | "application/json" | PROTOBUF)
    {
        return Err(ApiError::unsupported_media_type(media_type, &["application/json", PROTOBUF]));
    }
    if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request("dryRun is not supported by the simulated cluster"));
    }
    let namespace = target.namespace.as_deref();
    let resource = &target.resource;
    if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        && let Some(refused) =
            shared.refuse_write(resource.group_resource(), target.name.as_deref().unwrap_or_default())
    {
        return Err(refused);
    }
    let include = IncludeObject::parse(query.get("includeObject").map_or("", String::as_str));
    let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let rendering = Rendering::negotiate(accept, include).ok_or_else(ApiError::not_acceptable)?;
    let ok = |object: &Value| Reply::Json(StatusCode::OK, present(resource, &target.version, object));
    match (&parts.method, target.name.as_deref()) {
        (&Method::GET, None) if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) => {
            watch_plan(shared, &target, &query, rendering).map(|plan| Reply::Watch(Box::new(plan)))
        }
        (&Method::GET, None) => {
            let options = list_options(resource, &query)?;
            let page = shared.read(|s| s.list(resource, namespace, &options))?;
            let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(token) = page.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(remaining) = page.remaining_item_count {
                metadata["remainingItemCount"] = json!(remaining);
            }
            let document = match rendering {
                Rendering::Object => list_document(resource, &target.version, &page.items, metadata),
                Rendering::Metadata => json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                    "items": page.items.iter().map(|o| table::partial_object_metadata(o)).collect::<Vec<_>>(),
                }),
                Rendering::Table(include) => {
                    let objects: Vec<&Value> = page.items.iter().map(|o| o.as_ref()).collect();
                    let now = shared.read(|s| s.now());
                    table::table(resource, &target.version, &objects, include, metadata, now)
                }
            };
            Ok(Reply::Json(StatusCode::OK, document))
        }
        (&Method::GET, Some(name)) => {
            let (object, now) = shared.read(|s| s.get(resource, namespace, name).map(|o| (o, s.now())))?;
            Ok(Reply::Json(StatusCode::OK, rendering.one(resource, &target.version, &object, now)))
        }
        (&Method::POST, None) => {
            let body = parse_body(body, media_type)?;
            let created = write(shared, warnings, |s| s.create(resource, namespace, body, field_validation))?;
            Ok(Reply::Json(StatusCode::CREATED, present(resource, &target.version, &created)))
        }
        (&Method::PUT, Some(name)) => {
            let body = parse_body(body, media_type)?;
            write(shared, warnings, |s| s.update(resource, namespace, name, body, target.subresource, field_validation))
                .map(|o| ok(&o))
        }
        (&Method::PATCH, Some(name)) => {
            let force = query.get("force").is_some_and(|f| f == "true");
            let kind = match media_type {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" => PatchKind::Apply { force },
                other => {
                    return Err(ApiError::unsupported_media_type(
                        other,
                        &[
                            "application/json-patch+json",
                            "application/merge-patch+json",
                            "application/apply-patch+yaml",
                            "application/strategic-merge-patch+json",
                        ],
                    ));
                }
            };
            let patch = if matches!(kind, PatchKind::Apply { .. }) { parse_yaml(body)? } else { parse_json(body)? };
            let manager = query.get("fieldManager").map(String::as_str);
            let request = PatchRequest {
                kind,
                body: &patch,
                subresource: target.subresource,
                field_manager: manager,
                field_validation,
            };
            let (object, created) = write(shared, warnings, |s| s.patch(resource, namespace, name, &request))?;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(Reply::Json(status, present(resource, &target.version, &object)))
        }
        (&Method::DELETE, Some(name)) if target.subresource == Subresource::Main => {
            let options = delete_options(&query, body)?;
            match shared.write(|s| s.delete(resource, namespace, name, &options))? {
                Deleted::Pending(object) => Ok(ok(&object)),
                Deleted::Gone(object) if resource.delete_returns_object => Ok(ok(&object)),
                Deleted::Gone(object) => Ok(Reply::Json(StatusCode::OK, deleted_status(resource, &object))),
            }
        }
        (&Method::DELETE, None) => {
            let list = list_options(resource, &query)?;
            let options = delete_options(&query, body)?;
            let deleted = shared.write(|s| s.delete_collection(resource, namespace, &list, &options))?;
            let resource_version = shared.read(|s| s.resource_version());
            let metadata = json!({"resourceVersion": resource_version.to_string()});
            Ok(Reply::Json(StatusCode::OK, list_document(resource, &target.version, &deleted, metadata)))
        }
        (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// A list as the API server writes it: built-in kinds' items carry no apiVersion and kind, custom resources' do.
fn list_document(resource: &ResourceType, version: &str, items: &[Arc<Value>], metadata: Value) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|object| {
            let mut item = present(resource, version, object);
            if !resource.custom
                && let Some(map) = item.as_object_mut()
            {
                map.remove("apiVersion");
                map.remove("kind");
            }
            item
        })
        .collect();
    json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(version),
        "metadata": metadata,
        "items": items,
    })
}

fn deleted_status(resource: &ResourceType, object: &Value) -> Value {
    let name = object.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let uid = object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid},
    })
}

/// The media type of Kubernetes' protobuf encoding, which typed clients (kubectl's among them) send.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// A created or replaced object: JSON, or protobuf for the kinds [`protobuf`] knows.
fn parse_body(body: &[u8], media_type: &str) -> Result<Value, ApiError> {
    if media_type != PROTOBUF {
        return parse_json(body);
    }
    protobuf::decode(body).map_err(|error| match error {
        ProtobufError::UnknownKind(_) => ApiError::unsupported_media_type(PROTOBUF, &["application/json"]),
        ProtobufError::Malformed => ApiError::bad_request(format!("error decoding request body: {error}")),
    })
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

/// An applied configuration: YAML, or JSON (which is YAML too).
fn parse_yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).or_else(|_| {
        let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    })
}

fn list_options(resource: &ResourceType, query: &BTreeMap<String, String>) -> Result<ListOptions, ApiError> {
    let text = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
    let limit = match query.get("limit").filter(|v| !v.is_empty()) {
        Some(limit) => {
            Some(limit.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid limit: {limit}")))?)
        }
        None => None,
    };
    Ok(ListOptions {
        labels: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").map(String::as_str).unwrap_or_default(),
            &resource.selectable_fields,
        )?,
        limit,
        continue_token: text("continue"),
        resource_version: text("resourceVersion"),
        resource_version_match: text("resourceVersionMatch"),
    })
}

fn watch_plan(
    shared: &Shared,
    target: &Target,
    query: &BTreeMap<String, String>,
    rendering: Rendering,
) -> Result<WatchPlan, ApiError> {
    let options = list_options(&target.resource, query)?;
    let send_initial_events = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let start =
        shared.read(|s| s.watch_start(&target.resource, target.namespace.as_deref(), &options, send_initial_events));
    if let Err(error) = &start
        && error.code != 410
    {
        return Err(error.clone());
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    Ok(WatchPlan {
        resource: target.resource.clone(),
        version: target.version.clone(),
        namespace: target.namespace.clone(),
        labels: options.labels,
        fields: options.fields,
        start,
        bookmarks: query.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
        initial_events_end: send_initial_events,
        timeout,
        rendering,
    })
}

/// `DeleteOptions` from the body (as kube and kubectl send them) or the query.
fn delete_options(query: &BTreeMap<String, String>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body: Value = if body.is_empty() { json!({}) } else { parse_json(body)? };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    let policy = text(body.get("propagationPolicy")).or_else(|| query.get("propagationPolicy").cloned());
    let propagation = match policy.as_deref() {
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(other) => return Err(ApiError::bad_request(format!("propagationPolicy: Unsupported value: \"{other}\""))),
        None => match body.get("orphanDependents").and_then(Value::as_bool) {
            Some(true) => Some(Propagation::Orphan),
            Some(false) => Some(Propagation::Background),
            None => None,
        },
    };
    Ok(DeleteOptions {
        propagation,
        precondition_uid: text(body.pointer("/preconditions/uid")),
        precondition_resource_version: text(body.pointer("/preconditions/resourceVersion")),
    })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
