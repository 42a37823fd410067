//! The RayCronJob controller against a real API server, with a clock the
//! test sets: one RayJob per tick with KubeRay's name, label, annotation and
//! owner; nothing while suspended and no burst on resume; one catch-up run
//! after an outage; invalid specs reported with their field path; and
//! KubeRay's sample running its first job.

mod support;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kuberay_api::features::{FeatureGates, RAY_CRON_JOB};
use kuberay_api::rayjob::JobDeploymentStatus;
use kuberay_api::{RayCronJob, RayJob};
use kuberay_operator::kit::clock::TestClock;
use kuberay_operator::ray::dashboard::DirectDashboards;
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use serde_json::json;
use support::*;

fn config() -> Config {
    let mut gates = FeatureGates::default();
    gates.set(RAY_CRON_JOB, true).unwrap();
    Config {
        gates,
        ..Config::default()
    }
}

fn start(ns: &TestNamespace, clock: &Arc<TestClock>) -> Operator {
    Operator::start_timed(
        &ns.name,
        config(),
        Arc::new(DirectDashboards),
        clock.clone(),
        harness::kubeconfig().to_path_buf(),
    )
}

/// A namespace, a test clock at the real time, and an operator reading it.
async fn setup_cron(prefix: &str) -> (TestNamespace, Operator, Arc<TestClock>) {
    init_logs();
    harness::install_crds().await;
    let ns = harness::namespace(prefix).await;
    let clock = Arc::new(TestClock::new(Timestamp::now()));
    let op = start(&ns, &clock);
    (ns, op, clock)
}

/// A RayCronJob running every minute; its RayJobs are created suspended
/// (no cluster), so only the schedule is exercised. `extra` is merged
/// into the spec.
fn cronjob(name: &str, extra: serde_json::Value) -> String {
    let mut v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayCronJob", "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "entrypoint": "python -c 'print(1)'",
                "suspend": true,
                "shutdownAfterJobFinishes": true,
                "rayClusterSpec": {
                    "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.52.0"}]}}}
                }
            }
        }
    });
    for (k, val) in extra.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_yaml::to_string(&v).unwrap()
}

/// The `n`th minute boundary after `t` (`n = 1`: the next one).
fn tick_after(t: Timestamp, n: i64) -> Timestamp {
    Timestamp::from_second((t.as_second().div_euclid(60) + n) * 60).unwrap()
}

fn job_name(cron: &str, tick: Timestamp) -> String {
    format!("{cron}-{}", tick.as_second() / 60)
}

/// The names of the RayJobs `cron` created, sorted.
async fn children(ns: &TestNamespace, cron: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("ray.io/cronjob-name={cron}"));
    let mut names: Vec<String> = ns
        .api::<RayJob>()
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

async fn wait_scheduled(ns: &TestNamespace, cron: &str, tick: Timestamp) {
    let api = ns.api::<RayCronJob>();
    wait_until(
        &format!("{cron}: lastScheduleTime {tick}"),
        TIMEOUT,
        || async {
            let last = api.get(cron).await.ok()?.status?.last_schedule_time?;
            (last.0 == tick).then_some(())
        },
    )
    .await;
}

/// How many times an event of `reason` about `name` was reported
/// (repeats are folded into a series).
async fn reported(ns: &TestNamespace, name: &str, reason: &str) -> i32 {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .map(|e| e.series.map_or(1, |s| s.count))
        .sum()
}

/// Waits until `reason` was reported about `name` more than `than` times.
async fn reported_more(ns: &TestNamespace, name: &str, reason: &str, than: i32) -> i32 {
    wait_until(
        &format!("{name}: {reason} reported more than {than} times"),
        TIMEOUT,
        || async {
            let n = reported(ns, name, reason).await;
            (n > than).then_some(n)
        },
    )
    .await
}

/// Applies the RayCronJob and runs its first tick.
async fn first_tick(ns: &TestNamespace, clock: &TestClock, name: &str) -> Timestamp {
    let cj = apply::<RayCronJob>(ns, &cronjob(name, json!({}))).await;
    let created = cj.metadata.creation_timestamp.unwrap().0;
    clock.set(created);
    let t1 = tick_after(created, 1);
    clock.set(t1 + SignedDuration::from_secs(1));
    wait_scheduled(ns, name, t1).await;
    assert_eq!(children(ns, name).await, [job_name(name, t1)]);
    t1
}

