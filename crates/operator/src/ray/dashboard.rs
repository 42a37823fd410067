//! A client of the Ray dashboard's REST APIs: jobs (`/api/jobs/`: submit,
//! get, list, stop, delete, logs; for RayJob) and Serve
//! (`/api/serve/applications/`: the declarative config and the status of
//! applications and deployments; for RayService), and of a Serve proxy's
//! health endpoint. Every call has a timeout, so a dead head shows up as an
//! error, never as a stuck reconcile.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The time one dashboard call may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A Ray job as the dashboard reports it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct JobInfo {
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub submission_id: Option<String>,
    /// PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED.
    pub status: String,
    #[serde(default)]
    pub entrypoint: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub end_time: Option<u64>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub runtime_env: Option<Value>,
}

/// What `POST /api/jobs/` takes.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SubmitRequest {
    pub entrypoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_env: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_num_cpus: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_num_gpus: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_resources: Option<BTreeMap<String, f64>>,
}

/// What `GET /api/serve/applications/?api_type=declarative` reports.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ServeDetails {
    #[serde(default)]
    pub applications: BTreeMap<String, ServeApplication>,
}

/// One Serve application: NOT_STARTED, DEPLOYING, RUNNING, DEPLOY_FAILED,
/// DELETING or UNHEALTHY, with Ray's message.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ServeApplication {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub deployments: BTreeMap<String, ServeDeployment>,
}

/// One deployment of an application: UPDATING, HEALTHY, UNHEALTHY, ...
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ServeDeployment {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
}

/// Where Ray Serve's proxies answer their health check.
pub const PROXY_HEALTH_PATH: &str = "/-/healthz";
/// How long a proxy may take to answer it (KubeRay's 2 s).
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("the dashboard at {url} did not answer: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("a job with submission ID {0:?} already exists")]
    AlreadyExists(String),
    #[error("the dashboard answered {status} to {url}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("unexpected answer from {url}: {detail}")]
    Decode { url: String, detail: String },
    /// The cluster asks for token authentication and its token could not
    /// be read (the message names the Secret and what is wrong with it).
    #[error("{0}")]
    Token(String),
}

/// How the operator reaches a cluster's dashboard. Production goes to the
/// head service's DNS name; tests point it at a local double.
pub trait Dashboards: Send + Sync {
    /// A client for `cluster`, whose dashboard URL (host:port) is `url`.
    fn client(&self, cluster: &kuberay_api::RayCluster, url: &str) -> DashboardClient;

    /// A client of the Serve proxy of `cluster`'s pod at `pod_ip`, listening
    /// on `port` (the head container's `serve` port).
    fn serve_proxy(
        &self,
        _cluster: &kuberay_api::RayCluster,
        pod_ip: &str,
        port: i32,
    ) -> DashboardClient {
        DashboardClient::with_timeout(&format!("http://{pod_ip}:{port}"), PROXY_TIMEOUT)
    }
}

/// Straight to the head service.
pub struct DirectDashboards;

impl Dashboards for DirectDashboards {
    fn client(&self, _: &kuberay_api::RayCluster, url: &str) -> DashboardClient {
        DashboardClient::new(&format!("http://{url}"))
    }
}

/// A client of `cluster`'s dashboard that authenticates as its Ray pods do
/// when the cluster has `authOptions.mode: token`: the token is read from
/// the cluster's Secret at each call of this function (a cluster's token can
/// be replaced by its owner; a stale copy would lock the operator out).
pub async fn authenticated(
    dashboards: &dyn Dashboards,
    kube: &kube::Client,
    cluster: &kuberay_api::RayCluster,
    url: &str,
) -> Result<DashboardClient, DashboardError> {
    let token = super::auth::dashboard_token(kube, cluster)
        .await
        .map_err(DashboardError::Token)?;
    Ok(dashboards.client(cluster, url).with_token(token))
}

/// The header Ray's dashboard reads the token from (`Authorization` may be
/// taken by a proxy in front of it).
pub const TOKEN_HEADER: &str = "x-ray-authorization";

#[derive(Clone)]
pub struct DashboardClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Never the token itself: clients end up in debug logs.
impl std::fmt::Debug for DashboardClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl DashboardClient {
    /// A client of the dashboard at `base`, e.g. `http://rc-head-svc.ns.svc.cluster.local:8265`.
    pub fn new(base: &str) -> Self {
        Self::with_timeout(base, TIMEOUT)
    }

