//! KubeRay's feature gates (`--feature-gates=Name=true,...`), with KubeRay
//! v1.7's defaults. Pure data: validation and the controllers consult it.

use std::collections::BTreeMap;

/// Status conditions on RayCluster (always on in practice).
pub const RAY_CLUSTER_STATUS_CONDITIONS: &str = "RayClusterStatusConditions";
/// RayJob `deletionStrategy` and per-group suspend.
pub const RAY_JOB_DELETION_POLICY: &str = "RayJobDeletionPolicy";
/// Replica and host index labels of multi-host worker groups.
pub const RAY_MULTI_HOST_INDEXING: &str = "RayMultiHostIndexing";
pub const RAY_SERVICE_INCREMENTAL_UPGRADE: &str = "RayServiceIncrementalUpgrade";
pub const RAY_CRON_JOB: &str = "RayCronJob";
pub const SIDECAR_SUBMITTER_RESTART: &str = "SidecarSubmitterRestart";
pub const RAY_CLUSTER_NETWORK_POLICY: &str = "RayClusterNetworkPolicy";
pub const GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE: &str = "GCSFaultToleranceEmbeddedStorage";
pub const RAY_CLUSTER_MTLS: &str = "RayClusterMTLS";
pub const RAY_CLUSTER_HISTORY_SERVER: &str = "RayClusterHistoryServer";

/// Every gate and its default.
pub const DEFAULTS: &[(&str, bool)] = &[
    (RAY_CLUSTER_STATUS_CONDITIONS, true),
    (RAY_JOB_DELETION_POLICY, true),
    (RAY_MULTI_HOST_INDEXING, true),
    (RAY_SERVICE_INCREMENTAL_UPGRADE, true),
    (RAY_CRON_JOB, false),
    (SIDECAR_SUBMITTER_RESTART, false),
    (RAY_CLUSTER_NETWORK_POLICY, false),
    (GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE, false),
    (RAY_CLUSTER_MTLS, false),
    (RAY_CLUSTER_HISTORY_SERVER, false),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureGates {
    enabled: BTreeMap<&'static str, bool>,
}

impl Default for FeatureGates {
    fn default() -> Self {
        Self {
            enabled: DEFAULTS.iter().copied().collect(),
        }
    }
}

impl FeatureGates {
    /// Parses `Name=true,Other=false` on top of the defaults. Unknown names
    /// and values other than true/false are errors, so a typo fails at start.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut gates = Self::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("feature gate {item:?} must be Name=true or Name=false"))?;
            let value: bool = value.trim().parse().map_err(|_| {
                format!("feature gate {name}: value {value:?} is not true or false")
            })?;
            gates.set(name.trim(), value)?;
        }
        Ok(gates)
    }

    pub fn set(&mut self, name: &str, value: bool) -> Result<(), String> {
        let (known, _) = DEFAULTS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = DEFAULTS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown feature gate {name:?}; known gates: {}",
                names.join(", ")
            )
        })?;
        self.enabled.insert(known, value);
        Ok(())
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.enabled.get(name).copied().unwrap_or(false)
    }

    /// Every gate with its current value, for logs and metrics.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        self.enabled.iter().map(|(k, v)| (*k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_kuberay() {
        let g = FeatureGates::default();
        assert!(g.enabled(RAY_JOB_DELETION_POLICY));
        assert!(!g.enabled(RAY_CRON_JOB));
    }

    #[test]
    fn parses_overrides_and_rejects_typos() {
        let g = FeatureGates::parse("RayCronJob=true, RayJobDeletionPolicy=false").unwrap();
        assert!(g.enabled(RAY_CRON_JOB));
        assert!(!g.enabled(RAY_JOB_DELETION_POLICY));
        assert!(
            FeatureGates::parse("RayCronJb=true")
                .unwrap_err()
                .contains("unknown feature gate")
        );
        assert!(
            FeatureGates::parse("RayCronJob=yes")
                .unwrap_err()
                .contains("not true or false")
        );
        assert!(FeatureGates::parse("RayCronJob").is_err());
        assert_eq!(FeatureGates::parse("").unwrap(), FeatureGates::default());
    }
}
