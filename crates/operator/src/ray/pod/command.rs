//! The `ray start` line of a Ray container, built as KubeRay builds it:
//! `rayStartParams`, then the group's `resources` and `labels`, then the
//! parameters KubeRay always adds, then what the container's resources imply.
//! Tools parse this line (and `KUBERAY_GEN_RAY_START_CMD`), so its exact
//! shape, double spaces included, is part of the contract.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use kuberay_api::RayClusterSpec;
use kuberay_api::names::GCS_PORT;

use crate::ray::quantity;

/// The head's GCS port: its `port` parameter, else 6379.
pub fn head_port(spec: &RayClusterSpec) -> String {
    spec.head_group_spec
        .ray_start_params
        .as_ref()
        .and_then(|p| p.get("port"))
        .cloned()
        .unwrap_or_else(|| GCS_PORT.1.to_string())
}

/// Whose `ray start` line is built.
pub enum Node<'a> {
    Head,
    /// A worker, with the head's address (`<fqdn>:<port>`).
    Worker {
        head_address: &'a str,
    },
}

/// The complete parameter map of a Ray container.
pub fn params(
    spec: &RayClusterSpec,
    node: &Node,
    group_params: Option<&BTreeMap<String, String>>,
    group_resources: Option<&BTreeMap<String, String>>,
    group_labels: Option<&BTreeMap<String, String>>,
    container: &Container,
) -> BTreeMap<String, String> {
    let mut p = group_params.cloned().unwrap_or_default();
    apply_group_resources(&mut p, group_resources);
    if let Some(labels) = group_labels.filter(|l| !l.is_empty()) {
        let joined: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        p.insert("labels".into(), joined.join(","));
    }
    match node {
        Node::Worker { head_address } => {
            p.entry("address".into())
                .or_insert_with(|| head_address.to_string());
        }
        Node::Head => {
            p.entry("dashboard-host".into())
                .or_insert_with(|| "0.0.0.0".into());
        }
    }
    p.entry("metrics-export-port".into())
        .or_insert_with(|| "8080".into());
    // `ray start` must not return: the container's life is the node's.
    p.insert("block".into(), "true".into());
    p.entry("dashboard-agent-listen-port".into())
        .or_insert_with(|| "52365".into());
    if matches!(node, Node::Head) {
        if spec.enable_in_tree_autoscaling == Some(true) {
            // The autoscaler sidecar replaces Ray's own monitor.
            p.insert("no-monitor".into(), "true".into());
        }
        if let Some(ft) = &spec.gcs_fault_tolerance_options {
            if ft.redis_username.is_some() {
                p.insert("redis-username".into(), "$REDIS_USERNAME".into());
            }
            if ft.redis_password.is_some() {
                p.insert("redis-password".into(), "$REDIS_PASSWORD".into());
            }
        }
    }
    apply_container_resources(&mut p, container);
    p
}

/// The group's `resources` map: CPU, memory and GPUs become their own flags,
/// everything else Ray's custom resources (`--resources='{"TPU":4}'`).
fn apply_group_resources(
    p: &mut BTreeMap<String, String>,
    resources: Option<&BTreeMap<String, String>>,
) {
    let mut custom = BTreeMap::new();
    for (name, value) in resources.into_iter().flatten() {
        let Some(v) = quantity::parse(value) else {
            continue;
        };
        let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(value.clone());
        let whole = quantity::ceil(&q).unwrap_or_default().to_string();
        match name.to_lowercase().as_str() {
            "cpu" => {
                p.insert("num-cpus".into(), whole);
            }
            "memory" => {
                p.insert("memory".into(), whole);
            }
            lower if quantity::is_gpu(lower) => {
                p.insert("num-gpus".into(), whole);
            }
            _ => {
                custom.insert(name.clone(), v);
            }
        }
    }
    if !custom.is_empty() {
        p.insert("resources".into(), format!("'{}'", json_numbers(&custom)));
    }
}

/// Ray accelerators KubeRay maps from Kubernetes resource names.
const ACCELERATORS: &[(&str, &str)] = &[
    ("aws.amazon.com/neuroncore", "neuron_cores"),
    ("google.com/tpu", "TPU"),
];

