//! The incremental upgrade (`NewClusterWithIncrementalUpgrade`), the pure
//! part, as KubeRay v1.7 runs it: the new cluster's Serve `target_capacity`
//! grows by `maxSurgePercent` while the old one's shrinks, the HTTPRoute's
//! weights follow by `stepSizePercent` every `intervalSeconds` but never
//! past the capacity of the cluster that gains traffic, the new cluster is
//! promoted once it has all the traffic and the old one no capacity, and a
//! spec that goes back (or elsewhere) mid-upgrade rolls the same steps
//! backwards first.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kuberay_api::features::{FeatureGates, RAY_SERVICE_INCREMENTAL_UPGRADE};
use kuberay_api::rayservice::{ClusterUpgradeOptions, RayServiceStatus, RayServiceUpgradeType};
use kuberay_api::{RayService, RayServiceStatuses};

use super::status::{self, ROLLBACK_IN_PROGRESS, UPGRADE_IN_PROGRESS};

/// KubeRay's reason for `RollbackInProgress`.
pub const DESIRED_CLUSTER_SPEC_CHANGED: &str = "DesiredClusterSpecChanged";

/// Whether `svc` upgrades incrementally (KubeRay's `IsIncrementalUpgradeEnabled`).
pub fn enabled(svc: &RayService, gates: &FeatureGates) -> bool {
    gates.enabled(RAY_SERVICE_INCREMENTAL_UPGRADE)
        && svc
            .spec
            .upgrade_strategy
            .as_ref()
            .and_then(|s| s.type_.as_ref())
            == Some(&RayServiceUpgradeType::NewClusterWithIncrementalUpgrade)
}

pub fn options(svc: &RayService) -> Option<&ClusterUpgradeOptions> {
    svc.spec
        .upgrade_strategy
        .as_ref()?
        .cluster_upgrade_options
        .as_ref()
}

fn active(st: &RayServiceStatuses) -> RayServiceStatus {
    st.active_service_status.clone().unwrap_or_default()
}

fn pending(st: &RayServiceStatuses) -> RayServiceStatus {
    st.pending_service_status.clone().unwrap_or_default()
}

pub fn in_progress(st: &RayServiceStatuses) -> bool {
    status::is_true(st, UPGRADE_IN_PROGRESS)
}

pub fn rolling_back(st: &RayServiceStatuses) -> bool {
    status::is_true(st, ROLLBACK_IN_PROGRESS)
}

/// Which side of the upgrade a cluster is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Active,
    Pending,
}

pub fn side(st: &RayServiceStatuses, cluster: &str) -> Option<Side> {
    if status::active_name(st) == Some(cluster) {
        Some(Side::Active)
    } else if status::pending_name(st) == Some(cluster) {
        Some(Side::Pending)
    } else {
        None
    }
}

/// Whether a changed `serveConfigV2` must not go to `cluster` now: not to
/// the live cluster while the upgrade moves away from it, not to the new
/// one while rolling back from it.
pub fn holds_config(st: &RayServiceStatuses, cluster: &str) -> bool {
    match side(st, cluster) {
        Some(Side::Active) => in_progress(st) && !rolling_back(st),
        Some(Side::Pending) | None => rolling_back(st),
    }
}

/// The `target_capacity` a full submission to `cluster` carries: the one
/// its side has in the status, if any.
pub fn submitted_capacity(st: &RayServiceStatuses, cluster: &str) -> Option<i32> {
    match side(st, cluster)? {
        Side::Active => active(st).target_capacity,
        Side::Pending => pending(st).target_capacity,
    }
}

/// KubeRay's `checkIfNeedTargetCapacityUpdate` once the Gateway and the
/// route are ready: whether some capacity still has to move, and why.
pub fn capacity_update_needed(st: &RayServiceStatuses) -> (bool, &'static str) {
    let (a, p) = (active(st), pending(st));
    if status::active_name(st).is_none() || status::pending_name(st).is_none() {
        return (false, "both an active and a pending RayCluster are needed");
    }
    let (Some(atc), Some(_)) = (a.target_capacity, a.traffic_routed_percent) else {
        return (
            true,
            "the active status has no targetCapacity or trafficRoutedPercent yet",
        );
    };
    let (Some(ptc), Some(ptr)) = (p.target_capacity, p.traffic_routed_percent) else {
        return (
            true,
            "the pending status has no targetCapacity or trafficRoutedPercent yet",
        );
    };
    if rolling_back(st) {
        return if atc == 100 && ptc == 0 {
            (false, "rollback complete")
        } else {
            (true, "rolling back")
        };
    }
    if atc == 0 && ptc == 100 {
        (false, "all capacity is on the upgraded cluster")
    } else if ptc < 100 || ptr < 100 {
        (true, "the pending cluster has not finished scaling up")
    } else {
        (true, "the active cluster has not finished scaling down")
    }
}

