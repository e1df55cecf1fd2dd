//! Leader election on a `coordination.k8s.io` Lease, with kube-lease-manager. Only the leader executes commands; a
//! standby keeps its caches warm and steps nothing. The lease manager renews the lease `grace` seconds before it
//! expires and reports its loss at once; the executor checks leadership before every command, so a leader that
//! loses the lease stops within one API call — before another replica may take the lease, which it can only do once
//! the lease has expired.

use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// The Lease KubeRay's operator elects its leader on.
pub const LEASE_NAME: &str = "ray-operator-leader";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's name among the candidates (the Pod's name in a cluster).
    pub identity: String,
    /// Seconds a lease holds without renewal.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace: u64,
}

impl LeaderElection {
    pub fn new(namespace: &str, identity: &str) -> LeaderElection {
        LeaderElection {
            namespace: namespace.to_string(),
            lease_name: LEASE_NAME.to_string(),
            identity: identity.to_string(),
            duration: 15,
            grace: 5,
        }
    }
}

/// Whether this replica leads: always, without election; else as the lease manager says, from a background task
/// that runs as long as the receiver lives.
pub async fn elect(
    client: kube::Client,
    election: Option<&LeaderElection>,
) -> Result<watch::Receiver<bool>, kube_lease_manager::LeaseManagerError> {
    let Some(election) = election else {
        let (sender, receiver) = watch::channel(true);
        // A closed channel means a lost lease (see `leads`), so the sender lives as long as any receiver.
        tokio::spawn(async move { sender.closed().await });
        return Ok(receiver);
    };
    let manager = LeaseManagerBuilder::new(client, &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration)
        .with_grace(election.grace)
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "leader election stopped"),
            Err(error) => tracing::error!(%error, "leader election task failed"),
        }
    });
    Ok(leading)
}

/// Whether the replica leads now. A closed channel means the lease manager stopped: the lease is no longer renewed,
/// so this replica no longer leads, whatever it last heard.
pub fn leads(leading: &watch::Receiver<bool>) -> bool {
    leading.has_changed().is_ok() && *leading.borrow()
}
