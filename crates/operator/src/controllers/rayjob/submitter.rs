//! The submitter: the `ray job` command line, the Kubernetes Job that runs
//! it in K8sJobMode, and the head-pod container that runs it in SidecarMode.
//! The command is idempotent against re-runs of the same submission ID: it
//! checks the job's status first, submits with `--no-wait` only when Ray does
//! not know it, then follows the logs.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::names::{
    CREATED_BY, CREATED_BY_LABEL, ORIGINATED_FROM_CR_NAME_LABEL, ORIGINATED_FROM_CRD_LABEL,
};
use kuberay_api::rayjob::JobSubmissionMode;
use kuberay_api::validation::parse_ray_version;
use kuberay_api::{RayClusterSpec, RayJob};

use crate::ray::pod::auth_env;
use crate::ray::pod::command::shell;

pub const SUBMITTER_CONTAINER: &str = "ray-job-submitter";

/// Runtime env YAML as the JSON Ray takes (`--runtime-env-json`).
pub fn runtime_env_json(yaml: &str) -> Result<serde_json::Value, String> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml)
        .map_err(|e| format!("failed to unmarshal RuntimeEnvYAML: {e}"))?;
    serde_json::to_value(v).map_err(|e| format!("RuntimeEnvYAML is not representable as JSON: {e}"))
}

/// A string in double quotes with Go's `strconv.Quote` escapes, as KubeRay
/// passes JSON arguments to the shell.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn health_check(url: &str) -> String {
    format!(
        "python -c \"import urllib.request; r=urllib.request.urlopen('{url}', timeout=10); exit(0 if b'success' in r.read() else 1)\""
    )
}

/// The submit command: K8sJobMode reaches the dashboard at `dashboard_url`
/// (host:port), SidecarMode at 127.0.0.1 in its own pod.
pub fn command(
    job: &RayJob,
    cluster: &RayClusterSpec,
    dashboard_url: &str,
    job_id: &str,
) -> Result<String, String> {
    let spec = &job.spec;
    let mode = spec
        .submission_mode
        .clone()
        .unwrap_or(JobSubmissionMode::K8sJobMode);
    let (address, health_url, idempotent) = match mode {
        JobSubmissionMode::K8sJobMode => {
            let a = if dashboard_url.starts_with("http") {
                dashboard_url.to_string()
            } else {
                format!("http://{dashboard_url}")
            };
            let h = format!("{a}/api/gcs_healthz");
            (a, h, true)
        }
        JobSubmissionMode::SidecarMode => {
            let port = crate::ray::service::dashboard_port(cluster);
            (
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}/api/gcs_healthz"),
                false,
            )
        }
        other => {
            return Err(format!(
                "unsupported submission mode for job submit command: {other}"
            ));
        }
    };
    let mut t: Vec<String> = vec![
        "until".into(),
        health_check(&health_url),
        ">/dev/null 2>&1 ; do echo".into(),
        go_quote(&format!(
            "Waiting for Ray Dashboard GCS to become healthy at {address} ..."
        )),
        "; sleep 2 ; done ;".into(),
    ];
    if idempotent {
        t.push(format!(
            "if ! ray job status --address {address} {job_id} >/dev/null 2>&1 ; then"
        ));
    }
    t.push(format!("ray job submit --address {address}"));
    if idempotent {
        t.push("--no-wait".into());
    }
    if let Some(yaml) = spec
        .runtime_env_yaml
        .as_deref()
        .filter(|y| !y.trim().is_empty())
    {
        t.push(format!(
            "--runtime-env-json {}",
            go_quote(&runtime_env_json(yaml)?.to_string())
        ));
    }
    if let Some(meta) = spec.metadata.as_ref().filter(|m| !m.is_empty()) {
        if let Some(v) = cluster.ray_version.as_deref().filter(|v| !v.is_empty()) {
            let parsed =
                parse_ray_version(v).ok_or_else(|| format!("failed to parse Ray version: {v}"))?;
            if parsed < (2, 6, 0) {
                return Err(
                    "the Ray version must be at least 2.6.0 to use the metadata field".into(),
                );
            }
        }
        let json = serde_json::to_string(&meta.iter().collect::<BTreeMap<_, _>>())
            .expect("a string map serialises");
        t.push(format!("--metadata-json {}", go_quote(&json)));
    }
    if !job_id.is_empty() {
        t.push(format!("--submission-id {job_id}"));
    }
    if let Some(n) = spec.entrypoint_num_cpus.filter(|n| *n > 0.0) {
        t.push(format!("--entrypoint-num-cpus {n:.6}"));
    }
    if let Some(n) = spec.entrypoint_num_gpus.filter(|n| *n > 0.0) {
        t.push(format!("--entrypoint-num-gpus {n:.6}"));
    }
    if let Some(r) = spec
        .entrypoint_resources
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        t.push(format!("--entrypoint-resources {}", go_quote(r)));
    }
    t.push(format!(
        "-- {} ;",
        spec.entrypoint.as_deref().unwrap_or_default().trim()
    ));
    if idempotent {
        t.push(format!(
            "fi ; ray job logs --address {address} --follow {job_id}"
        ));
    }
    Ok(t.join(" "))
}

