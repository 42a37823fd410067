//! Leader election on a `coordination.k8s.io` Lease, so that of several
//! operator replicas exactly one reconciles. A replica that loses the lease
//! stops reconciling at once; on shutdown the leader gives the lease up so a
//! standby takes over without waiting for it to expire.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;

/// Lease timing: a standby may take over this long after the leader's last
/// renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader renews this long before its lease would expire.
pub const RENEW_GRACE: Duration = Duration::from_secs(5);

pub struct Election {
    /// `true` while this replica holds the lease.
    pub leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Election {
    /// Joins the election for `lease` in `namespace` as `identity`.
    pub async fn join(
        client: Client,
        namespace: &str,
        lease: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, lease)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_DURATION.as_secs())
            .with_grace(RENEW_GRACE.as_secs())
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Waits until this replica leads.
    pub async fn until_leading(&mut self) {
        let _ = self.leading.wait_for(|l| *l).await;
    }

    /// Resolves when this replica stops leading (or the election ends).
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|l| !*l).await;
    }

    /// Leaves the election, releasing the lease if held.
    pub async fn resign(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease failed"),
            Err(e) => tracing::warn!(error = %e, "leader election task failed"),
        }
    }
}
