//! The Ray dashboard client's transport to the simulated cluster, in-process: a request goes to the address the
//! operator computes (`<svc>.<ns>.svc.cluster.local:8265`) through [`Sim::send`], the in-process address resolver,
//! and lands on whatever listens there (the simulated dashboard, or a real head with `--ray-dashboard`).
//!
//! It does not tail logs (the simulated dashboard has no websocket yet): [`crate::ray::RayError::Unsupported`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::Sim;
use crate::ray::{DEFAULT_TIMEOUT, RayError, Result, Transport};

#[derive(Clone)]
pub struct SimTransport {
    sim: Sim,
    address: String,
    timeout: Duration,
}

impl SimTransport {
    /// The dashboard at `address` (`host:port`) inside `sim`, with [`DEFAULT_TIMEOUT`] per request.
    pub fn new(sim: Sim, address: &str) -> SimTransport {
        SimTransport { sim, address: address.to_string(), timeout: DEFAULT_TIMEOUT }
    }

    pub fn with_timeout(self, timeout: Duration) -> SimTransport {
        SimTransport { timeout, ..self }
    }
}

#[async_trait]
impl Transport for SimTransport {
    async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let what = format!("{} http://{}{}", request.method(), self.address, request.uri());
        match tokio::time::timeout(self.timeout, self.sim.send(&self.address, request)).await {
            Err(_) => Err(RayError::Unavailable(format!("{what}: no answer within {:?}", self.timeout))),
            Ok(Err(refused)) => Err(RayError::Unavailable(format!("{what}: {}", refused.message))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}
