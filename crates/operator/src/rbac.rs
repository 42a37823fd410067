//! The permissions the operator needs, and why: the single list that the
//! Helm chart's and `config/rbac`'s roles are checked against, and that an
//! integration test compares with the requests the operator really makes
//! under the chart's ServiceAccount. A permission nobody can justify is a
//! permission a compromised operator could abuse, so each one says which
//! code path needs it.

use std::collections::BTreeSet;

use crate::runtime::client::ApiCall;

/// One RBAC rule as the chart writes it.
#[derive(Debug)]
pub struct Rule {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Whether the operator sends these requests itself (an integration
    /// test must see each of them), or the API server checks the permission
    /// on its behalf without a request of that verb.
    pub called: bool,
    pub why: &'static str,
}

/// A permission: (API group, resource, verb).
pub type Permission = (String, String, String);

/// Why the API server asks for `create` on a child the operator only ever
/// server-side applies.
const APPLIED_CHILD: &str = "a server-side apply that creates the object is authorised as a \
     create as well as a patch";

/// Why the operator holds what only the Ray autoscaler uses.
const GRANTED_TO_AUTOSCALER: &str = "granted by the autoscaler's Role, and Kubernetes lets the \
     operator grant only what it holds itself";

/// What the operator does in every namespace it manages.
pub const OPERATOR_RULES: &[Rule] = &[
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &[
            "list",
            "watch",
            "create",
            "delete",
            "deletecollection",
            "patch",
        ],
        called: true,
        why: "Ray pods: cached, created, deleted one by one on scale-down and \
              all at once on suspend or Recreate; the RayJob controller lists \
              head pods to explain a stuck Initializing; the RayService \
              controller patches the head pod's ray.io/serve label",
    },
    Rule {
        group: "",
        resources: &["services", "serviceaccounts"],
        verbs: &["list", "watch", "patch"],
        called: true,
        why: "head, serve and headless services and the autoscaler's \
              ServiceAccount, cached and server-side applied",
    },
    Rule {
        group: "",
        resources: &["services"],
        verbs: &["delete"],
        called: true,
        why: "a suspended RayService's head and serve services",
    },
    Rule {
        group: "discovery.k8s.io",
        resources: &["endpointslices"],
        verbs: &["list"],
        called: true,
        why: "a RayService's numServeEndpoints: the ready pods behind its \
              serve service",
    },
    Rule {
        group: "rbac.authorization.k8s.io",
        resources: &["roles", "rolebindings"],
        verbs: &["list", "watch", "patch"],
        called: true,
        why: "the Ray autoscaler's Role and RoleBinding, cached and \
              server-side applied",
    },
    Rule {
        group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: &["list", "watch", "patch"],
        called: true,
        why: "the head ingress of enableIngress, cached and server-side applied",
    },
    Rule {
        group: "gateway.networking.k8s.io",
        resources: &["gateways", "httproutes"],
        verbs: &["get", "create", "patch", "delete"],
        called: true,
        why: "the Gateway and HTTPRoute of a RayService's incremental upgrade: \
              read each reconcile (not watched, so the operator runs where the \
              Gateway API is not installed), created, their spec patched back \
              when it drifted or the traffic weights move, deleted on suspend",
    },
    Rule {
        group: "",
        resources: &["services", "serviceaccounts"],
        verbs: &["create"],
        called: false,
        why: APPLIED_CHILD,
    },
    Rule {
        group: "rbac.authorization.k8s.io",
        resources: &["roles", "rolebindings"],
        verbs: &["create"],
        called: false,
        why: APPLIED_CHILD,
    },
    Rule {
        group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: &["create"],
        called: false,
        why: APPLIED_CHILD,
    },
    Rule {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch", "create"],
        called: true,
        why: "the generated auth token of authOptions.mode token, created \
              once and never changed; get: the token (generated or the \
              user's secretName) sent to the dashboard by RayJob and \
              RayService",
    },
    Rule {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        called: true,
        why: "events on the Ray objects; a repeated event is patched",
    },
    Rule {
        group: "batch",
        resources: &["jobs"],
        verbs: &["list", "watch", "create", "delete"],
        called: true,
        why: "the RayJob submitter Job of K8sJobMode; the Redis clean-up Job \
              of a deleted RayCluster with GCS fault tolerance (created, cached)",
    },
    Rule {
        group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["list", "watch", "create", "patch"],
        called: true,
        why: "the claim of the embedded GCS store (backend rocksdb): cached, \
              created once, its owner reference patched when deletionPolicy \
              changes",
    },
    Rule {
        group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["delete"],
        called: false,
        why: "changing an object's ownerReferences is allowed by the \
              OwnerReferencesPermissionEnforcement admission plugin only to \
              those who may delete it (the GCS claim's deletionPolicy flip)",
    },
    Rule {
        group: "ray.io",
        resources: &["rayclusters"],
        verbs: &["list", "watch", "create", "patch", "delete"],
        called: true,
        why: "RayClusters reconciled (the Redis clean-up finalizer patched), \
              and made, suspended and deleted by their RayJob",
    },
    Rule {
        group: "ray.io",
        resources: &["rayjobs"],
        verbs: &["list", "watch", "create", "patch", "delete"],
        called: true,
        why: "RayJobs reconciled: finalizer patched, deleted by DeleteSelf; \
              created by their RayCronJob at each tick",
    },
    Rule {
        group: "ray.io",
        resources: &["raycronjobs"],
        verbs: &["list", "watch"],
        called: true,
        why: "RayCronJobs reconciled (with the RayCronJob feature gate)",
    },
    Rule {
        group: "ray.io",
        resources: &["rayservices"],
        verbs: &["list", "watch", "patch"],
        called: true,
        why: "RayServices reconciled: their finalizer patched",
    },
    Rule {
        group: "ray.io",
        resources: &[
            "rayclusters/status",
            "rayjobs/status",
            "raycronjobs/status",
            "rayservices/status",
        ],
        verbs: &["patch"],
        called: true,
        why: "status written with server-side apply",
    },
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["get"],
        called: false,
        why: GRANTED_TO_AUTOSCALER,
    },
    Rule {
        group: "ray.io",
        resources: &["rayclusters"],
        verbs: &["get"],
        called: false,
        why: GRANTED_TO_AUTOSCALER,
    },
    Rule {
        group: "",
        resources: &["pods/resize"],
        verbs: &["patch"],
        called: false,
        why: GRANTED_TO_AUTOSCALER,
    },
    Rule {
        group: "ray.io",
        resources: &[
            "rayclusters/finalizers",
            "rayjobs/finalizers",
            "raycronjobs/finalizers",
            "rayservices/finalizers",
        ],
        verbs: &["update"],
        called: false,
        why: "children carry blockOwnerDeletion, which the \
              OwnerReferencesPermissionEnforcement admission plugin (on in \
              OpenShift and in our test control plane) allows only to those \
              who may update the owner's finalizers",
    },
];

