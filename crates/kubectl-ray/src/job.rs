//! `kubectl ray job submit`: creates a RayJob in InteractiveMode (generated
//! from flags, or read with `-f`), waits for its RayCluster, forwards the
//! dashboard, runs `ray job submit` with the user's flags and the recorded
//! submission id, then follows the RayJob to its end.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kuberay_api::rayjob::{JobStatus, JobSubmissionMode};
use kuberay_api::{RayCluster, RayJob};

use crate::cli::{JobCommand, JobSubmitArgs, to_map};
use crate::config::{ClusterConfig, Head, WorkerGroup};
use crate::connect::{Kube, KubeFlags, describe};
use crate::create::FIELD_MANAGER;
use crate::generation::{RayJobObject, to_yaml};
use crate::portforward::{Forward, listen};
use crate::validation::validate_quantity_flags;
use crate::wait::is_provisioned;

const DASHBOARD_PORT: u16 = 8265;
const PORT_FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(2);

pub async fn run(flags: &KubeFlags, what: JobCommand, explicit: &BTreeSet<String>) -> Result<()> {
    let JobCommand::Submit(a) = what;
    submit(flags, *a, explicit).await
}

/// What the checks before submitting settle.
struct Plan {
    job_from_file: Option<RayJob>,
    working_dir: String,
    runtime_env_json: Option<String>,
    ttl: i32,
    shutdown: bool,
}

/// KubeRay's checks and defaults, before anything is created.
fn plan(a: &JobSubmitArgs, explicit: &BTreeSet<String>) -> Result<Plan> {
    let mut working_dir = a.working_dir.clone().unwrap_or_default();
    if let Some(env) = &a.runtime_env {
        regular_file(env, "Runtime Env file")?;
        if working_dir.is_empty() {
            working_dir = runtime_env_working_dir(env)?;
        }
    }
    let ttl_given = explicit.contains("ttl_seconds_after_finished");
    let mut ttl = a.ttl_seconds_after_finished.unwrap_or(0);
    let mut shutdown = ttl_given;
    if ttl < 0 {
        bail!("--ttl-seconds-after-finished must be greater than or equal to 0");
    }
    let mut runtime_env_json = a.runtime_env_json.clone();
    let mut job_from_file = None;
    if let Some(file) = &a.filename {
        regular_file(file, "Ray Job file")?;
        let text = std::fs::read_to_string(file)?;
        let mut job: RayJob = serde_yaml::from_str(&text)
            .map_err(|e| anyhow!("Failed to decode RayJob Yaml: {e}"))?;
        if job.spec.submission_mode != Some(JobSubmissionMode::InteractiveMode) {
            bail!("Submission mode of the Ray Job must be set to 'InteractiveMode'");
        }
        if job.spec.backoff_limit.is_some_and(|b| b > 0) {
            bail!("BackoffLimit is incompatible with InteractiveMode");
        }
        let yaml_env = job.spec.runtime_env_yaml.clone().unwrap_or_default();
        if a.runtime_env.is_none() && runtime_env_json.is_none() && !yaml_env.is_empty() {
            let v: serde_json::Value = serde_yaml::from_str(&yaml_env)
                .map_err(|e| anyhow!("Failed to convert runtime env to json: {e}"))?;
            runtime_env_json = Some(serde_json::to_string(&v)?);
        }
        if ttl_given {
            job.spec.ttl_seconds_after_finished = Some(ttl);
            job.spec.shutdown_after_job_finishes = Some(shutdown);
        }
        ttl = job.spec.ttl_seconds_after_finished.unwrap_or(0);
        shutdown = job.spec.shutdown_after_job_finishes.unwrap_or(false);
        if ttl < 0 {
            bail!("ttlSecondsAfterFinished must be greater than or equal to 0");
        }
        if !shutdown && ttl > 0 {
            bail!(
                "ttlSecondsAfterFinished is only supported when shutdownAfterJobFinishes is set to true"
            );
        }
        job_from_file = Some(job);
    } else if a.name.as_deref().unwrap_or("").trim().is_empty() {
        bail!("Must set either yaml file (--filename) or set Ray job name (--name)");
    }
    if working_dir.is_empty() {
        bail!("working directory is required, use --working-dir or set with runtime env");
    }
    let s = &a.shape;
    validate_quantity_flags(
        &[
            ("head-cpu", &s.head_cpu),
            ("head-gpu", &s.head_gpu),
            ("head-memory", &s.head_memory),
            ("worker-cpu", &s.worker_cpu),
            ("worker-gpu", &s.worker_gpu),
            ("worker-memory", &s.worker_memory),
        ],
        explicit,
    )?;
    if a.address.as_deref().is_some_and(|s| s.trim().is_empty()) {
        bail!("--address was provided but is empty");
    }
    Ok(Plan {
        job_from_file,
        working_dir,
        runtime_env_json,
        ttl,
        shutdown,
    })
}