/// KubeRay's `reconcileServeTargetCapacity` for `cluster`: the
/// `target_capacity` to submit to it now, if any. Unset capacities start
/// at 100 (active) and 0 (pending) in the status. Capacity moves only once
/// the traffic caught up with it; the new cluster grows while the two
/// together have at most 100, the old one shrinks while they have more
/// (backwards during a rollback).
pub fn capacity_goal(st: &mut RayServiceStatuses, cluster: &str, surge: i32) -> Option<i32> {
    let a = st
        .active_service_status
        .get_or_insert_with(Default::default);
    let atc = *a.target_capacity.get_or_insert(100);
    let atr = a.traffic_routed_percent;
    let p = st
        .pending_service_status
        .get_or_insert_with(Default::default);
    let ptc = *p.target_capacity.get_or_insert(0);
    let ptr = p.traffic_routed_percent.unwrap_or(0);
    let side = side(st, cluster)?;
    let over = atc + ptc > 100;
    if rolling_back(st) {
        if atc != atr.unwrap_or(0) {
            return None;
        }
        return match (side, over) {
            (Side::Pending, true) => Some((ptc - surge).max(0)),
            (Side::Active, false) => Some((atc + surge).min(100)),
            _ => None,
        };
    }
    if ptc != ptr {
        return None;
    }
    match (side, over) {
        (Side::Active, true) => Some((atc - surge).max(0)),
        (Side::Pending, false) => Some((ptc + surge).min(100)),
        _ => None,
    }
}

/// When capacity may be taken from `cluster`: `intervalSeconds` after the
/// route last changed its weight (none if it never did). Beyond KubeRay,
/// which lowers a cluster's `target_capacity` on the pass right after the
/// one that moved its traffic away: a Gateway applies a route some time
/// after it is written (Traefik batches its provider's changes for 2 s),
/// and a request it still sends to a cluster whose Serve replicas are gone
/// waits for a replica that never comes. The upgrade's own pace gives the
/// Gateway that time.
pub fn drained_at(
    st: &RayServiceStatuses,
    cluster: &str,
    opts: &ClusterUpgradeOptions,
) -> Option<Timestamp> {
    let last = match side(st, cluster)? {
        Side::Active => active(st).last_traffic_migrated_time,
        Side::Pending => pending(st).last_traffic_migrated_time,
    };
    interval_after(last, opts)
}

/// `intervalSeconds` after `last`, the time traffic last moved.
fn interval_after(last: Option<Time>, opts: &ClusterUpgradeOptions) -> Option<Timestamp> {
    last?
        .0
        .checked_add(SignedDuration::from_secs(i64::from(opts.interval_seconds)))
        .ok()
}

/// Records a `target_capacity` the dashboard of `cluster` accepted.
pub fn record_capacity(st: &mut RayServiceStatuses, cluster: &str, value: i32) {
    let s = match side(st, cluster) {
        Some(Side::Active) => st.active_service_status.as_mut(),
        Some(Side::Pending) => st.pending_service_status.as_mut(),
        None => None,
    };
    if let Some(s) = s {
        s.target_capacity = Some(value);
    }
}

/// KubeRay's `calculateTrafficRoutedPercent`: the (active, pending) weights
/// of the route now. Traffic moves by `stepSizePercent` once
/// `intervalSeconds` passed since it last moved toward the cluster that
/// gains it, never beyond that cluster's capacity; toward the new cluster
/// only while it is ready, back to the old one whenever rolling back.
pub fn weights(
    st: &RayServiceStatuses,
    opts: &ClusterUpgradeOptions,
    pending_ready: bool,
    now: Timestamp,
) -> (i32, i32) {
    let (a, p) = (active(st), pending(st));
    let mut aw = a.traffic_routed_percent.unwrap_or(100);
    let mut pw = p.traffic_routed_percent.unwrap_or(0);
    let ptc = p.target_capacity.unwrap_or(0);
    let atc = a.target_capacity.unwrap_or(100);
    let back = rolling_back(st);
    if (!back && pw == ptc) || (back && aw == atc) {
        return (aw, pw);
    }
    let due = next_step_at(st, opts).is_none_or(|at| now >= at);
    if !due {
        return (aw, pw);
    }
    if back {
        aw = (aw + opts.step_size_percent).min(100).min(atc);
        pw = 100 - aw;
    } else if pending_ready {
        pw = (pw + opts.step_size_percent).min(100).min(ptc);
        aw = 100 - pw;
    }
    (aw, pw)
}

