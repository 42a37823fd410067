//! A stand-in for a Ray head's job and Serve APIs on loopback, for RayJob
//! and RayService tests on simulated nodes (where no Ray runs). It speaks
//! the same REST API as the real dashboard, which the dashboard client's
//! own tests and the end-to-end tests check against real Ray; tests drive
//! job states and Serve applications through it. Serve state is kept per
//! RayService cluster (its client's URL carries the cluster's name), so a
//! test sees which cluster got which config.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use kuberay_api::RayCluster;
use kuberay_operator::ray::dashboard::DashboardClient;
use kuberay_operator::ray::dashboard::Dashboards;
use serde_json::{Value, json};

/// Serve as the fake plays it.
#[derive(Default)]
pub struct ServeState {
    /// Applications (as `GET /api/serve/applications/` lists them) by cluster.
    apps: BTreeMap<String, Value>,
    /// Every accepted or refused `PUT`, as (cluster, body).
    pub submissions: Vec<(String, Value)>,
    /// The error a `PUT` gets instead of success.
    reject: Option<String>,
    /// The status submitted applications get (RUNNING unless set).
    deploy_status: Option<String>,
    /// Clusters whose Serve proxy fails its health check.
    unhealthy_proxies: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeDashboard {
    jobs: Arc<Mutex<BTreeMap<String, Value>>>,
    pub serve: Arc<Mutex<ServeState>>,
    /// Every submit request body, in order.
    pub submissions: Arc<Mutex<Vec<Value>>>,
    pub base: String,
}

type S = FakeDashboard;

async fn get_job(State(s): State<S>, Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    match s.jobs.lock().unwrap().get(&id) {
        Some(j) => (StatusCode::OK, Json(j.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))),
    }
}

async fn list(State(s): State<S>) -> Json<Value> {
    Json(Value::Array(
        s.jobs.lock().unwrap().values().cloned().collect(),
    ))
}

async fn submit(State(s): State<S>, Json(body): Json<Value>) -> (StatusCode, String) {
    s.submissions.lock().unwrap().push(body.clone());
    let id = body["submission_id"]
        .as_str()
        .unwrap_or("generated")
        .to_string();
    let mut jobs = s.jobs.lock().unwrap();
    if jobs.contains_key(&id) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Job with submission_id {id} already exists. Please use a different submission_id."
            ),
        );
    }
    jobs.insert(id.clone(), job(&id, "PENDING"));
    (
        StatusCode::OK,
        json!({"job_id": id, "submission_id": id}).to_string(),
    )
}

async fn stop(State(s): State<S>, Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    let mut jobs = s.jobs.lock().unwrap();
    match jobs.get_mut(&id) {
        Some(j)
            if !matches!(
                j["status"].as_str(),
                Some("STOPPED" | "SUCCEEDED" | "FAILED")
            ) =>
        {
            j["status"] = json!("STOPPED");
            (StatusCode::OK, Json(json!({"stopped": true})))
        }
        Some(_) => (StatusCode::OK, Json(json!({"stopped": false}))),
        None => (StatusCode::NOT_FOUND, Json(json!({}))),
    }
}

fn job(id: &str, status: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let terminal = matches!(status, "STOPPED" | "SUCCEEDED" | "FAILED");
    json!({
        "type": "SUBMISSION", "job_id": null, "submission_id": id, "status": status,
        "entrypoint": "python main.py", "message": format!("Job is {status}"),
        "start_time": now, "end_time": if terminal { json!(now) } else { json!(0) },
        "metadata": {}, "runtime_env": {}
    })
}

async fn serve_get(State(s): State<S>, Path(cluster): Path<String>) -> Json<Value> {
    let st = s.serve.lock().unwrap();
    let apps = st.apps.get(&cluster).cloned().unwrap_or_else(|| json!({}));
    Json(json!({"controller_info": {}, "proxy_location": "EveryNode", "applications": apps}))
}

