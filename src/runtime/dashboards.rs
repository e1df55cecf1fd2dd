//! How the runtime reaches the Ray dashboard at the address a machine computed (`<svc>.<ns>.svc.<domain>:<port>`):
//! directly over HTTP (an address resolver may send every dashboard to one URL), through the API server's
//! `services/proxy` (`--use-kubernetes-proxy`), or through any other transport (the simulated cluster in-process).

use std::sync::Arc;

use crate::machine::{DashboardAnswer, DashboardJob};
use crate::ray::transport::{DEFAULT_TIMEOUT, HttpTransport, ProxyTransport, Resolver, Transport};
use crate::ray::{DashboardClient, LogStream, RayError, SubmitRequest};

/// A transport for a dashboard address, for transports the runtime does not know (the simulated cluster's).
pub type Connect = Arc<dyn Fn(&str) -> Arc<dyn Transport> + Send + Sync>;

#[derive(Clone)]
pub enum Dashboards {
    /// Over HTTP, every dashboard on one client (one connection pool), at the URL the resolver maps it to.
    Http {
        client: reqwest::Client,
        resolver: Resolver,
    },
    /// Through the API server: the Service and namespace are read off the address.
    Proxy(kube::Client),
    Custom(Connect),
}

impl Dashboards {
    pub fn http(resolver: Resolver) -> Result<Dashboards, RayError> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| RayError::Other(format!("cannot build an HTTP client: {e}")))?;
        Ok(Dashboards::Http { client, resolver })
    }

    fn client(&self, address: &str) -> Result<DashboardClient, RayError> {
        match self {
            Dashboards::Http { client, resolver } => Ok(DashboardClient::new(HttpTransport::with_client(
                client.clone(),
                &resolver.base_url(address),
                DEFAULT_TIMEOUT,
            ))),
            Dashboards::Proxy(client) => {
                let host = address.split(':').next().unwrap_or_default();
                let mut labels = host.split('.');
                let (service, namespace) = (labels.next().unwrap_or_default(), labels.next().unwrap_or("default"));
                Ok(DashboardClient::new(ProxyTransport::new(client.clone(), namespace, service)))
            }
            Dashboards::Custom(connect) => Ok(DashboardClient::with_transport(connect(address))),
        }
    }

    /// `GET /api/jobs/<id>`, as the machine reads it.
    pub async fn job_info(&self, address: &str, job_id: &str) -> DashboardAnswer {
        let answer = match self.client(address) {
            Ok(client) => client.job_info(job_id).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(info) => DashboardAnswer::Job(DashboardJob {
                status: info.status.name().to_string(),
                message: info.message.unwrap_or_default(),
                start_time: info.start_time,
                end_time: info.end_time,
            }),
            Err(RayError::NotFound(_)) => DashboardAnswer::NotFound,
            Err(error) => DashboardAnswer::Unreachable { message: error.to_string() },
        }
    }

    /// The websocket tail of a job's output: the backlog, then new lines as they come, until the job has ended.
    pub async fn tail(&self, address: &str, job_id: &str) -> Result<LogStream, RayError> {
        self.client(address)?.tail_job_logs(job_id).await
    }

    /// Submits a job; a submission id the dashboard already knows is success (it was submitted before).
    pub async fn submit(&self, address: &str, submission: &serde_json::Value) -> Result<(), String> {
        let request: SubmitRequest = serde_json::from_value(submission.clone())
            .map_err(|e| format!("a submission the client cannot send: {e}"))?;
        match self.client(address).map_err(|e| e.to_string())?.submit_job(&request).await {
            Ok(_) | Err(RayError::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Stops a job; one the dashboard does not know is stopped already.
    pub async fn stop(&self, address: &str, job_id: &str) -> Result<(), String> {
        match self.client(address).map_err(|e| e.to_string())?.stop_job(job_id).await {
            Ok(_) | Err(RayError::NotFound(_)) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }
}