fn origin_labels(job: &RayJob) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            ORIGINATED_FROM_CR_NAME_LABEL.to_string(),
            job.metadata.name.clone().unwrap_or_default(),
        ),
        (ORIGINATED_FROM_CRD_LABEL.to_string(), "RayJob".to_string()),
        (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
    ])
}

/// KubeRay's default submitter: the head's image, modest resources.
pub fn default_container(cluster: &RayClusterSpec) -> Container {
    let q = |v: &str| Quantity(v.into());
    Container {
        name: SUBMITTER_CONTAINER.into(),
        image: cluster
            .head_group_spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone()),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), q("1")),
                ("memory".to_string(), q("1Gi")),
            ])),
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), q("500m")),
                ("memory".to_string(), q("200Mi")),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Gives a submitter container its command (unless it brings its own) and
/// the environment that tells it where and what to submit.
pub fn configure(
    c: &mut Container,
    cmd: String,
    dashboard_url: &str,
    job_id: &str,
    sidecar: bool,
    login: bool,
) {
    if c.command.as_ref().is_none_or(|c| c.is_empty()) || sidecar {
        let mut sh = shell(login);
        // -e: stop at the first failing command.
        sh[1] = if login { "-cel".into() } else { "-ce".into() };
        c.command = Some(sh);
        c.args = Some(vec![cmd]);
    }
    let env = c.env.get_or_insert_with(Vec::new);
    for (k, v) in [
        ("PYTHONUNBUFFERED", "1"),
        ("RAY_DASHBOARD_ADDRESS", dashboard_url),
        ("RAY_JOB_SUBMISSION_ID", job_id),
    ] {
        env.push(EnvVar {
            name: k.into(),
            value: Some(v.into()),
            value_from: None,
        });
    }
}

/// The K8sJobMode submitter Job, named like the RayJob. `cluster_name`
/// names the cluster's token Secret when it asks for token authentication.
pub fn job(
    rayjob: &RayJob,
    cluster: &RayClusterSpec,
    cluster_name: &str,
    dashboard_url: &str,
    job_id: &str,
    login: bool,
) -> Result<Job, String> {
    let spec = &rayjob.spec;
    let mut template = spec
        .submitter_pod_template
        .clone()
        .unwrap_or_else(|| PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![default_container(cluster)],
                restart_policy: Some("Never".into()),
                ..Default::default()
            }),
        });
    let cmd = command(rayjob, cluster, dashboard_url, job_id)?;
    let pod = template.spec.get_or_insert_with(Default::default);
    if pod.containers.is_empty() {
        pod.containers.push(default_container(cluster));
    }
    configure(
        &mut pod.containers[0],
        cmd,
        dashboard_url,
        job_id,
        false,
        login,
    );
    // `ray job` authenticates with the cluster's token, as its pods do.
    auth_env(cluster, cluster_name, &mut pod.containers[0]);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(origin_labels(rayjob));
    Ok(Job {
        metadata: ObjectMeta {
            name: rayjob.metadata.name.clone(),
            namespace: rayjob.metadata.namespace.clone(),
            labels: Some(origin_labels(rayjob)),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // Fewer retries than Kubernetes' 6: the command is idempotent,
            // three attempts are plenty.
            backoff_limit: Some(
                spec.submitter_config
                    .as_ref()
                    .and_then(|c| c.backoff_limit)
                    .unwrap_or(2),
            ),
            template,
            ..Default::default()
        }),
        status: None,
    })
}

