//! KubeRay's checks of the plugin's input: quantities and TPU groups.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

pub const GKE_TPU_ACCELERATOR: &str = "cloud.google.com/gke-tpu-accelerator";
pub const GKE_TPU_TOPOLOGY: &str = "cloud.google.com/gke-tpu-topology";
const TPU_DOC: &str =
    "https://cloud.google.com/kubernetes-engine/docs/concepts/plan-tpus#availability";
const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A resource quantity that parses and is not negative; `name` is the
/// flag or file key it came from.
pub fn validate_quantity(value: &str, name: &str) -> Result<()> {
    match kuberay_operator::ray::quantity::parse(value) {
        None => bail!("{name} is not a valid resource quantity: {QUANTITY_FORMAT}"),
        Some(v) if v < 0.0 => bail!("{name} cannot be negative"),
        Some(_) => Ok(()),
    }
}

/// KubeRay's check of resource flags: each one that is not empty, or was
/// given on the command line even empty, must be a valid quantity.
/// `explicit` holds the ids (`head_cpu`) of the flags given.
pub fn validate_quantity_flags(flags: &[(&str, &str)], explicit: &BTreeSet<String>) -> Result<()> {
    for (name, value) in flags {
        if !value.is_empty() || explicit.contains(&name.replace('-', "_")) {
            validate_quantity(value, name)?;
        }
    }
    Ok(())
}

/// A group with TPUs needs hosts and GKE's accelerator and topology node
/// selectors.
pub fn validate_tpu(
    tpu: Option<&str>,
    num_of_hosts: Option<i32>,
    node_selectors: &BTreeMap<String, String>,
) -> Result<()> {
    if matches!(tpu, None | Some("") | Some("0")) {
        return Ok(());
    }
    if num_of_hosts == Some(0) {
        bail!("numOfHosts cannot be 0 when using TPU");
    }
    for key in [GKE_TPU_ACCELERATOR, GKE_TPU_TOPOLOGY] {
        if !node_selectors.contains_key(key) {
            bail!(
                "{key} is not set in --worker-node-selectors. See {TPU_DOC} for supported values"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_checked_as_kuberay_does() {
        assert!(validate_quantity("5Gi", "head-memory").is_ok());
        let e = validate_quantity("softmax", "head-memory").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("head-memory is not a valid resource quantity: {QUANTITY_FORMAT}")
        );
        assert_eq!(
            validate_quantity("-1", "worker-cpu")
                .unwrap_err()
                .to_string(),
            "worker-cpu cannot be negative"
        );
        assert!(validate_quantity("", "head-ephemeral-storage").is_err());
    }

    #[test]
    fn tpu_groups_need_gke_selectors() {
        let none = BTreeMap::new();
        assert!(validate_tpu(Some("0"), Some(1), &none).is_ok());
        assert_eq!(
            validate_tpu(Some("1"), Some(0), &none)
                .unwrap_err()
                .to_string(),
            "numOfHosts cannot be 0 when using TPU"
        );
        assert!(
            validate_tpu(Some("1"), Some(1), &none)
                .unwrap_err()
                .to_string()
                .starts_with(GKE_TPU_ACCELERATOR)
        );
        let both = BTreeMap::from([
            (
                GKE_TPU_ACCELERATOR.to_string(),
                "tpu-v5-lite-podslice".to_string(),
            ),
            (GKE_TPU_TOPOLOGY.to_string(), "1x1".to_string()),
        ]);
        assert!(validate_tpu(Some("1"), Some(1), &both).is_ok());
    }
}