/// A file that exists and is a regular file, or KubeRay's error.
fn regular_file(path: &Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Err(e) => bail!("{what} does not exist. Failed with: {e}"),
        Ok(m) if !m.is_file() => bail!("Filename given is not a regular file: {}", path.display()),
        Ok(_) => Ok(()),
    }
}

fn runtime_env_working_dir(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).context("Error while checking runtime env")?;
    let v: serde_yaml::Value =
        serde_yaml::from_str(&text).context("Error while checking runtime env")?;
    Ok(v.get("working_dir")
        .and_then(|w| w.as_str())
        .unwrap_or("")
        .to_string())
}

/// A submission id as Ray makes them: `raysubmit_` and 16 characters
/// without look-alikes.
pub fn submission_id() -> Result<String> {
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ123456789";
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("failed to generate submission ID")?;
    let id: String = bytes
        .iter()
        .map(|b| CHARS[usize::from(*b) % CHARS.len()] as char)
        .collect();
    Ok(format!("raysubmit_{id}"))
}

/// The `ray job submit` command line, with the user's flags in KubeRay's order.
fn ray_command(a: &JobSubmitArgs, p: &Plan, address: &str, id: &str) -> Result<Vec<String>> {
    let mut c: Vec<String> = ["ray", "job", "submit", "--address", address]
        .map(String::from)
        .to_vec();
    let opt = |c: &mut Vec<String>, flag: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            c.push(flag.into());
            c.push(v);
        }
    };
    opt(
        &mut c,
        "--runtime-env",
        a.runtime_env.as_ref().map(|p| p.display().to_string()),
    );
    opt(&mut c, "--runtime-env-json", p.runtime_env_json.clone());
    opt(&mut c, "--submission-id", Some(id.to_string()));
    opt(
        &mut c,
        "--entrypoint-num-cpus",
        (a.entrypoint_num_cpus > 0.0).then(|| format!("{:.6}", a.entrypoint_num_cpus)),
    );
    opt(
        &mut c,
        "--entrypoint-num-gpus",
        (a.entrypoint_num_gpus > 0.0).then(|| format!("{:.6}", a.entrypoint_num_gpus)),
    );
    opt(
        &mut c,
        "--entrypoint-memory",
        (a.entrypoint_memory > 0).then(|| a.entrypoint_memory.to_string()),
    );
    opt(
        &mut c,
        "--entrypoint-resource",
        a.entrypoint_resources.clone(),
    );
    opt(&mut c, "--metadata-json", a.metadata_json.clone());
    if a.no_wait {
        c.push("--no-wait".into());
    }
    opt(&mut c, "--headers", a.headers.clone());
    opt(&mut c, "--verify", a.verify.clone());
    opt(&mut c, "--log-style", a.log_style.clone());
    opt(&mut c, "--log-color", a.log_color.clone());
    if a.verbose {
        c.push("--verbose".into());
    }
    c.push("--working-dir".into());
    c.push(p.working_dir.clone());
    c.push("--".into());
    let entrypoint = a.entrypoint.join(" ");
    c.extend(
        shlex::split(&entrypoint)
            .ok_or_else(|| anyhow!("cannot split the entrypoint {entrypoint:?}"))?,
    );
    Ok(c)
}

