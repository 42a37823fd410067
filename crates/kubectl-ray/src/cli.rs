//! The command line: KubeRay v1.7's plugin's commands, aliases and flags,
//! with their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::AutoscalerVersion;
use crate::connect::KubeFlags;
use crate::generation::RAY_VERSION;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl ray",
    bin_name = "kubectl ray",
    about = "Manage Ray resources on Kubernetes",
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Display one or many Ray resources.
    #[command(visible_alias = "list", arg_required_else_help = true)]
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Forward local ports to the Ray resources.
    Session(SessionArgs),
    /// Get Ray cluster logs.
    #[command(visible_alias = "logs")]
    Log(LogArgs),
    /// Submit Ray job.
    #[command(arg_required_else_help = true)]
    Job {
        #[command(subcommand)]
        what: JobCommand,
    },
    /// Output the version of the Ray kubectl plugin and KubeRay operator.
    Version,
    /// Create Ray resources.
    #[command(arg_required_else_help = true)]
    Create {
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// Delete Ray resources.
    Delete(DeleteArgs),
    /// Scale a Ray resource.
    #[command(arg_required_else_help = true)]
    Scale {
        #[command(subcommand)]
        what: ScaleCommand,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum GetCommand {
    /// Get cluster information.
    #[command(visible_alias = "clusters")]
    Cluster {
        /// A cluster's name; all clusters without it.
        name: Option<String>,
        /// If present, list the requested clusters across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Print the objects instead of the table.
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// Get Ray worker groups.
    #[command(visible_alias = "workergroups")]
    Workergroup {
        /// A worker group's name; all groups without it.
        group: Option<String>,
        #[command(flatten)]
        list: ListFlags,
    },
    /// Get Ray nodes.
    #[command(visible_alias = "nodes")]
    Node {
        /// A node's (pod's) name; all nodes without it.
        node: Option<String>,
        #[command(flatten)]
        list: ListFlags,
    },
    /// Get the auth token from the ray cluster.
    Token {
        /// The cluster's name.
        cluster: String,
    },
}

/// What `get workergroup` and `get node` are narrowed and printed by.
#[derive(Args, Debug)]
pub struct ListFlags {
    /// Ray cluster
    #[arg(short = 'c', long = "ray-cluster")]
    pub ray_cluster: Option<String>,
    /// If present, list across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print objects instead of the table.
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

/// `key=value[,key=value...]`, repeatable, as pflag's string-to-string flags.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!("{s} must be formatted as key=value")),
    }
}

pub fn to_map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

/// Go's duration syntax (`90s`, `5m`, `1h30m`), as KubeRay's `--timeout`
/// (plain seconds are accepted too).
fn go_duration(s: &str) -> Result<Duration, String> {
    kuberay_api::validation::parse_timeout(s)
}

#[derive(Subcommand, Debug)]
pub enum CreateCommand {
    /// Create Ray cluster.
    Cluster(Box<CreateClusterArgs>),
    /// Create worker group in an existing Ray cluster.
    Workergroup(Box<CreateWorkerGroupArgs>),
}

/// The flags that shape the generated cluster, shared by `create cluster`
/// and `job submit` (KubeRay's names and defaults for both).
#[derive(Args, Debug)]
pub struct ShapeFlags {
    /// Ray version to use
    #[arg(long, default_value = RAY_VERSION)]
    pub ray_version: String,
    /// container image to use
    #[arg(long, default_value_t = crate::generation::default_image())]
    pub image: String,
    /// number of CPUs in the Ray head
    #[arg(long, default_value = "2")]
    pub head_cpu: String,
    /// amount of memory in the Ray head
    #[arg(long, default_value = "4Gi")]
    pub head_memory: String,
    /// number of GPUs in the Ray head
    #[arg(long, default_value = "0")]
    pub head_gpu: String,
    /// Node selectors to apply to the head pod (e.g. --head-node-selectors topology.kubernetes.io/zone=us-east-1c)
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub head_node_selectors: Vec<(String, String)>,
    /// desired worker group replicas
    #[arg(long, default_value_t = 1)]
    pub worker_replicas: i32,
    /// number of CPUs in each worker group replica
    #[arg(long, default_value = "2")]
    pub worker_cpu: String,
    /// amount of memory in each worker group replica
    #[arg(long, default_value = "4Gi")]
    pub worker_memory: String,
    /// number of GPUs in each worker group replica
    #[arg(long, default_value = "0")]
    pub worker_gpu: String,
    /// Node selectors to apply to all worker pods (e.g. --worker-node-selectors topology.kubernetes.io/zone=us-east-1c)
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub worker_node_selectors: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct CreateClusterArgs {
    /// The cluster's name.
    pub name: String,
    #[command(flatten)]
    pub shape: ShapeFlags,
    /// K8s labels (e.g. --labels app=ray,env=dev)
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub labels: Vec<(String, String)>,
    /// K8s annotations (e.g. --annotations ttl-hours=24,owner=chthulu)
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub annotations: Vec<(String, String)>,
    /// amount of ephemeral storage in the Ray head
    #[arg(long, default_value = "")]
    pub head_ephemeral_storage: String,
    /// a map of arguments to the Ray head's 'ray start' entrypoint, e.g. '--head-ray-start-params dashboard-host=0.0.0.0,num-cpus=2'
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub head_ray_start_params: Vec<(String, String)>,
    /// amount of ephemeral storage in each worker group replica
    #[arg(long, default_value = "")]
    pub worker_ephemeral_storage: String,
    /// number of TPUs in each worker group replica. If greater than 0, you must also set cloud.google.com/gke-tpu-accelerator and cloud.google.com/gke-tpu-topology in --worker-node-selectors.
    #[arg(long, default_value = "0")]
    pub worker_tpu: String,
    /// a map of arguments to the Ray workers' 'ray start' entrypoint, e.g. '--worker-ray-start-params metrics-export-port=8080,num-cpus=2'
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub worker_ray_start_params: Vec<(String, String)>,
    /// number of hosts in default worker group per replica
    #[arg(long, default_value_t = 1)]
    pub num_of_hosts: i32,
    /// autoscaler to use, supports: "v1", "v2"
    #[arg(long, ignore_case = true)]
    pub autoscaler: Option<AutoscalerVersion>,
    /// path to a YAML file containing Ray cluster configuration
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// print the generated YAML instead of creating the cluster
    #[arg(long)]
    pub dry_run: bool,
    /// wait for the cluster to be provisioned before returning. Returns an error if the cluster is not provisioned by the timeout specified
    #[arg(long)]
    pub wait: bool,
    /// the timeout for --wait
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct CreateWorkerGroupArgs {
    /// The worker group's name.
    pub group: String,
    /// Ray cluster to add a worker group to
    #[arg(short = 'c', long = "ray-cluster", required = true)]
    pub ray_cluster: String,
    /// Ray version to use
    #[arg(long, default_value = RAY_VERSION)]
    pub ray_version: String,
    /// container image to use
    #[arg(long, default_value_t = crate::generation::default_image())]
    pub image: String,
    /// desired replicas
    #[arg(long, default_value_t = 1)]
    pub worker_replicas: i32,
    /// number of hosts in the worker group per replica
    #[arg(long, default_value_t = 1)]
    pub num_of_hosts: i32,
    /// minimum number of replicas
    #[arg(long, default_value_t = 1)]
    pub worker_min_replicas: i32,
    /// maximum number of replicas
    #[arg(long, default_value_t = 10)]
    pub worker_max_replicas: i32,
    /// number of CPUs in each replica
    #[arg(long, default_value = "2")]
    pub worker_cpu: String,
    /// number of GPUs in each replica
    #[arg(long, default_value = "0")]
    pub worker_gpu: String,
    /// number of TPUs in each replica
    #[arg(long, default_value = "0")]
    pub worker_tpu: String,
    /// amount of memory in each replica
    #[arg(long, default_value = "4Gi")]
    pub worker_memory: String,
    /// a map of arguments to the Ray workers' 'ray start' entrypoint
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub worker_ray_start_params: Vec<(String, String)>,
    /// Node selectors to apply to all worker pods in this worker group
    #[arg(long, value_parser = key_value, value_delimiter = ',')]
    pub worker_node_selectors: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// RAYCLUSTER, or TYPE/NAME with TYPE raycluster, rayjob or rayservice.
    #[arg(required = true, value_name = "RAYCLUSTER | TYPE/NAME")]
    pub resources: Vec<String>,
    /// answer 'yes' to all prompts and run non-interactively
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Subcommand, Debug)]
pub enum ScaleCommand {
    /// Scale a Ray cluster.
    #[command(allow_negative_numbers = true)]
    Cluster {
        /// The cluster's name.
        cluster: String,
        /// worker group
        #[arg(short = 'w', long, required = true)]
        worker_group: String,
        /// Desired number of replicas in worker group
        #[arg(short = 'r', long, default_value_t = -1)]
        replicas: i32,
        /// Minimum desired number of replicas for worker group
        #[arg(long, default_value_t = -1)]
        min_replicas: i32,
        /// Maximum desired number of replicas for worker group
        #[arg(long, default_value_t = -1)]
        max_replicas: i32,
    },
}

#[derive(Args, Debug)]
pub struct SessionArgs {
    /// RAYCLUSTER, or TYPE/NAME with TYPE raycluster, rayjob or rayservice.
    #[arg(value_name = "RAYCLUSTER | TYPE/NAME")]
    pub resource: String,
    /// verbose output
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NodeType {
    All,
    Head,
    Worker,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// RAYCLUSTER, or TYPE/NAME with TYPE raycluster, rayjob or rayservice.
    #[arg(value_name = "RAYCLUSTER | TYPE/NAME")]
    pub resource: String,
    /// directory to save the logs to
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// type of Ray node from which to download logs, supports: 'worker', 'head', or 'all'
    #[arg(long, default_value = "all", ignore_case = true)]
    pub node_type: NodeType,
    /// print a link to a cloud console to view logs, supports: 'gke'
    #[arg(long)]
    pub link: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Submit Ray job to Ray cluster.
    Submit(Box<JobSubmitArgs>),
}

#[derive(Args, Debug)]
pub struct JobSubmitArgs {
    /// Path and name of the Ray Job YAML file
    #[arg(short = 'f', long)]
    pub filename: Option<PathBuf>,
    /// Ray Dashboard base URL (e.g., https://ray.example.com). If set, skips port-forwarding.
    #[arg(long)]
    pub address: Option<String>,
    /// ID to specify for the Ray job. If not provided, one will be generated
    #[arg(long)]
    pub submission_id: Option<String>,
    /// Path and name to the runtime env YAML file.
    #[arg(long)]
    pub runtime_env: Option<PathBuf>,
    /// Directory containing files that your job will run in
    #[arg(long)]
    pub working_dir: Option<String>,
    /// Used to pass headers through http/s to Ray Cluster. Must be JSON formatting
    #[arg(long)]
    pub headers: Option<String>,
    /// JSON-serialized runtime_env dictionary. Precedence over Ray job CR.
    #[arg(long)]
    pub runtime_env_json: Option<String>,
    /// Boolean indication to verify the server's TLS certificate or a path to a file or directory of trusted certificates.
    #[arg(long)]
    pub verify: Option<String>,
    /// JSON-serialized dictionary mapping resource name to resource quantity
    #[arg(long)]
    pub entrypoint_resources: Option<String>,
    /// JSON-serialized dictionary of metadata to attach to the job.
    #[arg(long)]
    pub metadata_json: Option<String>,
    /// Specific to 'ray job submit'. Options are 'auto | record | pretty'
    #[arg(long)]
    pub log_style: Option<String>,
    /// Specific to 'ray job submit'. Options are 'auto | false | true'
    #[arg(long)]
    pub log_color: Option<String>,
    /// Number of CPUs reserved for the entrypoint command
    #[arg(long, default_value_t = 0.0)]
    pub entrypoint_num_cpus: f32,
    /// Number of GPUs reserved for the entrypoint command
    #[arg(long, default_value_t = 0.0)]
    pub entrypoint_num_gpus: f32,
    /// Amount of memory reserved for the entrypoint command
    #[arg(long, default_value_t = 0)]
    pub entrypoint_memory: i64,
    /// If present, will not stream logs and wait for job to finish
    #[arg(long)]
    pub no_wait: bool,
    /// Ray job name
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub shape: ShapeFlags,
    /// print the generated YAML instead of creating the cluster. Only works when filename is not provided
    #[arg(long)]
    pub dry_run: bool,
    /// Passing the '--verbose' flag to the 'ray job submit' command
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// TTL seconds after finished.
    #[arg(long)]
    pub ttl_seconds_after_finished: Option<i32>,
    /// How long to wait for the job's RayCluster to be ready (not in KubeRay, which waits 2m)
    #[arg(long, default_value = "2m", value_parser = go_duration)]
    pub cluster_timeout: Duration,
    /// The entrypoint, after `--`.
    #[arg(last = true, value_name = "ENTRYPOINT")]
    pub entrypoint: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(go_duration("5x").is_err());
        assert!(go_duration("").is_err());
    }

    #[test]
    fn maps_take_commas_and_repeats() {
        let cli = Cli::try_parse_from([
            "kubectl ray",
            "create",
            "cluster",
            "c",
            "--labels",
            "a=1,b=2",
            "--labels",
            "c=3",
        ])
        .unwrap();
        let Command::Create {
            what: CreateCommand::Cluster(args),
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(to_map(&args.labels).len(), 3);
        assert!(
            Cli::try_parse_from(["kubectl ray", "create", "cluster", "c", "--labels", "a"])
                .is_err()
        );
    }

    #[test]
    fn aliases_and_global_flags_parse_anywhere() {
        for args in [
            vec!["kubectl ray", "list", "clusters", "-n", "x"],
            vec!["kubectl ray", "-n", "x", "get", "nodes", "-A"],
            vec![
                "kubectl ray",
                "logs",
                "rc",
                "--node-type",
                "HEAD",
                "--context",
                "c",
            ],
            vec![
                "kubectl ray",
                "scale",
                "cluster",
                "rc",
                "-w",
                "g",
                "-r",
                "-2",
            ],
        ] {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
