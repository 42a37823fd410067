//! A stand-in for a Ray head's job API on loopback, for RayJob tests on
//! simulated nodes (where no Ray runs). It speaks the same REST API as the
//! real dashboard, which the dashboard client's own tests check against a
//! real Ray head; tests drive job states through it.

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

#[derive(Clone, Default)]
pub struct FakeDashboard {
    jobs: Arc<Mutex<BTreeMap<String, Value>>>,
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

impl Dashboards for FakeDashboard {
    fn client(&self, _: &RayCluster, _: &str) -> DashboardClient {
        DashboardClient::new(&self.base)
    }
}