#[tokio::test]
async fn a_schedule_creates_exactly_one_rayjob_per_tick() {
    let (ns, _op, clock) = setup_cron("cron-ticks").await;
    let t1 = first_tick(&ns, &clock, "every-minute").await;

    let job = ns
        .api::<RayJob>()
        .get(&job_name("every-minute", t1))
        .await
        .unwrap();
    assert_eq!(job.labels()["ray.io/cronjob-name"], "every-minute");
    assert_eq!(
        job.annotations()["ray.io/cronjob-scheduled-timestamp"],
        t1.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("RayCronJob", "every-minute")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(job.spec.suspend, Some(true), "the template's spec");

    // Within the same minute nothing more; at the next tick exactly one more.
    clock.set(t1 + SignedDuration::from_secs(40));
    let t2 = tick_after(t1, 1);
    clock.set(t2 + SignedDuration::from_secs(1));
    wait_scheduled(&ns, "every-minute", t2).await;
    let t3 = tick_after(t1, 2);
    clock.set(t3 + SignedDuration::from_secs(1));
    wait_scheduled(&ns, "every-minute", t3).await;
    assert_eq!(
        children(&ns, "every-minute").await,
        [
            job_name("every-minute", t1),
            job_name("every-minute", t2),
            job_name("every-minute", t3)
        ]
    );
}

#[tokio::test]
async fn suspend_stops_creation_and_resume_does_not_burst() {
    let (ns, _op, clock) = setup_cron("cron-suspend").await;
    let t1 = first_tick(&ns, &clock, "paused").await;
    let api = ns.api::<RayCronJob>();
    let patch = |suspend: bool| json!({"spec": {"suspend": suspend}});
    api.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(patch(true)),
    )
    .await
    .unwrap();
    let seen = reported_more(&ns, "paused", "SuspendedRayCronJob", 0).await;

    // Five ticks pass while suspended: the controller looks (and says it is
    // suspended again) but creates nothing.
    let t6 = tick_after(t1, 5);
    clock.set(t6 + SignedDuration::from_secs(1));
    reported_more(&ns, "paused", "SuspendedRayCronJob", seen).await;
    assert_eq!(children(&ns, "paused").await, [job_name("paused", t1)]);

    // Resumed: one run for the latest missed tick, not five.
    api.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(patch(false)),
    )
    .await
    .unwrap();
    wait_scheduled(&ns, "paused", t6).await;
    assert_eq!(
        children(&ns, "paused").await,
        [job_name("paused", t1), job_name("paused", t6)]
    );
}

#[tokio::test]
async fn ten_missed_ticks_give_one_catch_up_run() {
    let (ns, op, clock) = setup_cron("cron-outage").await;
    let t1 = first_tick(&ns, &clock, "outage").await;
    op.kill();
    // The operator is down for ten ticks.
    let t11 = tick_after(t1, 10);
    clock.set(t11 + SignedDuration::from_secs(1));
    let _op = start(&ns, &clock);
    wait_scheduled(&ns, "outage", t11).await;
    assert_eq!(
        children(&ns, "outage").await,
        [job_name("outage", t1), job_name("outage", t11)]
    );
}

#[tokio::test]
async fn an_invalid_schedule_or_time_zone_is_reported_and_creates_nothing() {
    let (ns, _op, clock) = setup_cron("cron-invalid").await;
    apply::<RayCronJob>(
        &ns,
        &cronjob("bad-schedule", json!({"schedule": "61 * * * *"})),
    )
    .await;
    apply::<RayCronJob>(
        &ns,
        &cronjob("bad-zone", json!({"timeZone": "Mars/Olympus"})),
    )
    .await;
    for (name, field) in [
        ("bad-schedule", "spec.schedule"),
        ("bad-zone", "spec.timeZone"),
    ] {
        let note = wait_until(&format!("{name} reported"), TIMEOUT, || async {
            events(&ns, name)
                .await
                .into_iter()
                .find(|(t, reason, _)| t == "Warning" && reason == "InvalidRayCronJobSpec")
                .map(|(_, _, note)| note)
        })
        .await;
        assert!(
            note.starts_with(&format!("{}/{name}: {field}: ", ns.name)),
            "{note}"
        );
    }
    // Ticks pass; each is looked at (and reported again), none runs.
    let before = reported(&ns, "bad-zone", "InvalidRayCronJobSpec").await;
    clock.advance(SignedDuration::from_secs(180));
    reported_more(&ns, "bad-zone", "InvalidRayCronJobSpec", before).await;
    let jobs = ns
        .api::<RayJob>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(jobs.items.is_empty(), "{:?}", jobs.items);
    for name in ["bad-schedule", "bad-zone"] {
        let cj = ns.api::<RayCronJob>().get(name).await.unwrap();
        assert!(cj.status.and_then(|s| s.last_schedule_time).is_none());
    }

    // Another problem is another event, saying what is wrong now (an event
    // keyed without its note, as kube-runtime's Recorder keys them, would
    // only count up the first one).
    ns.api::<RayCronJob>()
        .patch(
            "bad-zone",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"timeZone": "Pluto/Base"}})),
        )
        .await
        .unwrap();
    wait_until("the new problem reported", TIMEOUT, || async {
        events(&ns, "bad-zone")
            .await
            .into_iter()
            .any(|(_, reason, note)| {
                reason == "InvalidRayCronJobSpec" && note.contains("Pluto/Base")
            })
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_raycronjob_sample_runs_its_first_job() {
    let all = kuberay_testenv::samples::ray_objects();
    let sample = all
        .iter()
        .find(|s| s.kind() == "RayCronJob")
        .expect("KubeRay's RayCronJob sample");
    let (ns, _op, clock) = setup_cron("cron-sample").await;
    let mut cj: RayCronJob = serde_json::from_value(sample.value.clone()).unwrap();
    cj.metadata.namespace = Some(ns.name.clone());
    let name = cj.name_any();
    let cj = ns
        .api::<RayCronJob>()
        .patch(
            &name,
            &PatchParams::apply("kuberay-tests"),
            &Patch::Apply(&cj),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", sample.id()));
    let t1 = tick_after(cj.metadata.creation_timestamp.unwrap().0, 1);
    clock.set(t1 + SignedDuration::from_secs(1));
    wait_scheduled(&ns, &name, t1).await;
    let job = job_name(&name, t1);
    let jobs = ns.api::<RayJob>();
    wait_until(&format!("{job} Running"), TIMEOUT, || async {
        let s = jobs.get(&job).await.ok()?.status?;
        (s.job_deployment_status? == JobDeploymentStatus::Running).then_some(())
    })
    .await;
    assert_eq!(children(&ns, &name).await, [job]);
}