/// When traffic may move next, if it is waiting for `intervalSeconds`.
pub fn next_step_at(st: &RayServiceStatuses, opts: &ClusterUpgradeOptions) -> Option<Timestamp> {
    let last = if rolling_back(st) {
        active(st).last_traffic_migrated_time
    } else {
        pending(st).last_traffic_migrated_time
    };
    interval_after(last, opts)
}

/// The route's weights (from [`super::gateway::weights`], -1 for a cluster
/// it does not name) into the status; a weight that changed stamps
/// `lastTrafficMigratedTime`.
pub fn record_traffic(
    st: &mut RayServiceStatuses,
    (aw, pw): (i32, i32),
    pending_exists: bool,
    now: &Time,
) {
    let stamp = |s: &mut RayServiceStatus, w: i32| {
        if s.traffic_routed_percent.unwrap_or(-1) != w {
            s.last_traffic_migrated_time = Some(now.clone());
        }
        s.traffic_routed_percent = Some(w);
    };
    if aw >= 0 {
        stamp(
            st.active_service_status
                .get_or_insert_with(Default::default),
            aw,
        );
    }
    if pw >= 0 && pending_exists {
        stamp(
            st.pending_service_status
                .get_or_insert_with(Default::default),
            pw,
        );
    }
}

/// KubeRay's `IsIncrementalUpgradeComplete`: the old cluster has no
/// capacity left and the new one all the traffic.
pub fn complete(st: &RayServiceStatuses, pending_exists: bool) -> bool {
    pending_exists
        && active(st).target_capacity == Some(0)
        && pending(st).traffic_routed_percent == Some(100)
}

/// KubeRay's `shouldCompleteIncrementalRollback`: the old cluster is back
/// at full capacity and traffic, and the new one drained (or its head is
/// not ready, so it cannot be asked to scale down).
pub fn rollback_complete(st: &RayServiceStatuses, pending_head_ready: bool) -> bool {
    let (a, p) = (active(st), pending(st));
    a.target_capacity == Some(100)
        && a.traffic_routed_percent == Some(100)
        && (!pending_head_ready
            || (p.target_capacity == Some(0) && p.traffic_routed_percent == Some(0)))
}

