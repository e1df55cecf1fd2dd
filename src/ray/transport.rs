//! How requests reach a dashboard: directly over HTTP ([`HttpTransport`], with an address [`Resolver`]), through the
//! API server's `services/proxy` ([`ProxyTransport`], KubeRay's `--use-kubernetes-proxy`), or in-process to the
//! simulated cluster (`crate::sim::ray_transport`).
//!
//! A transport answers whatever status the dashboard gave; its own errors are for requests that got no answer
//! ([`RayError::Unavailable`]). Every one of them tails job logs (a websocket): [`ProxyTransport`] through the API
//! server's upgrade of `services/proxy`, as `kubectl port-forward`-free clients do.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::{self, Message};

use super::error::{RayError, Result, from_status};

/// KubeRay's dashboard client gives every request 2 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A job's log lines as the dashboard pushes them: each item is one or more whole lines joined by `\n`, about one
/// a second. It ends when the dashboard closes the socket, about 3 s after the job reaches any terminal state (the
/// close says nothing about the outcome), or at once when the job ended before its supervisor started.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<String>> + Send>>;

#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends a request whose URI is a dashboard path (`/api/jobs/`) and answers the dashboard's answer, whatever its
    /// status.
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>>;

    /// Opens the websocket at `path` and streams its text frames.
    async fn tail(&self, path: &str) -> Result<LogStream>;
}

/// Maps the dashboard address the operator computes (`<svc>.<ns>.svc.cluster.local:8265`, the RayCluster's
/// `status.dashboardURL`) to the base URL requests go to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Resolver {
    /// `http://<address>`, as KubeRay does (an address that already has a scheme is kept).
    #[default]
    Identity,
    /// Every dashboard is this one (`--ray-dashboard http://127.0.0.1:8265`: one real head behind every cluster).
    Override(String),
}

impl Resolver {
    pub fn base_url(&self, address: &str) -> String {
        let url = match self {
            Resolver::Identity if address.starts_with("http://") || address.starts_with("https://") => {
                address.to_string()
            }
            Resolver::Identity => format!("http://{address}"),
            Resolver::Override(url) => url.clone(),
        };
        url.trim_end_matches('/').to_string()
    }
}

/// Plain HTTP to a dashboard, and its log tail over a websocket that offers no compression: a head that accepts
/// permessage-deflate then closes the tail without sending a line (spec §3.7). tungstenite has no deflate support
/// compiled in, so it never offers it.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport to the dashboard at `address`, resolved by `resolver`, with [`DEFAULT_TIMEOUT`] per request.
    pub fn new(address: &str, resolver: &Resolver) -> Result<HttpTransport> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| RayError::Other(format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpTransport::with_client(client, &resolver.base_url(address), DEFAULT_TIMEOUT))
    }

    /// A transport on a shared client (one connection pool for every dashboard) to `base_url`.
    pub fn with_client(client: reqwest::Client, base_url: &str, timeout: Duration) -> HttpTransport {
        HttpTransport { client, base: base_url.trim_end_matches('/').to_string(), timeout }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn websocket_url(&self, path: &str) -> Result<String> {
        if let Some(rest) = self.base.strip_prefix("http://") {
            Ok(format!("ws://{rest}{path}"))
        } else {
            Err(RayError::Other(format!("cannot tail logs over {}: only http:// dashboards are supported", self.base)))
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", self.base);
        let unavailable = |e: reqwest::Error| RayError::Unavailable(format!("{} {url}: {e}", parts.method));
        let answer = self
            .client
            .request(parts.method.clone(), &url)
            .headers(parts.headers.clone())
            .body(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unavailable)?;
        let mut response = http::Response::new(Bytes::new());
        *response.status_mut() = answer.status();
        *response.headers_mut() = answer.headers().clone();
        *response.body_mut() = answer.bytes().await.map_err(unavailable)?;
        Ok(response)
    }

    async fn tail(&self, path: &str) -> Result<LogStream> {
        let url = self.websocket_url(path)?;
        let connected = tokio::time::timeout(self.timeout, tokio_tungstenite::connect_async(url.as_str())).await;
        let socket = match connected {
            Err(_) => {
                return Err(RayError::Unavailable(format!("GET {url}: no handshake within {:?}", self.timeout)));
            }
            Ok(Err(tungstenite::Error::Http(answer))) => {
                return Err(from_status(answer.status(), answer.body().as_deref().unwrap_or_default()));
            }
            Ok(Err(e)) => return Err(RayError::Unavailable(format!("GET {url}: {e}"))),
            Ok(Ok((socket, _))) => socket,
        };
        Ok(Box::pin(log_frames(socket)))
    }
}

/// The text of a log tail's frames, until the server closes. Pings are answered by tungstenite as the stream is
/// read.
pub fn log_frames<S>(socket: S) -> impl Stream<Item = Result<String>> + Send + 'static
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin + Send + 'static,
{
    futures::stream::unfold(Some(socket), |socket| async move {
        let mut socket = socket?;
        loop {
            match socket.next().await? {
                Ok(Message::Text(text)) => return Some((Ok(text.as_str().to_string()), Some(socket))),
                Ok(Message::Binary(data)) => {
                    return Some((Ok(String::from_utf8_lossy(&data).into_owned()), Some(socket)));
                }
                Ok(Message::Close(_))
                | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(e) => return Some((Err(RayError::Unavailable(format!("the log tail broke off: {e}"))), None)),
            }
        }
    })
}

/// Through the API server: `/api/v1/namespaces/<ns>/services/<svc>:dashboard/proxy/<path>`, with the operator's
/// Kubernetes client (KubeRay's `--use-kubernetes-proxy`).
#[derive(Clone)]
pub struct ProxyTransport {
    client: kube::Client,
    prefix: String,
}

impl ProxyTransport {
    /// The dashboard behind the `dashboard` port of Service `service` (the head Service) in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, service: &str) -> ProxyTransport {
        ProxyTransport { client, prefix: format!("/api/v1/namespaces/{namespace}/services/{service}:dashboard/proxy") }
    }
}