/// What the container's resources say, where the parameters do not.
fn apply_container_resources(p: &mut BTreeMap<String, String>, c: &Container) {
    let res = c.resources.as_ref();
    let limits = res.and_then(|r| r.limits.clone()).unwrap_or_default();
    let requests = res.and_then(|r| r.requests.clone()).unwrap_or_default();
    let nonzero =
        |m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>, k: &str| {
            m.get(k).and_then(quantity::ceil).filter(|v| *v != 0)
        };
    if !p.contains_key("num-cpus")
        && let Some(cpus) = nonzero(&limits, "cpu").or_else(|| nonzero(&requests, "cpu"))
    {
        p.insert("num-cpus".into(), cpus.to_string());
    }
    if !p.contains_key("memory")
        && let Some(mem) = nonzero(&limits, "memory")
    {
        p.insert("memory".into(), mem.to_string());
    }
    if !p.contains_key("num-gpus")
        && let Some(gpus) = limits
            .keys()
            .filter(|k| quantity::is_gpu(k))
            .find_map(|k| nonzero(&limits, k))
    {
        p.insert("num-gpus".into(), gpus.to_string());
    }
    let mut custom: BTreeMap<String, f64> = p
        .get("resources")
        .and_then(|r| {
            serde_json::from_str(r.trim_matches(|c| c == '\'' || c == '"' || c == '\\' || c == ' '))
                .ok()
        })
        .unwrap_or_default();
    if ACCELERATORS
        .iter()
        .any(|(_, ray)| custom.contains_key(*ray))
    {
        return;
    }
    if let Some((k8s, ray)) = ACCELERATORS
        .iter()
        .find(|(k8s, _)| nonzero(&limits, k8s).is_some())
    {
        let v = limits
            .get(*k8s)
            .and_then(|q| quantity::parse(&q.0))
            .unwrap_or_default();
        custom.insert(ray.to_string(), v);
        p.insert("resources".into(), format!("'{}'", json_numbers(&custom)));
    }
}

