//! The Ray autoscaler v1 scales a real RayCluster on real nodes: up for
//! actors that need workers, down through `workersToDelete` when they are
//! idle, with the operator restarted during a scale-down (the scenario is
//! in `e2e_support/autoscaler.rs`, shared with `e2e_autoscaler_v2`); and an
//! autoscaler the API server refuses shows in the RayCluster's status.
//!
//! Every test here is named `e2e_*` (see `e2e.rs`).

mod e2e_support;
mod support;

use e2e_support::*;
use kuberay_api::RayCluster;
use kuberay_testenv::harness;

#[tokio::test]
async fn e2e_autoscaler_v1_scales_up_on_demand_and_down_when_idle() {
    autoscaler::scales_up_on_demand_and_down_when_idle("v1").await;
}

#[tokio::test]
async fn e2e_autoscaler_refused_by_the_api_server_shows_in_the_cluster_status() {
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-as-denied").await;
    // The autoscaler looks for its cluster in a namespace its Role does not
    // cover: every read is a 403, as with a Role that lacks a rule.
    let mut rc = autoscaler::cluster("denied", "v1");
    rc["spec"]["autoscalerOptions"]["env"] =
        serde_json::json!([{"name": "RAY_CLUSTER_NAMESPACE", "value": "default"}]);
    apply_json::<RayCluster>(&ns, rc).await;
    let waited = tokio::time::timeout(
        RAY_TIMEOUT,
        harness::wait_until(
            "the RayCluster status to quote the crash-looping autoscaler",
            RAY_TIMEOUT * 2,
            || async {
                let rc = ns.api::<RayCluster>().get("denied").await.ok()?;
                // Its own last words, not only "see the logs".
                let reason = rc.status?.reason?;
                (reason.contains("crash-looping")
                    && (reason.contains("403") || reason.contains("Forbidden")))
                .then_some(reason)
            },
        ),
    )
    .await;
    let reason = match waited {
        Ok(reason) => reason,
        Err(_) => {
            let rc = ns.api::<RayCluster>().get("denied").await.ok();
            let last = rc.and_then(|rc| rc.status?.reason);
            panic!(
                "the status never quoted the 403; its reason: {last:?}\n{}",
                namespace_report(&ns.name)
            )
        }
    };
    assert!(reason.contains("autoscaler"), "{reason}");
}