/// What a spec change during an upgrade does to `RollbackInProgress`.
#[derive(Debug, PartialEq, Eq)]
pub enum Rollback {
    /// Start rolling back, with KubeRay's message.
    Start(&'static str),
    /// The spec is the new cluster's again: resume the upgrade.
    Cancel,
    Keep,
}

/// KubeRay's `reconcileRollbackState`, given whether the goal spec is the
/// active cluster's and whether it is the pending one's.
pub fn rollback_decision(is_active: bool, is_pending: bool, rolling_back: bool) -> Rollback {
    match (is_active, is_pending, rolling_back) {
        (true, _, false) => {
            Rollback::Start("Goal state reverted to original cluster, rolling back.")
        }
        (true, _, true) => Rollback::Keep,
        (false, true, true) => Rollback::Cancel,
        (false, true, false) => Rollback::Keep,
        (false, false, false) => {
            Rollback::Start("Goal state changed mid-upgrade, rolling back to original cluster.")
        }
        (false, false, true) => Rollback::Keep,
    }
}

/// The `targetCapacity` a freshly named pending cluster starts with: all
/// of it for the first cluster, none during an upgrade.
pub fn initial_capacity(st: &RayServiceStatuses) -> Option<i32> {
    if status::active_name(st).is_none() {
        active(st).target_capacity.is_none().then_some(100)
    } else {
        Some(0)
    }
}

/// `serveConfigV2` (as JSON) with `target_capacity` set.
pub fn with_capacity(mut body: serde_json::Value, capacity: Option<i32>) -> serde_json::Value {
    if let (Some(c), Some(m)) = (capacity, body.as_object_mut()) {
        m.insert("target_capacity".into(), c.into());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuberay_api::rayservice::RayServiceStatus;

    fn opts(step: i32, interval: i32, surge: i32) -> ClusterUpgradeOptions {
        ClusterUpgradeOptions {
            gateway_class_name: "istio".into(),
            interval_seconds: interval,
            max_surge_percent: Some(surge),
            step_size_percent: step,
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// An upgrade from `a` to `p`: (target capacity, traffic) of each side.
    fn upgrading(
        a: (Option<i32>, Option<i32>),
        p: (Option<i32>, Option<i32>),
    ) -> RayServiceStatuses {
        let side = |name: &str, (tc, tr): (Option<i32>, Option<i32>)| {
            Some(RayServiceStatus {
                ray_cluster_name: Some(name.into()),
                target_capacity: tc,
                traffic_routed_percent: tr,
                ..Default::default()
            })
        };
        let mut st = RayServiceStatuses {
            active_service_status: side("old", a),
            pending_service_status: side("new", p),
            ..Default::default()
        };
        let now = Time(t("2026-01-01T00:00:00Z"));
        status::set(
            &mut st,
            UPGRADE_IN_PROGRESS,
            true,
            "BothActivePendingClustersExist",
            "",
            &now,
        );
        st
    }

    fn roll_back(st: &mut RayServiceStatuses) {
        let now = Time(t("2026-01-01T00:00:00Z"));
        status::set(
            st,
            ROLLBACK_IN_PROGRESS,
            true,
            DESIRED_CLUSTER_SPEC_CHANGED,
            "",
            &now,
        );
    }

    #[test]
    fn capacity_moves_in_surge_steps_only_after_traffic_caught_up() {
        // Unset: active 100, pending 0; the new cluster grows first.
        let mut st = upgrading((None, None), (None, None));
        assert_eq!(capacity_goal(&mut st, "new", 30), Some(30));
        assert_eq!(
            capacity_goal(&mut st, "old", 30),
            None,
            "100 + 0 is not over 100"
        );
        assert_eq!(active(&st).target_capacity, Some(100));
        record_capacity(&mut st, "new", 30);
        // Traffic (0) has not caught up with the new capacity (30): wait.
        assert_eq!(capacity_goal(&mut st, "old", 30), None);
        st.pending_service_status
            .as_mut()
            .unwrap()
            .traffic_routed_percent = Some(30);
        // 100 + 30 > 100: the old cluster shrinks, the new one waits.
        assert_eq!(capacity_goal(&mut st, "new", 30), None);
        assert_eq!(capacity_goal(&mut st, "old", 30), Some(70));
        record_capacity(&mut st, "old", 70);
        assert_eq!(capacity_goal(&mut st, "new", 30), Some(60));
        // The last steps are clamped to 100 and 0.
        let mut st = upgrading((Some(10), Some(10)), (Some(90), Some(90)));
        assert_eq!(capacity_goal(&mut st, "new", 30), Some(100));
        let mut st = upgrading((Some(10), Some(0)), (Some(100), Some(100)));
        assert_eq!(capacity_goal(&mut st, "old", 30), Some(0));
        assert_eq!(capacity_goal(&mut st, "elsewhere", 30), None);
    }

    #[test]
    fn capacity_leaves_a_cluster_an_interval_after_its_traffic_did() {
        let o = opts(50, 5, 50);
        let mut st = upgrading((Some(100), Some(100)), (Some(50), Some(0)));
        assert_eq!(drained_at(&st, "old", &o), None, "its traffic never moved");
        record_traffic(&mut st, (50, 50), true, &Time(t("2026-01-01T00:10:00Z")));
        assert_eq!(drained_at(&st, "old", &o), Some(t("2026-01-01T00:10:05Z")));
        assert_eq!(drained_at(&st, "new", &o), Some(t("2026-01-01T00:10:05Z")));
        assert_eq!(drained_at(&st, "elsewhere", &o), None);
    }

    #[test]
    fn a_rollback_runs_the_capacity_steps_backwards() {
        let mut st = upgrading((Some(60), Some(50)), (Some(50), Some(50)));
        roll_back(&mut st);
        // The old cluster's traffic (50) is below its capacity (60): wait.
        assert_eq!(capacity_goal(&mut st, "new", 20), None);
        st.active_service_status
            .as_mut()
            .unwrap()
            .traffic_routed_percent = Some(60);
        // 60 + 50 > 100: the new cluster shrinks first.
        assert_eq!(capacity_goal(&mut st, "old", 20), None);
        assert_eq!(capacity_goal(&mut st, "new", 20), Some(30));
        record_capacity(&mut st, "new", 30);
        assert_eq!(capacity_goal(&mut st, "old", 20), Some(80));
    }

    #[test]
    fn whether_capacity_must_move() {
        let st = upgrading((None, None), (Some(0), None));
        assert!(capacity_update_needed(&st).0);
        let st = upgrading((Some(100), Some(100)), (Some(20), Some(0)));
        assert_eq!(
            capacity_update_needed(&st),
            (true, "the pending cluster has not finished scaling up")
        );
        let st = upgrading((Some(40), Some(0)), (Some(100), Some(100)));
        assert_eq!(
            capacity_update_needed(&st),
            (true, "the active cluster has not finished scaling down")
        );
        let st = upgrading((Some(0), Some(0)), (Some(100), Some(100)));
        assert!(!capacity_update_needed(&st).0);
        let mut st = upgrading((Some(100), Some(100)), (Some(0), Some(0)));
        roll_back(&mut st);
        assert!(!capacity_update_needed(&st).0);
    }

    #[test]
    fn traffic_steps_every_interval_up_to_the_new_clusters_capacity() {
        let o = opts(10, 30, 25);
        let now = t("2026-01-01T00:10:00Z");
        let mut st = upgrading((Some(100), Some(100)), (Some(25), Some(0)));
        // Never moved: moves now, if the new cluster is ready.
        assert_eq!(weights(&st, &o, false, now), (100, 0));
        assert_eq!(weights(&st, &o, true, now), (90, 10));
        record_traffic(&mut st, (90, 10), true, &Time(now));
        assert_eq!(pending(&st).last_traffic_migrated_time, Some(Time(now)));
        assert_eq!(next_step_at(&st, &o), Some(t("2026-01-01T00:10:30Z")));
        // Within the interval: stays.
        assert_eq!(weights(&st, &o, true, t("2026-01-01T00:10:29Z")), (90, 10));
        let later = t("2026-01-01T00:10:30Z");
        assert_eq!(weights(&st, &o, true, later), (80, 20));
        record_traffic(&mut st, (80, 20), true, &Time(later));
        // Clamped to the capacity (25), then stops there.
        let later = t("2026-01-01T00:11:00Z");
        assert_eq!(weights(&st, &o, true, later), (75, 25));
        record_traffic(&mut st, (75, 25), true, &Time(later));
        assert_eq!(weights(&st, &o, true, t("2026-01-01T01:00:00Z")), (75, 25));
        // An unchanged weight leaves the time alone.
        record_traffic(&mut st, (75, 25), true, &Time(t("2026-01-01T01:00:00Z")));
        assert_eq!(pending(&st).last_traffic_migrated_time, Some(Time(later)));
    }

    #[test]
    fn a_rollback_moves_traffic_back_even_from_an_unready_cluster() {
        let o = opts(30, 10, 50);
        let mut st = upgrading((Some(100), Some(40)), (Some(60), Some(60)));
        roll_back(&mut st);
        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(weights(&st, &o, false, now), (70, 30));
        let mut st = upgrading((Some(80), Some(70)), (Some(60), Some(30)));
        roll_back(&mut st);
        assert_eq!(
            weights(&st, &o, false, now),
            (80, 20),
            "capped by the capacity"
        );
    }

    #[test]
    fn completion_promotion_and_rollback_decisions() {
        let st = upgrading((Some(0), Some(0)), (Some(100), Some(100)));
        assert!(complete(&st, true));
        assert!(!complete(&st, false));
        let st = upgrading((Some(10), Some(0)), (Some(100), Some(100)));
        assert!(!complete(&st, true));

        let st = upgrading((Some(100), Some(100)), (Some(0), Some(0)));
        assert!(rollback_complete(&st, true));
        let st = upgrading((Some(100), Some(100)), (Some(30), Some(0)));
        assert!(!rollback_complete(&st, true));
        assert!(
            rollback_complete(&st, false),
            "an unready new cluster is not waited for"
        );

        assert!(
            matches!(rollback_decision(true, false, false), Rollback::Start(m) if m.contains("reverted"))
        );
        assert_eq!(rollback_decision(true, false, true), Rollback::Keep);
        assert_eq!(rollback_decision(false, true, true), Rollback::Cancel);
        assert_eq!(rollback_decision(false, true, false), Rollback::Keep);
        assert!(
            matches!(rollback_decision(false, false, false), Rollback::Start(m) if m.contains("changed mid-upgrade"))
        );
    }

    #[test]
    fn config_is_held_back_from_the_side_traffic_leaves() {
        let mut st = upgrading((Some(100), Some(100)), (Some(0), Some(0)));
        assert!(holds_config(&st, "old"));
        assert!(!holds_config(&st, "new"));
        assert_eq!(submitted_capacity(&st, "new"), Some(0));
        roll_back(&mut st);
        assert!(!holds_config(&st, "old"));
        assert!(holds_config(&st, "new"));
        let body = with_capacity(serde_json::json!({"applications": []}), Some(40));
        assert_eq!(body["target_capacity"], 40);
    }

    #[test]
    fn a_first_cluster_starts_at_full_capacity_a_new_one_at_none() {
        assert_eq!(initial_capacity(&RayServiceStatuses::default()), Some(100));
        let st = upgrading((Some(100), Some(100)), (None, None));
        assert_eq!(initial_capacity(&st), Some(0));
    }
}
