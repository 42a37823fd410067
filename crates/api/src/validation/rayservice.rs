//! RayService validation: the embedded cluster, the upgrade strategy and
//! its traffic-shifting options.

use std::collections::BTreeMap;

use super::raycluster::{
    ClusterContext, MAX_RAYCLUSTER_NAME_LENGTH, cluster_spec, is_autoscaling_enabled, object_name,
};
use super::{Errors, Invalid, check_known};
use crate::features::{FeatureGates, RAY_SERVICE_INCREMENTAL_UPGRADE};
use crate::rayservice::{RayService, RayServiceUpgradeType};

/// The longest RayService name: its clusters are named `<service>-<5 random
/// chars>` and must fit [`MAX_RAYCLUSTER_NAME_LENGTH`].
pub const MAX_RAYSERVICE_NAME_LENGTH: usize = MAX_RAYCLUSTER_NAME_LENGTH - 6;

/// How long a RayService may take to become ready before it is failed.
pub const INITIALIZING_TIMEOUT_ANNOTATION: &str = "ray.io/initializing-timeout";

/// Validates a RayService's name, annotations and spec.
pub fn validate_rayservice(svc: &RayService, gates: &FeatureGates) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    object_name(&mut errs, "RayService", name, MAX_RAYSERVICE_NAME_LENGTH);
    let empty = BTreeMap::new();
    let annotations = svc.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some(v) = annotations
        .get(INITIALIZING_TIMEOUT_ANNOTATION)
        .filter(|v| !v.is_empty())
        && let Err(problem) = parse_timeout(v)
    {
        errs.add(
            format!("metadata.annotations[{INITIALIZING_TIMEOUT_ANNOTATION:?}]"),
            problem,
        );
    }
    let spec = &svc.spec;
    let cluster = &spec.ray_cluster_config;
    if cluster
        .auth_options
        .as_ref()
        .and_then(|a| a.enable_k8s_token_auth)
        == Some(true)
    {
        errs.add(
            "spec.rayClusterConfig.authOptions.enableK8sTokenAuth",
            "is not supported for RayService clusters",
        );
    }
    let ctx = ClusterContext {
        path: "spec.rayClusterConfig",
        annotations,
        gates,
    };
    cluster_spec(&mut errs, cluster, &ctx);
    if cluster
        .head_group_spec
        .head_service
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.name.as_ref())
        .is_some_and(|n| !n.is_empty())
    {
        errs.add(
            "spec.rayClusterConfig.headGroupSpec.headService.metadata.name",
            "must not be set: each of the service's clusters needs its own head service",
        );
    }
    if let Some(d) = spec.ray_cluster_deletion_delay_seconds.filter(|d| *d < 0) {
        errs.add(
            "spec.rayClusterDeletionDelaySeconds",
            format!("{d} is negative"),
        );
    }
    if let Some(config) = spec
        .serve_config_v2
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        match serde_yaml::from_str::<serde_yaml::Value>(config) {
            Ok(serde_yaml::Value::Mapping(_)) => {}
            Ok(_) => errs.add(
                "spec.serveConfigV2",
                "must be a YAML mapping with an `applications` list",
            ),
            Err(e) => errs.add("spec.serveConfigV2", format!("is not valid YAML: {e}")),
        }
    }
    let strategy = spec.upgrade_strategy.as_ref();
    check_known(
        &mut errs,
        "spec.upgradeStrategy.type",
        strategy.and_then(|s| s.type_.as_ref()),
    );
    let incremental = strategy.and_then(|s| s.type_.as_ref())
        == Some(&RayServiceUpgradeType::NewClusterWithIncrementalUpgrade);
    if incremental {
        if !gates.enabled(RAY_SERVICE_INCREMENTAL_UPGRADE) {
            errs.add("spec.upgradeStrategy.type", format!("NewClusterWithIncrementalUpgrade needs the {RAY_SERVICE_INCREMENTAL_UPGRADE} feature gate"));
        }
        if !is_autoscaling_enabled(cluster) {
            errs.add(
                "spec.rayClusterConfig.enableInTreeAutoscaling",
                "must be true for NewClusterWithIncrementalUpgrade",
            );
        }
        match strategy.and_then(|s| s.cluster_upgrade_options.as_ref()) {
            None => errs.add(
                "spec.upgradeStrategy.clusterUpgradeOptions",
                "is required for NewClusterWithIncrementalUpgrade",
            ),
            Some(o) => {
                let op = "spec.upgradeStrategy.clusterUpgradeOptions";
                let surge = o.max_surge_percent.unwrap_or(100);
                if !(0..=100).contains(&surge) {
                    errs.add(
                        format!("{op}.maxSurgePercent"),
                        format!("{surge} is not between 0 and 100"),
                    );
                }
                if !(0..=100).contains(&o.step_size_percent) {
                    errs.add(
                        format!("{op}.stepSizePercent"),
                        format!("{} is not between 0 and 100", o.step_size_percent),
                    );
                } else if o.step_size_percent > surge {
                    errs.add(
                        format!("{op}.stepSizePercent"),
                        format!(
                            "{} is greater than maxSurgePercent ({surge})",
                            o.step_size_percent
                        ),
                    );
                }
                if o.interval_seconds <= 0 {
                    errs.add(
                        format!("{op}.intervalSeconds"),
                        format!("{} is not a positive number of seconds", o.interval_seconds),
                    );
                }
                if o.gateway_class_name.is_empty() {
                    errs.add(format!("{op}.gatewayClassName"), "must be set");
                }
            }
        }
    }
    errs.into_result()
}

/// The initializing timeout: a Go-style duration (`90s`, `5m`, `1h30m`) or
/// plain seconds, which must be positive.
pub fn parse_timeout(v: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = v.parse::<i64>() {
        return u64::try_from(secs)
            .ok()
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("{v} is not a positive number of seconds"));
    }
    let mut total = 0f64;
    let mut rest = v;
    if rest.is_empty() {
        return Err("is empty".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let n: f64 = num.parse().map_err(|_| {
            format!("{v:?} is not a duration such as 90s, 5m or 1h30m, nor a number of seconds")
        })?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "{v:?} is not a duration such as 90s, 5m or 1h30m, nor a number of seconds"
                ));
            }
        };
        total += n * scale;
        rest = tail;
    }
    if total <= 0.0 {
        return Err(format!("{v} is not a positive duration"));
    }
    Ok(std::time::Duration::from_secs_f64(total))
}