fn generated_job(a: &JobSubmitArgs, p: &Plan, namespace: &str, id: &str) -> serde_json::Value {
    let cluster = ClusterConfig {
        ray_version: Some(a.shape.ray_version.clone()),
        image: Some(a.shape.image.clone()),
        head: Some(Head {
            cpu: Some(a.shape.head_cpu.clone()),
            memory: Some(a.shape.head_memory.clone()),
            gpu: Some(a.shape.head_gpu.clone()),
            node_selectors: to_map(&a.shape.head_node_selectors),
            ..Default::default()
        }),
        worker_groups: Some(vec![WorkerGroup {
            cpu: Some(a.shape.worker_cpu.clone()),
            memory: Some(a.shape.worker_memory.clone()),
            gpu: Some(a.shape.worker_gpu.clone()),
            replicas: a.shape.worker_replicas,
            node_selectors: to_map(&a.shape.worker_node_selectors),
            ..Default::default()
        }]),
        ..Default::default()
    };
    RayJobObject {
        name: a.name.as_deref().unwrap_or_default(),
        namespace,
        entrypoint: &a.entrypoint.join(" "),
        submission_id: id,
        ttl_seconds_after_finished: p.ttl,
        shutdown_after_job_finishes: p.shutdown,
        cluster,
    }
    .ray_job()
}

async fn submit(flags: &KubeFlags, a: JobSubmitArgs, explicit: &BTreeSet<String>) -> Result<()> {
    if a.entrypoint.is_empty() {
        bail!(
            "an entrypoint is required: kubectl ray job submit [OPTIONS] -f/--filename RAYJOB_YAML -- ENTRYPOINT"
        );
    }
    let p = plan(&a, explicit)?;
    let kube = if a.dry_run && a.filename.is_none() {
        None
    } else {
        Some(flags.connect().await?)
    };
    let namespace = match (&kube, &flags.namespace) {
        (Some(k), _) => k.namespace.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => flags
            .connect()
            .await
            .map(|k| k.namespace)
            .unwrap_or_else(|_| "default".into()),
    };
    let id = match &a.submission_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let id = submission_id()?;
            println!("Generated submission ID for Ray job: {id}");
            id
        }
    };
    let name = match &p.job_from_file {
        None => {
            let job = generated_job(&a, &p, &namespace, &id);
            let Some(kube) = &kube else {
                println!("{}", to_yaml(&job));
                return Ok(());
            };
            let name = a.name.clone().unwrap_or_default();
            Api::<RayJob>::namespaced(kube.client.clone(), &namespace)
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&job),
                )
                .await
                .map_err(|e| anyhow!("Failed to apply generated YAML: {}", describe(&e)))?
                .name_any()
        }
        Some(job) => {
            let mut job = job.clone();
            job.spec.job_id = Some(id.clone());
            job.metadata.namespace = Some(namespace.clone());
            let kube = kube.as_ref().expect("connected for -f");
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            Api::<RayJob>::namespaced(kube.client.clone(), &namespace)
                .create(&pp, &job)
                .await
                .map_err(|e| anyhow!("Error when creating RayJob CR: {}", describe(&e)))?
                .name_any()
        }
    };
    let kube = kube.expect("connected unless a dry run");
    println!("Submitted RayJob {name}.");
    let cluster = wait_for_cluster(&kube, &name, a.cluster_timeout).await?;

    let (address, _forward) = match &a.address {
        Some(addr) => {
            println!("Using address {addr} (no port-forwarding)");
            (addr.clone(), None)
        }
        None => {
            let (addr, task) = forward_dashboard(&kube, &cluster).await?;
            (addr, Some(AbortOnDrop(task)))
        }
    };
    let command = ray_command(&a, &p, &address, &id)?;
    println!("Ray command: [{}]", command.join(" "));
    println!("Running Ray submit job command...");
    let status = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .await
        .map_err(|e| anyhow!("cannot run `ray` ({e}): install the Ray CLI (pip install 'ray[default]') and put it on PATH"))?;
    if !status.success() {
        bail!("Error occurred with Ray job submit: {status}");
    }
    if a.no_wait {
        println!("Ray job submitted with ID {id}");
        return Ok(());
    }
    follow(&kube, &name).await
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for the RayJob's cluster to be named, then ready; on timeout the
/// RayJob is deleted, as KubeRay does.
async fn wait_for_cluster(kube: &Kube, job: &str, timeout: Duration) -> Result<String> {
    let jobs: Api<RayJob> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let clusters: Api<RayCluster> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    let cluster = loop {
        let j = jobs
            .get(job)
            .await
            .map_err(|e| anyhow!("Failed to get Ray Job status: {}", describe(&e)))?;
        if let Some(c) = j
            .status
            .and_then(|s| s.ray_cluster_name)
            .filter(|c| !c.is_empty())
        {
            break c;
        }
        if tokio::time::Instant::now() > deadline {
            break String::new();
        }
        tokio::time::sleep(POLL).await;
    };
    println!("Waiting for RayCluster");
    if !cluster.is_empty() {
        println!("Checking Cluster Status for cluster {cluster}...");
    }
    let mut ready = false;
    while !cluster.is_empty() && tokio::time::Instant::now() <= deadline {
        tokio::time::sleep(POLL).await;
        let rc = clusters.get(&cluster).await.map_err(|e| {
            anyhow!(
                "Failed to get cluster information with error: {}",
                describe(&e)
            )
        })?;
        if is_provisioned(&rc) {
            ready = true;
            break;
        }
        println!("Cluster is not ready");
    }
    if !ready {
        println!("Deleting RayJob...");
        jobs.delete(job, &DeleteParams::default())
            .await
            .map_err(|e| {
                anyhow!(
                    "Failed to clean up Ray job after time out.: {}",
                    describe(&e)
                )
            })?;
        println!("Cleaned Up RayJob: {job}");
        if cluster.is_empty() {
            bail!(
                "Timed out waiting for cluster: RayJob {job} named no RayCluster within {}s (is the KubeRay operator running?)",
                timeout.as_secs()
            );
        }
        bail!(
            "Timed out waiting for cluster {cluster} to be ready within {}s",
            timeout.as_secs()
        );
    }
    Ok(cluster)
}

