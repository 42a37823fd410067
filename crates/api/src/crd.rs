//! The CustomResourceDefinitions, as `crdgen` writes them to
//! `config/crd/bases/`: kube-derive's output plus what KubeRay's CRDs have
//! that derive cannot express (the deprecated `v1alpha1` version still
//! served), minus the embedded Kubernetes types' descriptions.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, CustomResourceValidation,
    JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::schema::{drop_implicit_nullable, strip_kubernetes_descriptions};
use crate::{RayCluster, RayCronJob, RayJob, RayService};

/// One generated CRD and the file name KubeRay uses for it.
pub struct CrdFile {
    pub file_name: String,
    pub crd: CustomResourceDefinition,
}

/// All four CRDs.
pub fn all() -> Vec<CrdFile> {
    vec![
        finish(RayCluster::crd(), true),
        finish(RayJob::crd(), true),
        finish(RayService::crd(), true),
        finish(RayCronJob::crd(), false),
    ]
}

fn finish(mut crd: CustomResourceDefinition, serve_v1alpha1: bool) -> CrdFile {
    for version in &mut crd.spec.versions {
        if let Some(props) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*props).expect("schema serialises");
            strip_kubernetes_descriptions(&mut value);
            drop_implicit_nullable(&mut value);
            // KubeRay accepts objects without a spec (the API server still
            // requires what the spec's own schema requires).
            if let Some(m) = value.as_object_mut() {
                m.remove("required");
            }
            *props = serde_json::from_value(value).expect("schema round-trips");
            // Implicit for the API server, but listed by KubeRay's CRDs and
            // by `kubectl explain`.
            let top = props.properties.get_or_insert_with(Default::default);
            for (field, type_) in [
                ("apiVersion", "string"),
                ("kind", "string"),
                ("metadata", "object"),
            ] {
                top.entry(field.to_string())
                    .or_insert_with(|| JSONSchemaProps {
                        type_: Some(type_.into()),
                        ..Default::default()
                    });
            }
        }
    }
    if serve_v1alpha1 {
        crd.spec.versions.push(v1alpha1(&crd));
    }
    CrdFile {
        file_name: format!("ray.io_{}.yaml", crd.spec.names.plural),
        crd,
    }
}

/// KubeRay still serves the deprecated v1alpha1 so old manifests apply.
/// Objects are stored as v1 and without a conversion webhook the API server
/// only rewrites `apiVersion`, so v1alpha1 clients see v1 fields. Its schema
/// keeps spec and status as free-form objects: a second full copy of the v1
/// schema would push every CRD past the 256 KiB limit of client-side
/// `kubectl apply`. Writes through v1alpha1 are therefore checked by the
/// controller's validation, not by the API server's schema.
fn v1alpha1(crd: &CustomResourceDefinition) -> CustomResourceDefinitionVersion {
    let free_form = || JSONSchemaProps {
        type_: Some("object".into()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let v1 = &crd.spec.versions[0];
    CustomResourceDefinitionVersion {
        name: "v1alpha1".into(),
        served: true,
        storage: false,
        deprecated: Some(true),
        deprecation_warning: Some(format!(
            "ray.io/v1alpha1 {} is deprecated; use ray.io/v1",
            crd.spec.names.kind
        )),
        schema: Some(CustomResourceValidation {
            open_api_v3_schema: Some(JSONSchemaProps {
                type_: Some("object".into()),
                properties: Some(
                    [
                        ("spec".to_string(), free_form()),
                        ("status".to_string(), free_form()),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        }),
        ..v1.clone()
    }
}

/// A CRD as YAML, the way `crdgen` writes it.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("CRD serialises")
}
