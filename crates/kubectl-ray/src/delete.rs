//! `kubectl ray delete`: RayClusters, RayJobs and RayServices, after a
//! confirmation unless `-y`.

use std::io::BufRead;

use anyhow::{Result, bail};
use kube::api::{Api, DeleteParams};
use kuberay_api::{RayCluster, RayJob, RayService};

use crate::cli::DeleteArgs;
use crate::connect::{KubeFlags, describe};
use crate::resource::{self, Kind};

/// The resources, grouped by kind in the order their kinds first appear.
pub fn plan(args: &[String]) -> Result<Vec<(Kind, String)>> {
    let mut parsed = Vec::new();
    for a in args {
        parsed.push(resource::parse(a, true)?);
    }
    let mut kinds: Vec<Kind> = Vec::new();
    for (k, _) in &parsed {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    Ok(kinds
        .iter()
        .flat_map(|k| parsed.iter().filter(move |(pk, _)| pk == k).cloned())
        .collect())
}

pub async fn run(flags: &KubeFlags, a: DeleteArgs) -> Result<()> {
    let targets = plan(&a.resources)?;
    let kube = flags.connect().await?;
    if !a.yes {
        let list: String = targets
            .iter()
            .map(|(k, n)| format!("\n- {}/{n}", k.as_str()))
            .collect();
        print!("Are you sure you want to delete the following resources?{list}\n(y/yes/n/no)");
        use std::io::Write;
        std::io::stdout().flush()?;
        let mut answer = String::new();
        let read = std::io::stdin().lock().read_line(&mut answer)?;
        if read == 0 {
            bail!("Failed to read user input: EOF");
        }
        match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => {}
            "n" | "no" => {
                println!("Canceled deletion.");
                return Ok(());
            }
            _ => {
                println!("Unknown input {answer}");
                return Ok(());
            }
        }
    }
    let dp = DeleteParams::default();
    for (kind, name) in targets {
        let c = kube.client.clone();
        let ns = &kube.namespace;
        let result = match kind {
            Kind::RayCluster => Api::<RayCluster>::namespaced(c, ns)
                .delete(&name, &dp)
                .await
                .map(|_| ()),
            Kind::RayJob => Api::<RayJob>::namespaced(c, ns)
                .delete(&name, &dp)
                .await
                .map(|_| ()),
            Kind::RayService => Api::<RayService>::namespaced(c, ns)
                .delete(&name, &dp)
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            bail!(
                "failed to delete {}/{name}: {}",
                kind.as_str(),
                describe(&e)
            );
        }
        println!("Deleted {} {name}", kind.as_str());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_group_by_kind() {
        let args: Vec<String> = ["a", "rayjob/j", "RayCluster/b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            plan(&args).unwrap(),
            [
                (Kind::RayCluster, "a".into()),
                (Kind::RayCluster, "b".into()),
                (Kind::RayJob, "j".into())
            ]
        );
        let bad = vec!["pod/x".to_string()];
        assert_eq!(
            plan(&bad).unwrap_err().to_string(),
            "unsupported resource type: pod"
        );
    }
}