/// The leader election Lease, in the operator's own namespace only.
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "patch"],
    called: true,
    why: "acquiring, renewing and releasing the leader Lease",
}];

/// Every permission `rules` grant.
pub fn permissions(rules: &[Rule]) -> BTreeSet<Permission> {
    expand(rules.iter())
}

/// The permissions of the rules the operator exercises with requests of
/// its own.
pub fn called_permissions(rules: &[Rule]) -> BTreeSet<Permission> {
    expand(rules.iter().filter(|r| r.called))
}

fn expand<'a>(rules: impl Iterator<Item = &'a Rule>) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in rules {
        for res in r.resources {
            for verb in r.verbs {
                out.insert((r.group.to_string(), res.to_string(), verb.to_string()));
            }
        }
    }
    out
}

/// The permissions a request needs: a server-side apply is a patch that may
/// create the object (a subresource, such as `status`, is never created).
pub fn needed(call: &ApiCall) -> Vec<Permission> {
    let p = |verb: &str| (call.group.clone(), call.resource.clone(), verb.to_string());
    match call.verb.as_str() {
        "apply" if call.resource.contains('/') => vec![p("patch")],
        "apply" => vec![p("patch"), p("create")],
        verb => vec![p(verb)],
    }
}

/// The permissions `rules` grant as a chart renders them (`PolicyRule`s,
/// possibly several resources and verbs each, `*` not allowed).
pub fn from_policy_rules(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in rules {
        for group in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for verb in &r.verbs {
                    out.insert((group.clone(), res.clone(), verb.clone()));
                }
            }
        }
    }
    out
}