#[async_trait]
impl Transport for ProxyTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{path}", self.prefix);
        let what = format!("{} {uri}", parts.method);
        parts.uri = uri.parse().map_err(|e| RayError::Other(format!("{what}: {e}")))?;
        let request = http::Request::from_parts(parts, kube::client::Body::from(body));
        let exchange = async {
            let answer = self.client.send(request).await.map_err(|e| RayError::Unavailable(format!("{what}: {e}")))?;
            let (parts, body) = answer.into_parts();
            let body = body.collect().await.map_err(|e| RayError::Unavailable(format!("{what}: {e}")))?.to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        let response = tokio::time::timeout(DEFAULT_TIMEOUT, exchange)
            .await
            .map_err(|_| RayError::Unavailable(format!("{what}: no answer within {DEFAULT_TIMEOUT:?}")))??;
        match api_server_refusal(&response) {
            Some(message) => Err(RayError::Unavailable(format!("{what}: the API server answered {message}"))),
            None => Ok(response),
        }
    }

    /// The websocket handshake through the API server, which upgrades the connection and relays it to the dashboard.
    /// kube's own `Client::connect` insists on Kubernetes' stream subprotocols, which a dashboard never picks, so the
    /// handshake is checked here, with no subprotocol and no compression offered.
    async fn tail(&self, path: &str) -> Result<LogStream> {
        let uri = format!("{}{path}", self.prefix);
        let key = tungstenite::handshake::client::generate_key();
        let request = http::Request::get(&uri)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            .header(http::header::SEC_WEBSOCKET_KEY, &key)
            .body(kube::client::Body::empty())
            .map_err(|e| RayError::Other(format!("GET {uri}: {e}")))?;
        let handshake = async {
            let answer =
                self.client.send(request).await.map_err(|e| RayError::Unavailable(format!("GET {uri}: {e}")))?;
            if answer.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                let (parts, body) = answer.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let response = http::Response::from_parts(parts, body);
                return Err(match api_server_refusal(&response) {
                    Some(message) => RayError::Unavailable(format!("GET {uri}: the API server answered {message}")),
                    None => from_status(response.status(), response.body()),
                });
            }
            let accepted = answer.headers().get(http::header::SEC_WEBSOCKET_ACCEPT);
            if accepted.is_none_or(|accept| accept.as_bytes() != derive_accept_key(key.as_bytes()).as_bytes()) {
                return Err(RayError::Unavailable(format!("GET {uri}: the upgrade's accept key does not match")));
            }
            hyper::upgrade::on(answer).await.map_err(|e| RayError::Unavailable(format!("GET {uri}: {e}")))
        };
        let upgraded = tokio::time::timeout(DEFAULT_TIMEOUT, handshake)
            .await
            .map_err(|_| RayError::Unavailable(format!("GET {uri}: no handshake within {DEFAULT_TIMEOUT:?}")))??;
        let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        Ok(Box::pin(log_frames(socket)))
    }
}

