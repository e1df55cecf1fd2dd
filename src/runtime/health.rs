//! The operator's HTTP endpoints for Prometheus and the kubelet: `/metrics`, `/healthz` (the process answers) and
//! `/readyz` (the caches have synced).

use std::convert::Infallible;
use std::io::ErrorKind;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::metrics::Metrics;

/// What `Metrics::encode` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Serves the endpoints over HTTP/1.1 on `listener` until the task is dropped or accepting fails for another reason
/// than one client giving up. `readiness` holds true once the caches have synced.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // A client that went away before it was accepted is no failure of the server.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) => continue,
            Err(e) => return Err(e),
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let response = respond(&request, &metrics, &readiness);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A client that goes away mid-request is no failure of the server.
            let _ = connection.await;
        });
    }
}

fn respond<B>(
    request: &Request<B>,
    metrics: &Metrics,
    readiness: &tokio::sync::watch::Receiver<bool>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found");
    }
    match request.uri().path() {
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok"),
        "/readyz" if *readiness.borrow() => reply(StatusCode::OK, TEXT, "ok"),
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready"),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found"),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use rstest::rstest;

    use super::*;
    use crate::machine::MachineKind;

    struct Answer {
        status: StatusCode,
        content_type: String,
        body: String,
    }

    /// Starts the server on an ephemeral port with readiness `ready` and asks it `method path`.
    async fn ask(method: Method, path: &str, ready: bool) -> Answer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.step_error(MachineKind::RayCluster);
        let (_readiness, receiver) = tokio::sync::watch::channel(ready);
        let server = tokio::spawn(serve(listener, metrics, receiver));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{address}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
        let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        server.abort();
        Answer { status, content_type, body }
    }

    #[rstest]
    #[case::healthz(Method::GET, "/healthz", false, StatusCode::OK, TEXT, "ok")]
    #[case::ready_once_synced(Method::GET, "/readyz", true, StatusCode::OK, TEXT, "ok")]
    #[case::not_ready_before_sync(Method::GET, "/readyz", false, StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready")]
    #[case::unknown_path(Method::GET, "/livez", true, StatusCode::NOT_FOUND, TEXT, "not found")]
    #[case::other_method(Method::POST, "/healthz", true, StatusCode::NOT_FOUND, TEXT, "not found")]
    #[tokio::test]
    async fn endpoints_answer(
        #[case] method: Method,
        #[case] path: &str,
        #[case] ready: bool,
        #[case] status: StatusCode,
        #[case] content_type: &str,
        #[case] body: &str,
    ) {
        let answer = ask(method, path, ready).await;
        assert_eq!((answer.status, answer.content_type.as_str(), answer.body.as_str()), (status, content_type, body));
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let answer = ask(Method::GET, "/metrics", false).await;
        assert_eq!((answer.status, answer.content_type.as_str()), (StatusCode::OK, OPENMETRICS));
        assert!(
            answer.body.contains("\nkuberay_engine_step_errors_total{machine=\"raycluster\"} 1\n"),
            "{}",
            answer.body
        );
        assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    }

    #[tokio::test]
    async fn readiness_follows_the_watch() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (readiness, receiver) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), receiver));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let readyz = || client.get(format!("http://{address}/readyz").parse().unwrap());
        assert_eq!(readyz().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        readiness.send(true).unwrap();
        assert_eq!(readyz().await.unwrap().status(), StatusCode::OK);
        server.abort();
    }
}
