//! `kubectl ray scale cluster`: replicas, minReplicas and maxReplicas of
//! one worker group, checked as KubeRay checks them.

use anyhow::{Result, bail};
use serde_json::json;

use crate::cli::ScaleCommand;
use crate::connect::KubeFlags;

/// The requested values; -1 (the flags' default) means "leave as is".
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub replicas: i32,
    pub min: i32,
    pub max: i32,
}

impl Request {
    fn set(v: i32) -> Option<i32> {
        (v != -1).then_some(v)
    }

    /// KubeRay's checks before reading the cluster.
    pub fn validate(&self) -> Result<()> {
        let (r, min, max) = (
            Self::set(self.replicas),
            Self::set(self.min),
            Self::set(self.max),
        );
        if r.is_none() && min.is_none() && max.is_none() {
            bail!(
                "must specify at least one of --replicas, --min-replicas, or --max-replicas (non-negative integers)"
            );
        }
        if min.is_some_and(|v| v < 0) {
            bail!("--min-replicas must be a non-negative integer");
        }
        if max.is_some_and(|v| v < 0) {
            bail!("--max-replicas must be a non-negative integer");
        }
        if r.is_some_and(|v| v < 0) {
            bail!("--replicas must be a non-negative integer");
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            bail!("--min-replicas ({lo}) cannot be greater than --max-replicas ({hi})");
        }
        if let Some(r) = r {
            if let Some(lo) = min.filter(|lo| r < *lo) {
                bail!("--replicas ({r}) cannot be less than --min-replicas ({lo})");
            }
            if let Some(hi) = max.filter(|hi| r > *hi) {
                bail!("--replicas ({r}) cannot be greater than --max-replicas ({hi})");
            }
        }
        Ok(())
    }
}

/// What changes in a group whose current values are `current` (replicas,
/// min, max): the new values and KubeRay's description of each change, or
/// an error if the result would be inconsistent.
pub fn plan(current: (i32, i32, i32), req: Request) -> Result<((i32, i32, i32), Vec<String>)> {
    let (cur_r, cur_min, cur_max) = current;
    let mut changes = Vec::new();
    let min = match Request::set(req.min) {
        Some(v) if v != cur_min => {
            changes.push(format!("Scaled minReplicas: {cur_min} to {v}"));
            v
        }
        _ => cur_min,
    };
    let max = match Request::set(req.max) {
        Some(v) if v != cur_max => {
            changes.push(format!("Scaled maxReplicas: {cur_max} to {v}"));
            v
        }
        _ => cur_max,
    };
    let replicas = match Request::set(req.replicas) {
        Some(v) if v != cur_r => {
            changes.push(format!("Scaled Replicas: {cur_r} to {v}"));
            v
        }
        _ => cur_r,
    };
    if min > max {
        bail!("cannot set --min-replicas ({min}) greater than --max-replicas ({max})");
    }
    if replicas < min {
        bail!("cannot set --replicas ({replicas}) less than --min-replicas ({min})");
    }
    if replicas > max {
        bail!("cannot set --replicas ({replicas}) greater than --max-replicas ({max})");
    }
    Ok(((replicas, min, max), changes))
}

pub async fn run(flags: &KubeFlags, what: ScaleCommand) -> Result<()> {
    let ScaleCommand::Cluster {
        cluster,
        worker_group,
        replicas,
        min_replicas,
        max_replicas,
    } = what;
    if worker_group.is_empty() {
        bail!("must specify -w/--worker-group");
    }
    let req = Request {
        replicas,
        min: min_replicas,
        max: max_replicas,
    };
    req.validate()?;
    let kube = flags.connect().await?;
    let ns = kube.namespace.clone();
    let failed = |e: String| {
        anyhow::anyhow!(
            "failed to scale worker group {worker_group} in Ray cluster {cluster} in namespace {ns}: {e}"
        )
    };
    let mut rc = crate::update::api(&kube)
        .get(&cluster)
        .await
        .map_err(|e| failed(crate::connect::describe(&e)))?;
    let groups = rc.data["spec"]["workerGroupSpecs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(index) = groups
        .iter()
        .position(|g| g["groupName"] == json!(worker_group))
    else {
        let names: Vec<&str> = groups
            .iter()
            .filter_map(|g| g["groupName"].as_str())
            .collect();
        bail!(
            "worker group {worker_group} not found in Ray cluster {cluster} in namespace {ns}. Available worker groups: {}",
            names.join(", ")
        );
    };
    let g = &groups[index];
    let int = |k: &str, default: i32| g[k].as_i64().map_or(default, |v| v as i32);
    let current = (
        int("replicas", 0),
        int("minReplicas", 0),
        int("maxReplicas", i32::MAX),
    );
    let ((r, min, max), changes) = plan(current, req)?;
    if changes.is_empty() {
        println!(
            "Worker group {worker_group} in Ray cluster {cluster} in namespace {ns} already matches the requested configuration. Skipping."
        );
        return Ok(());
    }
    let group = &mut rc.data["spec"]["workerGroupSpecs"][index];
    for (key, new, old) in [
        ("replicas", r, current.0),
        ("minReplicas", min, current.1),
        ("maxReplicas", max, current.2),
    ] {
        if new != old {
            group[key] = json!(new);
        }
    }
    let pp = kube::api::PostParams {
        field_manager: Some(crate::create::FIELD_MANAGER.into()),
        ..Default::default()
    };
    crate::update::api(&kube).replace(&cluster, &pp, &rc).await.map_err(|e| {
        anyhow::anyhow!(
            "failed to update worker group {worker_group} in Ray cluster {cluster} in namespace {ns}: {}",
            crate::connect::describe(&e)
        )
    })?;
    println!(
        "Updated worker group {worker_group} in Ray cluster {cluster} in namespace {ns} ({})",
        changes.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(replicas: i32, min: i32, max: i32) -> Request {
        Request { replicas, min, max }
    }

    #[test]
    fn requests_are_checked_as_kuberay() {
        let msg = |r: Request| r.validate().unwrap_err().to_string();
        assert!(msg(req(-1, -1, -1)).starts_with("must specify at least one of"));
        assert_eq!(
            msg(req(-2, -1, -1)),
            "--replicas must be a non-negative integer"
        );
        assert_eq!(
            msg(req(-1, 5, 3)),
            "--min-replicas (5) cannot be greater than --max-replicas (3)"
        );
        assert_eq!(
            msg(req(1, 2, -1)),
            "--replicas (1) cannot be less than --min-replicas (2)"
        );
        assert_eq!(
            msg(req(9, -1, 3)),
            "--replicas (9) cannot be greater than --max-replicas (3)"
        );
        assert!(req(3, 1, 5).validate().is_ok());
    }

    #[test]
    fn plans_describe_each_change() {
        let (v, changes) = plan((1, 0, 5), req(3, -1, 10)).unwrap();
        assert_eq!(v, (3, 0, 10));
        assert_eq!(
            changes,
            ["Scaled maxReplicas: 5 to 10", "Scaled Replicas: 1 to 3"]
        );
        assert!(plan((1, 0, 5), req(1, -1, -1)).unwrap().1.is_empty());
        assert_eq!(
            plan((1, 0, 5), req(7, -1, -1)).unwrap_err().to_string(),
            "cannot set --replicas (7) greater than --max-replicas (5)"
        );
    }
}
