//! The Ray autoscaler v2 scales a real RayCluster on real nodes: up for
//! actors that need workers, down through `workersToDelete` when they are
//! idle, with the operator restarted during a scale-down (the scenario is
//! in `e2e_support/autoscaler.rs`, shared with `e2e_autoscaler_v1`).
//!
//! Every test here is named `e2e_*` (see `e2e.rs`).

mod e2e_support;
mod support;

#[tokio::test]
async fn e2e_autoscaler_v2_scales_up_on_demand_and_down_when_idle() {
    e2e_support::autoscaler::scales_up_on_demand_and_down_when_idle("v2").await;
}