async fn serve_put(
    State(s): State<S>,
    Path(cluster): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, String) {
    let mut st = s.serve.lock().unwrap();
    st.submissions.push((cluster.clone(), body.clone()));
    if let Some(err) = st.reject.clone() {
        return (StatusCode::BAD_REQUEST, err);
    }
    let status = st.deploy_status.clone().unwrap_or_else(|| "RUNNING".into());
    let mut apps = serde_json::Map::new();
    for app in body["applications"].as_array().into_iter().flatten() {
        let name = app["name"].as_str().unwrap_or("default").to_string();
        let mut deployments = serde_json::Map::new();
        for d in app["deployments"].as_array().into_iter().flatten() {
            let d = d["name"].as_str().unwrap_or("Deployment");
            deployments.insert(
                d.into(),
                json!({"name": d, "status": "HEALTHY", "message": ""}),
            );
        }
        if deployments.is_empty() {
            deployments.insert(
                "Deployment".into(),
                json!({"name": "Deployment", "status": "HEALTHY", "message": ""}),
            );
        }
        apps.insert(
            name.clone(),
            json!({"name": name, "status": status, "message": "", "deployments": deployments}),
        );
    }
    st.apps.insert(cluster, Value::Object(apps));
    (StatusCode::OK, String::new())
}

async fn proxy_health(
    State(s): State<S>,
    Path(cluster): Path<String>,
) -> (StatusCode, &'static str) {
    if s.serve.lock().unwrap().unhealthy_proxies.contains(&cluster) {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    } else {
        (StatusCode::OK, "success")
    }
}

impl FakeDashboard {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut s = FakeDashboard {
            base: format!("http://{}", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = Router::new()
            .route("/api/jobs/", get(list).post(submit))
            .route("/api/jobs/{id}", get(get_job))
            .route("/api/jobs/{id}/stop", post(stop))
            .route(
                "/c/{cluster}/api/serve/applications/",
                get(serve_get).put(serve_put),
            )
            .route("/c/{cluster}/-/healthz", get(proxy_health))
            .with_state(s.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        s.base = s.base.clone();
        s
    }

    /// Sets (or creates) a job's status, as Ray would report it.
    pub fn set(&self, id: &str, status: &str) {
        self.jobs.lock().unwrap().insert(id.into(), job(id, status));
    }

    pub fn status(&self, id: &str) -> Option<String> {
        self.jobs
            .lock()
            .unwrap()
            .get(id)
            .and_then(|j| j["status"].as_str().map(String::from))
    }
}

impl FakeDashboard {
    /// Every Serve config submitted (or refused), as (cluster, body).
    pub fn submissions(&self) -> Vec<(String, Value)> {
        self.serve.lock().unwrap().submissions.clone()
    }

    /// The configs submitted to `cluster`.
    pub fn submitted_to(&self, cluster: &str) -> usize {
        self.submissions()
            .iter()
            .filter(|(c, _)| c == cluster)
            .count()
    }

    /// Makes every `PUT` fail with `error` (or succeed again with `None`).
    pub fn reject_serve(&self, error: Option<&str>) {
        self.serve.lock().unwrap().reject = error.map(String::from);
    }

    /// The status that applications submitted from now on get.
    pub fn deploy_as(&self, status: &str) {
        self.serve.lock().unwrap().deploy_status = Some(status.into());
    }

    /// Sets one application's status (and one deployment's) on `cluster`.
    pub fn set_app(&self, cluster: &str, app: &str, status: &str, deployment: (&str, &str, &str)) {
        let mut st = self.serve.lock().unwrap();
        let apps = st.apps.entry(cluster.into()).or_insert_with(|| json!({}));
        apps[app] = json!({"name": app, "status": status, "message": format!("{app} is {status}"),
            "deployments": {deployment.0: {"name": deployment.0, "status": deployment.1, "message": deployment.2}}});
    }

    /// Forgets `cluster`'s applications, as a restarted head without GCS
    /// fault tolerance does.
    pub fn restart_head(&self, cluster: &str) {
        self.serve.lock().unwrap().apps.remove(cluster);
    }

    /// Makes the Serve proxy of `cluster`'s head fail its health check.
    pub fn proxy_unhealthy(&self, cluster: &str) {
        self.serve
            .lock()
            .unwrap()
            .unhealthy_proxies
            .push(cluster.into());
    }
}

fn is_rayservice_cluster(c: &RayCluster) -> bool {
    c.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("ray.io/originated-from-crd"))
        .is_some_and(|v| v == "RayService")
}

impl Dashboards for FakeDashboard {
    fn client(&self, c: &RayCluster, _: &str) -> DashboardClient {
        if is_rayservice_cluster(c) {
            let name = c.metadata.name.clone().unwrap_or_default();
            return DashboardClient::new(&format!("{}/c/{name}", self.base));
        }
        DashboardClient::new(&self.base)
    }

    fn serve_proxy(&self, c: &RayCluster, _: &str, _: i32) -> DashboardClient {
        let name = c.metadata.name.clone().unwrap_or_default();
        DashboardClient::new(&format!("{}/c/{name}", self.base))
    }
}