    /// A client whose calls may each take up to `timeout`.
    pub fn with_timeout(base: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// The same client, sending `token` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, String), DashboardError> {
        let req = match &self.token {
            Some(t) => req.header(TOKEN_HEADER, format!("Bearer {t}")),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|source| DashboardError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|source| DashboardError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        Ok((status, body))
    }

    fn decode<T: serde::de::DeserializeOwned>(url: &str, body: &str) -> Result<T, DashboardError> {
        serde_json::from_str(body).map_err(|e| DashboardError::Decode {
            url: url.to_string(),
            detail: format!("{e}: {}", body.chars().take(200).collect::<String>()),
        })
    }

    fn fail<T>(url: &str, status: u16, body: String) -> Result<T, DashboardError> {
        Err(DashboardError::Status {
            url: url.to_string(),
            status,
            body: body.chars().take(500).collect(),
        })
    }

    /// The job with this submission ID, or `None` if Ray does not know it.
    pub async fn get_job(&self, id: &str) -> Result<Option<JobInfo>, DashboardError> {
        let url = self.url(&format!("/api/jobs/{id}"));
        match self.send(self.http.get(&url), &url).await? {
            (200, body) => Self::decode(&url, &body).map(Some),
            (404, _) => Ok(None),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    pub async fn list_jobs(&self) -> Result<Vec<JobInfo>, DashboardError> {
        let url = self.url("/api/jobs/");
        match self.send(self.http.get(&url), &url).await? {
            (200, body) => Self::decode(&url, &body),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    /// Submits a job; returns its submission ID. A submission ID that Ray
    /// already has is [`DashboardError::AlreadyExists`], which callers that
    /// resubmit after a crash treat as success.
    pub async fn submit(&self, req: &SubmitRequest) -> Result<String, DashboardError> {
        #[derive(Deserialize)]
        struct Submitted {
            submission_id: String,
        }
        let url = self.url("/api/jobs/");
        match self.send(self.http.post(&url).json(req), &url).await? {
            (200, body) => Ok(Self::decode::<Submitted>(&url, &body)?.submission_id),
            (_, body) if body.contains("already exists") => Err(DashboardError::AlreadyExists(
                req.submission_id.clone().unwrap_or_default(),
            )),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    /// Asks Ray to stop the job; `false` if it had already finished.
    pub async fn stop_job(&self, id: &str) -> Result<bool, DashboardError> {
        #[derive(Deserialize)]
        struct Stopped {
            stopped: bool,
        }
        let url = self.url(&format!("/api/jobs/{id}/stop"));
        match self.send(self.http.post(&url), &url).await? {
            (200, body) => Ok(Self::decode::<Stopped>(&url, &body)?.stopped),
            (404, _) => Ok(false),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    /// Deletes a finished job's record; `false` if there was none.
    pub async fn delete_job(&self, id: &str) -> Result<bool, DashboardError> {
        #[derive(Deserialize)]
        struct Deleted {
            deleted: bool,
        }
        let url = self.url(&format!("/api/jobs/{id}"));
        match self.send(self.http.delete(&url), &url).await? {
            (200, body) => Ok(Self::decode::<Deleted>(&url, &body)?.deleted),
            (404, _) => Ok(false),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    /// The job's driver logs so far.
    pub async fn logs(&self, id: &str) -> Result<String, DashboardError> {
        #[derive(Deserialize)]
        struct Logs {
            logs: String,
        }
        let url = self.url(&format!("/api/jobs/{id}/logs"));
        match self.send(self.http.get(&url), &url).await? {
            (200, body) => Ok(Self::decode::<Logs>(&url, &body)?.logs),
            (status, body) => Self::fail(&url, status, body),
        }
    }
}

impl DashboardClient {
    /// The Serve applications and their deployments, as Ray reports them.
    pub async fn serve_applications(&self) -> Result<ServeDetails, DashboardError> {
        let url = self.url("/api/serve/applications/?api_type=declarative");
        match self.send(self.http.get(&url), &url).await? {
            (200, body) => Self::decode(&url, &body),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    /// Submits a declarative Serve config (`serveConfigV2` as JSON); Serve
    /// deploys, updates or deletes applications to match it.
    pub async fn put_serve_applications(&self, config: &Value) -> Result<(), DashboardError> {
        let url = self.url("/api/serve/applications/");
        match self.send(self.http.put(&url).json(config), &url).await? {
            (200..=299, _) => Ok(()),
            (status, body) => Self::fail(&url, status, body),
        }
    }

    /// Whether the Serve proxy at this client's base answers its health
    /// check with 200.
    pub async fn proxy_health(&self) -> Result<(), DashboardError> {
        let url = self.url(PROXY_HEALTH_PATH);
        match self.send(self.http.get(&url), &url).await? {
            (200, _) => Ok(()),
            (status, body) => Self::fail(&url, status, body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_requests_leave_out_what_is_unset() {
        let req = SubmitRequest {
            entrypoint: "python x.py".into(),
            submission_id: Some("job-1".into()),
            entrypoint_num_cpus: Some(0.5),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"entrypoint": "python x.py", "submission_id": "job-1", "entrypoint_num_cpus": 0.5})
        );
    }

    #[test]
    fn job_info_reads_the_dashboards_fields() {
        let info: JobInfo = serde_json::from_value(serde_json::json!({
            "type": "SUBMISSION", "job_id": "02000000", "submission_id": "s", "status": "SUCCEEDED",
            "entrypoint": "echo hi", "message": "Job finished successfully.", "error_type": null,
            "start_time": 1700000000000u64, "end_time": 1700000001000u64, "metadata": {}, "runtime_env": {},
            "driver_info": {"id": "x"}
        }))
        .unwrap();
        assert_eq!(info.status, "SUCCEEDED");
        assert_eq!(info.end_time, Some(1700000001000));
    }

    #[test]
    fn serve_details_read_applications_and_deployments() {
        let details: ServeDetails = serde_json::from_value(serde_json::json!({
            "controller_info": {}, "proxy_location": "EveryNode",
            "applications": {"fruit": {"name": "fruit", "route_prefix": "/fruit", "status": "DEPLOYING",
                "message": "", "last_deployed_time_s": 1.5, "deployments": {
                    "MangoStand": {"name": "MangoStand", "status": "UPDATING", "message": "waiting", "replica_states": {}}}}}
        }))
        .unwrap();
        let app = &details.applications["fruit"];
        assert_eq!(app.status, "DEPLOYING");
        assert_eq!(app.deployments["MangoStand"].message, "waiting");
    }
}