/// `{"a":1,"b":1.5}`: sorted keys, integers without a fraction, as Go
/// writes a map of float64.
fn json_numbers(m: &BTreeMap<String, f64>) -> String {
    let fields: Vec<String> = m
        .iter()
        .map(|(k, v)| {
            let num = if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{}", *v as i64)
            } else {
                format!("{v}")
            };
            format!("{}:{num}", serde_json::Value::String(k.clone()))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Flags whose `true`/`false` values are passed as values, not switches.
const VALUED_BOOLEANS: &[&str] = &["log-color", "include-dashboard", "include-log-monitor"];

/// `ray start --head  --block  --dashboard-host=0.0.0.0 ...`: each flag with
/// a space on both sides, `true` as a bare switch, `false` left out.
pub fn ray_start_line(node: &Node, params: &BTreeMap<String, String>) -> String {
    let mut flags = String::new();
    for (k, v) in params {
        let lower = v.to_lowercase();
        if (lower == "true" || lower == "false") && !VALUED_BOOLEANS.contains(&k.as_str()) {
            if lower == "true" {
                flags.push_str(&format!(" --{k} "));
            }
        } else {
            flags.push_str(&format!(" --{k}={v} "));
        }
    }
    match node {
        Node::Head => format!("ray start --head {flags}"),
        Node::Worker { .. } => format!("ray start {flags}"),
    }
}

/// `["/bin/bash", "-c", "--"]` (`-cl` with a login shell).
pub fn shell(login: bool) -> Vec<String> {
    let opts = if login { "-cl" } else { "-c" };
    vec!["/bin/bash".into(), opts.into(), "--".into()]
}

/// Rewrites the container to run `ray start` after the user's own command,
/// unless that command already starts Ray or the user opted out. The user's
/// command runs first because `ray start --block` never returns.
pub fn wrap_container_command(c: &mut Container, ray_start: &str, overwrite: bool, login: bool) {
    let joined = |v: &Option<Vec<String>>| -> String {
        v.iter().flatten().map(|s| format!(" {s} ")).collect()
    };
    let user = format!("{}{}", joined(&c.command), joined(&c.args));
    if overwrite || user.contains("ray start") {
        return;
    }
    let generated = format!("ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {ray_start}");
    let args = if user.is_empty() {
        generated
    } else {
        format!("{user} && {generated}")
    };
    c.command = Some(shell(login));
    c.args = Some(vec![args]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn head_line_matches_kuberay_byte_for_byte() {
        let spec = RayClusterSpec::default();
        let c = container(
            json!({"name": "ray-head", "resources": {"limits": {"cpu": "1", "memory": "2G"}}}),
        );
        let p = params(&spec, &Node::Head, None, None, None, &c);
        assert_eq!(
            ray_start_line(&Node::Head, &p),
            "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --memory=2000000000  --metrics-export-port=8080  --num-cpus=1 "
        );
    }

    #[test]
    fn workers_get_the_head_address_and_cpu_rounds_up() {
        let spec = RayClusterSpec::default();
        let c = container(
            json!({"name": "w", "resources": {"requests": {"cpu": "500m"}, "limits": {"nvidia.com/gpu": "2"}}}),
        );
        let node = Node::Worker {
            head_address: "rc-head-svc.ns.svc.cluster.local:6379",
        };
        let p = params(&spec, &node, None, None, None, &c);
        assert_eq!(p["address"], "rc-head-svc.ns.svc.cluster.local:6379");
        assert_eq!(p["num-cpus"], "1");
        assert_eq!(p["num-gpus"], "2");
        assert!(!p.contains_key("memory"), "memory comes from limits only");
        assert!(ray_start_line(&node, &p).starts_with("ray start  --address="));
    }

    #[test]
    fn group_resources_and_labels_become_flags() {
        let spec = RayClusterSpec::default();
        let c = container(json!({"name": "w", "resources": {"limits": {"cpu": "8"}}}));
        let res = BTreeMap::from([
            ("CPU".to_string(), "2".to_string()),
            ("custom".to_string(), "1.5".to_string()),
            ("TPU".to_string(), "4".to_string()),
        ]);
        let labels = BTreeMap::from([
            ("zone".to_string(), "b".to_string()),
            ("tier".to_string(), "a".to_string()),
        ]);
        let p = params(&spec, &Node::Head, None, Some(&res), Some(&labels), &c);
        assert_eq!(
            p["num-cpus"], "2",
            "the group's resources win over the container's"
        );
        assert_eq!(p["resources"], r#"'{"TPU":4,"custom":1.5}'"#);
        assert_eq!(p["labels"], "tier=a,zone=b");
    }

    #[test]
    fn tpus_in_limits_become_a_ray_resource() {
        let c = container(json!({"name": "w", "resources": {"limits": {"google.com/tpu": "4"}}}));
        let p = params(
            &RayClusterSpec::default(),
            &Node::Head,
            None,
            None,
            None,
            &c,
        );
        assert_eq!(p["resources"], r#"'{"TPU":4}'"#);
    }

    #[test]
    fn booleans_are_switches_except_valued_ones() {
        let p = BTreeMap::from([
            ("block".to_string(), "true".to_string()),
            ("include-dashboard".to_string(), "false".to_string()),
            ("disable-usage-stats".to_string(), "false".to_string()),
        ]);
        assert_eq!(
            ray_start_line(&Node::Head, &p),
            "ray start --head  --block  --include-dashboard=false "
        );
    }

    #[test]
    fn the_user_command_runs_before_ray() {
        let mut c = container(json!({"name": "c", "command": ["echo"], "args": ["hi"]}));
        wrap_container_command(&mut c, "ray start --head", false, false);
        assert_eq!(c.command.unwrap(), vec!["/bin/bash", "-c", "--"]);
        assert_eq!(
            c.args.unwrap(),
            vec![" echo  hi  && ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start --head"]
        );
        let mut own = container(json!({"name": "c", "command": ["ray start --head"]}));
        wrap_container_command(&mut own, "ray start --head", false, false);
        assert_eq!(own.command.unwrap(), vec!["ray start --head"]);
    }
}