/// The API server's own error (a `Status` object: no endpoints, no such Service, forbidden), as opposed to the
/// dashboard's answer passed through it (a dashboard never answers a `Status`).
fn api_server_refusal(response: &http::Response<Bytes>) -> Option<String> {
    if response.status().is_success() {
        return None;
    }
    let status: Value = serde_json::from_slice(response.body()).ok()?;
    (status.get("kind")? == "Status").then(|| {
        let message = status.get("message").and_then(Value::as_str).unwrap_or_default();
        format!("{}: {message}", response.status().as_u16())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rstest::rstest;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

    use super::*;

    #[rstest]
    #[case::cluster_dns(
        Resolver::Identity,
        "c-head-svc.ns.svc.cluster.local:8265",
        "http://c-head-svc.ns.svc.cluster.local:8265"
    )]
    #[case::with_scheme(Resolver::Identity, "http://10.0.0.1:8265/", "http://10.0.0.1:8265")]
    #[case::override_all(Resolver::Override("http://127.0.0.1:8265/".into()), "c-head-svc.ns.svc.cluster.local:8265", "http://127.0.0.1:8265")]
    fn addresses_resolve_to_base_urls(#[case] resolver: Resolver, #[case] address: &str, #[case] url: &str) {
        assert_eq!(resolver.base_url(address), url);
    }

    #[rstest]
    #[case::no_endpoints(503, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no endpoints available for service \"c-head-svc\"","reason":"ServiceUnavailable","code":503}"#, Some("503: no endpoints available for service \"c-head-svc\""))]
    #[case::no_service(
        404,
        r#"{"kind":"Status","status":"Failure","message":"services \"x\" not found","reason":"NotFound","code":404}"#,
        Some("404: services \"x\" not found")
    )]
    #[case::dashboard_404(404, "Job nope does not exist", None)]
    #[case::dashboard_json(200, r#"{"kind":"Status"}"#, None)]
    fn the_api_servers_refusals_are_told_from_the_dashboards(
        #[case] status: u16,
        #[case] body: &'static str,
        #[case] expected: Option<&str>,
    ) {
        let mut response = http::Response::new(Bytes::from_static(body.as_bytes()));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        assert_eq!(api_server_refusal(&response).as_deref(), expected);
    }

    /// A websocket server on loopback that records the handshake's headers, then sends `frames` and closes; or
    /// refuses the handshake with 404 when `frames` is `None`.
    #[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
    async fn tail_server(frames: Option<Vec<Message>>) -> (HttpTransport, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let headers = Arc::new(Mutex::new(Vec::new()));
        let seen = headers.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let refuse = frames.is_none();
            let callback = move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
                let mut names: Vec<String> = request.headers().keys().map(|k| k.as_str().to_string()).collect();
                names.push(request.uri().path().to_string());
                *seen.lock().unwrap() = names;
                if refuse {
                    let mut refusal = ErrorResponse::new(Some("Job nope does not exist".to_string()));
                    *refusal.status_mut() = http::StatusCode::NOT_FOUND;
                    return Err(refusal);
                }
                Ok(response)
            };
            let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
            for frame in frames.unwrap_or_default() {
                futures::SinkExt::send(&mut socket, frame).await.unwrap();
            }
            let _ = socket.close(None).await;
            while socket.next().await.is_some() {}
        });
        (HttpTransport::with_client(reqwest::Client::new(), &url, DEFAULT_TIMEOUT), headers)
    }

    #[tokio::test]
    async fn the_tail_streams_text_frames_until_the_close_and_offers_no_compression() {
        let frames = vec![
            Message::text("0\n1\n2\n"),
            Message::Ping(Bytes::from_static(b"p")),
            Message::text("3\n"),
            Message::binary(Bytes::from_static(b"4\n")),
        ];
        let (transport, headers) = tail_server(Some(frames)).await;
        let stream = transport.tail("/api/jobs/job-abc/logs/tail").await.unwrap();
        let received: Vec<String> = stream.map(|frame| frame.unwrap()).collect().await;
        assert_eq!(received, ["0\n1\n2\n", "3\n", "4\n"]);
        let headers = headers.lock().unwrap().clone();
        assert_eq!(headers.last().map(String::as_str), Some("/api/jobs/job-abc/logs/tail"));
        assert!(headers.iter().any(|h| h == "sec-websocket-key"), "{headers:?}");
        assert!(!headers.iter().any(|h| h == "sec-websocket-extensions"), "{headers:?}");
    }

    #[tokio::test]
    async fn a_refused_tail_handshake_is_the_dashboards_error() {
        let (transport, _) = tail_server(None).await;
        let error = transport.tail("/api/jobs/nope/logs/tail").await.err().unwrap();
        assert_eq!(error, RayError::NotFound("Job nope does not exist".into()));
    }

    #[tokio::test]
    async fn an_unreachable_dashboard_is_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let transport = HttpTransport::with_client(reqwest::Client::new(), &url, DEFAULT_TIMEOUT);
        let error = transport.send(http::Request::get("/api/version").body(Bytes::new()).unwrap()).await.unwrap_err();
        assert!(
            matches!(&error, RayError::Unavailable(m) if m.starts_with(&format!("GET {url}/api/version: "))),
            "{error}"
        );
        assert!(matches!(transport.tail("/api/jobs/x/logs/tail").await.err().unwrap(), RayError::Unavailable(_)));
    }
}
