//! `kubectl ray version`: the plugin's version, and the operator's from its
//! Deployment's image tag.

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};

use crate::connect::{KubeFlags, describe};

pub async fn run(flags: &KubeFlags) -> Result<()> {
    println!(
        "kubectl ray plugin version: {}",
        kuberay_operator::runtime::config::KUBERAY_VERSION
    );
    let found = match flags.connect().await {
        Ok(kube) => operator_version(&kube.client).await,
        Err(e) => Err(format!("{e:#}")),
    };
    match found {
        Ok(v) => println!("KubeRay operator version: {v}"),
        Err(e) => println!(
            "warning: KubeRay operator installation cannot be found: {e}. Did you install it with the name \"kuberay-operator\"?"
        ),
    }
    Ok(())
}

async fn operator_version(client: &kube::Client) -> Result<String, String> {
    let lp = ListParams::default().labels("app.kubernetes.io/name in (kuberay-operator,kuberay)");
    let list = Api::<Deployment>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| {
            format!(
                "failed to get KubeRay operator deployment: {}",
                describe(&e)
            )
        })?;
    let d = list
        .items
        .first()
        .ok_or("no KubeRay operator deployments found in any namespace")?;
    let image = d
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.image.clone().unwrap_or_default())
        .ok_or("no containers found in KubeRay operator deployment")?;
    Ok(image_tag(&image))
}

/// The tag of an image reference (`latest` when it has none); with both a
/// tag and a digest, `tag@sha256:...`, as KubeRay prints it.
pub fn image_tag(image: &str) -> String {
    if image.contains("@sha256:") && image.matches(':').count() == 2 {
        return image
            .split_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default();
    }
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, tag)) => tag.to_string(),
        None => "latest".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::image_tag;

    #[test]
    fn tags_are_read_as_kuberay_reads_them() {
        assert_eq!(image_tag("quay.io/kuberay/operator:v1.7.0"), "v1.7.0");
        assert_eq!(
            image_tag("localhost:5000/kuberay-operator:v1.7.0-rs"),
            "v1.7.0-rs"
        );
        assert_eq!(image_tag("kuberay/operator"), "latest");
        assert_eq!(image_tag("kuberay/operator:v1@sha256:abc"), "v1@sha256:abc");
    }
}
