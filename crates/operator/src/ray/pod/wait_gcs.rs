//! The `wait-gcs-ready` init container of worker pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::command;

const WAIT_GCS_SCRIPT: &str = r#"
					SECONDS=0
					while true; do
						if (( SECONDS <= 120 )); then
							if ray health-check --address {addr} > /dev/null 2>&1; then
								echo "GCS is ready."
								break
							fi
							echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."
						else
							if ray health-check --address {addr}; then
								echo "GCS is ready. Any error messages above can be safely ignored."
								break
							fi
							echo "$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, refer to the FAQ at https://docs.ray.io/en/master/cluster/kubernetes/troubleshooting.html."
						fi
						sleep 5
					done
				"#;

/// The init container that holds a worker back until the head's GCS
/// answers, so workers do not crash-loop while the head starts.
pub(super) fn wait_gcs_container(
    ray: &Container,
    fqdn: &str,
    port: &str,
    login: bool,
) -> Container {
    let small = BTreeMap::from([
        ("cpu".to_string(), Quantity("200m".into())),
        ("memory".to_string(), Quantity("256Mi".into())),
    ]);
    Container {
        name: "wait-gcs-ready".into(),
        image: ray.image.clone(),
        image_pull_policy: ray.image_pull_policy.clone(),
        security_context: ray.security_context.clone(),
        command: Some(command::shell(login)),
        args: Some(vec![
            WAIT_GCS_SCRIPT.replace("{addr}", &format!("{fqdn}:{port}")),
        ]),
        env: ray.env.clone(),
        volume_mounts: ray.volume_mounts.clone(),
        resources: Some(ResourceRequirements {
            limits: Some(small.clone()),
            requests: Some(small),
            ..Default::default()
        }),
        ..Default::default()
    }
}