/// Forwards the head's dashboard to localhost:8265 (another free port if
/// that one is taken) and waits until the dashboard answers.
async fn forward_dashboard(
    kube: &Kube,
    cluster: &str,
) -> Result<(String, tokio::task::JoinHandle<Result<()>>)> {
    let target = crate::resource::target(kube, crate::resource::Kind::RayCluster, cluster)
        .await
        .context("Failed to find service name")?;
    if target.head_service.is_empty() {
        bail!(
            "Failed to find service name: RayCluster {cluster} names no head service in its status"
        );
    }
    let listener = listen(DASHBOARD_PORT, true).await?;
    let port = listener.local_addr()?.port();
    let forward = Forward {
        client: kube.client.clone(),
        namespace: kube.namespace.clone(),
        service: target.head_service.clone(),
        service_port: DASHBOARD_PORT,
        verbose: false,
    };
    println!("Port forwarding service {}", target.head_service);
    let task = tokio::spawn(forward.serve(listener));
    let address = format!("http://localhost:{port}");
    println!("Waiting for port forwarding...");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = tokio::time::Instant::now() + PORT_FORWARD_TIMEOUT;
    loop {
        match http.get(&address).send().await {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => println!("Dashboard answered {}", r.status()),
            Err(e) => println!("Error occurred when waiting for port forwarding: {e}"),
        }
        if tokio::time::Instant::now() > deadline {
            task.abort();
            bail!(
                "Timed out waiting for port forwarding: the dashboard of {cluster} did not answer on {address}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
    println!("Port forwarding started on {address}");
    Ok((address, task))
}

/// Follows the RayJob until Ray reports a final status.
async fn follow(kube: &Kube, name: &str) -> Result<()> {
    let jobs: Api<RayJob> = Api::namespaced(kube.client.clone(), &kube.namespace);
    println!("Waiting for job to finish...");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(jobs, config).applied_objects().boxed();
    while let Some(event) = stream.next().await {
        let job = event.map_err(|e| anyhow!("failed to watch RayJob: {e}"))?;
        let status = job.status.clone().unwrap_or_default();
        let job_status = status.job_status.clone().unwrap_or(JobStatus::New);
        let id = status
            .job_id
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "unknown".into());
        println!("Current status: {job_status} (RayJob: {name}, JobID: {id})");
        match job_status {
            JobStatus::Succeeded | JobStatus::Stopped => {
                println!("Job {id} finished with status {job_status}.");
                return Ok(());
            }
            JobStatus::Failed => match status.message.filter(|m| !m.is_empty()) {
                Some(m) => bail!("job {id} failed: {m}"),
                None => bail!("job {id} failed with status {job_status}"),
            },
            _ => {}
        }
    }
    eprintln!("rayjob {name} watch ended without a clear terminal state");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn args(extra: &[&str]) -> (JobSubmitArgs, BTreeSet<String>) {
        let mut argv = vec!["kubectl ray", "job", "submit"];
        argv.extend_from_slice(extra);
        let (cli, explicit) = crate::parse(&argv).unwrap();
        let Command::Job {
            what: JobCommand::Submit(a),
        } = cli.command
        else {
            panic!()
        };
        (*a, explicit)
    }

    #[test]
    fn a_generated_job_is_kuberays() {
        let (a, explicit) = args(&[
            "--name",
            "j",
            "--working-dir",
            ".",
            "--ttl-seconds-after-finished",
            "30",
            "--",
            "python",
            "-c",
            "print(1)",
        ]);
        let p = plan(&a, &explicit).unwrap();
        let job = generated_job(&a, &p, "ns", "raysubmit_x");
        assert_eq!(job["spec"]["submissionMode"], "InteractiveMode");
        assert_eq!(job["spec"]["jobId"], "raysubmit_x");
        assert_eq!(job["spec"]["entrypoint"], "python -c print(1)");
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 30);
        assert_eq!(job["spec"]["shutdownAfterJobFinishes"], true);
        let group = &job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0];
        assert_eq!(group["groupName"], "default-group");
        assert!(group.get("numOfHosts").is_none());
    }

    #[test]
    fn the_ray_command_carries_the_users_flags() {
        let (a, explicit) = args(&[
            "--name",
            "j",
            "--working-dir",
            "/w",
            "--entrypoint-num-cpus",
            "1",
            "--no-wait",
            "--metadata-json",
            "{}",
            "--",
            "python",
            "my script.py",
        ]);
        let p = plan(&a, &explicit).unwrap();
        let c = ray_command(&a, &p, "http://localhost:8265", "raysubmit_x").unwrap();
        assert_eq!(
            c.join(" "),
            "ray job submit --address http://localhost:8265 --submission-id raysubmit_x --entrypoint-num-cpus 1.000000 --metadata-json {} --no-wait --working-dir /w -- python my script.py"
        );
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_created() {
        let msg = |extra: &[&str]| {
            let (a, e) = args(extra);
            plan(&a, &e)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            msg(&["--working-dir", ".", "--", "x"]),
            "Must set either yaml file (--filename) or set Ray job name (--name)"
        );
        assert_eq!(
            msg(&["--name", "j", "--", "x"]),
            "working directory is required, use --working-dir or set with runtime env"
        );
        assert_eq!(
            msg(&[
                "--name",
                "j",
                "--working-dir",
                ".",
                "--head-cpu",
                "x",
                "--",
                "x"
            ])
            .split(':')
            .next()
            .unwrap(),
            "head-cpu is not a valid resource quantity"
        );
        assert_eq!(
            msg(&[
                "--name",
                "j",
                "--working-dir",
                ".",
                "--address",
                " ",
                "--",
                "x"
            ]),
            "--address was provided but is empty"
        );
    }

    #[test]
    fn submission_ids_look_like_rays() {
        let id = submission_id().unwrap();
        assert_eq!(id.len(), "raysubmit_".len() + 16);
        assert!(!id[10..].contains(['0', 'O', 'I', 'l', 'o']));
    }
}
