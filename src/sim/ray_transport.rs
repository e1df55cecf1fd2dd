//! The Ray dashboard client's transport to the simulated cluster, in-process: a request goes to the address the
//! operator computes (`<svc>.<ns>.svc.cluster.local:8265`) through [`Sim::send`], the in-process address resolver,
//! and lands on whatever listens there (the simulated dashboard, or a real head with `--ray-dashboard`).
//!
//! A log tail (`/api/jobs/ID/logs/tail`) goes through [`Sim::tail`], which hands over the websocket's text frames
//! in-process; a refusal is mapped as the HTTP transport maps the handshake's answer.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::Sim;
use crate::ray::{DEFAULT_TIMEOUT, LogStream, RayError, Result, Transport};

/// The runtime's dashboards for an operator in the same process as `sim`: each at the address a real cluster gives it.
pub fn dashboards(sim: &Sim) -> crate::runtime::Dashboards {
    let sim = sim.clone();
    crate::runtime::Dashboards::Custom(std::sync::Arc::new(move |address: &str| -> std::sync::Arc<dyn Transport> {
        std::sync::Arc::new(SimTransport::new(sim.clone(), address))
    }))
}

#[derive(Clone)]
pub struct SimTransport {
    sim: Sim,
    address: String,
}

impl SimTransport {
    /// The dashboard at `address` (`host:port`) inside `sim`, with [`DEFAULT_TIMEOUT`] per request.
    pub fn new(sim: Sim, address: &str) -> SimTransport {
        SimTransport { sim, address: address.to_string() }
    }
}

#[async_trait]
impl Transport for SimTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let what = format!("{} http://{}{}", request.method(), self.address, request.uri());
        match tokio::time::timeout(DEFAULT_TIMEOUT, self.sim.send(&self.address, request)).await {
            Err(_) => Err(RayError::Unavailable(format!("{what}: no answer within {DEFAULT_TIMEOUT:?}"))),
            Ok(Err(refused)) => Err(RayError::Unavailable(format!("{what}: {}", refused.message))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    async fn tail(&self, path: &str) -> Result<LogStream> {
        let what = format!("GET ws://{}{path}", self.address);
        let job_id = path.strip_prefix("/api/jobs/").and_then(|rest| rest.strip_suffix("/logs/tail"));
        let job_id = job_id.ok_or_else(|| RayError::Other(format!("{what}: not a job's log tail")))?;
        match tokio::time::timeout(DEFAULT_TIMEOUT, self.sim.tail(&self.address, job_id)).await {
            Err(_) => Err(RayError::Unavailable(format!("{what}: no handshake within {DEFAULT_TIMEOUT:?}"))),
            Ok(Err(refused)) => {
                let status = http::StatusCode::from_u16(refused.code).unwrap_or(http::StatusCode::BAD_GATEWAY);
                // The dashboard's refusal comes with its HTTP reason phrase, the proxy's own errors (no such Service,
                // nothing listening) with an API reason (`NotFound`, `ServiceUnavailable`): only the first is the
                // dashboard's word on the job.
                if status.canonical_reason() == Some(refused.reason) {
                    Err(crate::ray::error::from_status(status, refused.message.as_bytes()))
                } else {
                    Err(RayError::Unavailable(format!("{what}: {}", refused.message)))
                }
            }
            Ok(Ok(frames)) => Ok(frames.map(Ok).boxed()),
        }
    }
}