/// The SidecarMode submitter, added to the head pod.
pub fn sidecar(
    rayjob: &RayJob,
    cluster: &RayClusterSpec,
    cluster_name: &str,
    job_id: &str,
    login: bool,
) -> Result<Container, String> {
    let mut c = default_container(cluster);
    let cmd = command(rayjob, cluster, "", job_id)?;
    configure(&mut c, cmd, "", job_id, true, login);
    auth_env(cluster, cluster_name, &mut c);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rayjob(extra: serde_json::Value) -> RayJob {
        let mut v = serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "job", "namespace": "ns"},
            "spec": {"entrypoint": " echo no quote 'single quote' \"double quote\" ",
                     "rayClusterSpec": {"rayVersion": "2.52.0", "headGroupSpec": {"template": {"spec": {"containers": [{"name": "h", "image": "rayproject/ray:2.52.0"}]}}}}}
        });
        if let (Some(s), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_k8s_job_command_is_idempotent_and_passes_every_option() {
        let j = rayjob(serde_json::json!({
            "runtimeEnvYAML": "test: test", "metadata": {"testKey": "testValue"}, "entrypointNumCpus": 1,
            "entrypointNumGpus": 0.5, "entrypointResources": "{\"Custom_1\": 1, \"Custom_2\": 5.5}"
        }));
        let cluster = j.spec.ray_cluster_spec.clone().unwrap();
        let cmd = command(&j, &cluster, "http://127.0.0.1:8265", "testJobId").unwrap();
        let tail = r#"if ! ray job status --address http://127.0.0.1:8265 testJobId >/dev/null 2>&1 ; then ray job submit --address http://127.0.0.1:8265 --no-wait --runtime-env-json "{\"test\":\"test\"}" --metadata-json "{\"testKey\":\"testValue\"}" --submission-id testJobId --entrypoint-num-cpus 1.000000 --entrypoint-num-gpus 0.500000 --entrypoint-resources "{\"Custom_1\": 1, \"Custom_2\": 5.5}" -- echo no quote 'single quote' "double quote" ; fi ; ray job logs --address http://127.0.0.1:8265 --follow testJobId"#;
        assert!(cmd.ends_with(tail), "{cmd}");
        assert!(cmd.starts_with("until python -c \"import urllib.request; r=urllib.request.urlopen('http://127.0.0.1:8265/api/gcs_healthz', timeout=10)"), "{cmd}");
    }

    #[test]
    fn the_submitter_job_has_kuberays_shape() {
        let j = rayjob(serde_json::json!({}));
        let cluster = j.spec.ray_cluster_spec.clone().unwrap();
        let job = job(
            &j,
            &cluster,
            "job-raycluster-x",
            "job-head-svc.ns.svc.cluster.local:8265",
            "job-abcde",
            false,
        )
        .unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("job"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(c.name, "ray-job-submitter");
        assert_eq!(c.image.as_deref(), Some("rayproject/ray:2.52.0"));
        assert_eq!(c.command.as_deref().unwrap(), ["/bin/bash", "-ce", "--"]);
        let env: Vec<(&str, &str)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
            .collect();
        assert!(env.contains(&(
            "RAY_DASHBOARD_ADDRESS",
            "job-head-svc.ns.svc.cluster.local:8265"
        )));
        assert!(env.contains(&("RAY_JOB_SUBMISSION_ID", "job-abcde")));
        assert!(
            c.args.as_ref().unwrap()[0]
                .contains("--address http://job-head-svc.ns.svc.cluster.local:8265 --no-wait")
        );
    }

    #[test]
    fn submitters_authenticate_with_the_clusters_token() {
        let mut j = rayjob(serde_json::json!({}));
        let mut cluster = j.spec.ray_cluster_spec.clone().unwrap();
        cluster.auth_options =
            serde_json::from_value(serde_json::json!({"mode": "token"})).unwrap();
        j.spec.ray_cluster_spec = Some(cluster.clone());
        let token_env = |c: &Container| {
            let env = c.env.clone().unwrap_or_default();
            let mode = env
                .iter()
                .find(|e| e.name == "RAY_AUTH_MODE")
                .and_then(|e| e.value.clone());
            let secret = env
                .iter()
                .find(|e| e.name == "RAY_AUTH_TOKEN")
                .and_then(|e| e.value_from.clone()?.secret_key_ref)
                .map(|s| (s.name, s.key));
            (mode, secret)
        };
        let want = (
            Some("token".to_string()),
            Some(("rc".to_string(), "auth_token".to_string())),
        );
        let k8s_job = job(&j, &cluster, "rc", "rc-head-svc:8265", "id", false).unwrap();
        let pod = k8s_job.spec.unwrap().template.spec.unwrap();
        assert_eq!(token_env(&pod.containers[0]), want);
        assert_eq!(
            token_env(&sidecar(&j, &cluster, "rc", "id", false).unwrap()),
            want
        );
    }

    #[test]
    fn sidecars_submit_to_their_own_head_and_block() {
        let j = rayjob(serde_json::json!({"submissionMode": "SidecarMode"}));
        let cluster = j.spec.ray_cluster_spec.clone().unwrap();
        let c = sidecar(&j, &cluster, "job-raycluster-x", "id", false).unwrap();
        let cmd = &c.args.unwrap()[0];
        assert!(
            cmd.contains("ray job submit --address http://127.0.0.1:8265 --submission-id id --"),
            "{cmd}"
        );
        assert!(!cmd.contains("--no-wait"));
    }

    #[test]
    fn old_ray_cannot_take_metadata() {
        let mut j = rayjob(serde_json::json!({"metadata": {"a": "b"}}));
        j.spec.ray_cluster_spec.as_mut().unwrap().ray_version = Some("2.5.0".into());
        let cluster = j.spec.ray_cluster_spec.clone().unwrap();
        assert!(
            command(&j, &cluster, "x:1", "id")
                .unwrap_err()
                .contains("at least 2.6.0")
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }
}
