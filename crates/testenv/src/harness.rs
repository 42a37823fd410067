//! Test support: one control plane per test binary, started on first use (or
//! the one named by `KUBERAY_TEST_KUBECONFIG`, e.g. started by a script), and
//! a fresh namespace and client for each test. A binary uses either
//! simulated nodes ([`namespace`]) or real ones ([`real_namespace`]), never
//! both: the first call decides.
//!
//! The control plane lives in a static, which Rust never drops; the process
//! watchdog (see [`crate::process`]) stops it when the test binary exits,
//! whether the tests passed, panicked or were interrupted.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::{ControlPlane, Options};

/// Set to a kubeconfig path to run tests against an already running cluster.
pub const KUBECONFIG_ENV: &str = "KUBERAY_TEST_KUBECONFIG";

/// Real nodes of a test control plane: enough for two small Ray clusters
/// side by side (each node advertises the machine's CPUs).
pub const REAL_NODES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Simulated,
    Real,
}

struct Shared {
    kind: Kind,
    kubeconfig: PathBuf,
    plane: Option<ControlPlane>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared_of(kind: Kind) -> &'static Shared {
    let shared = SHARED.get_or_init(|| {
        if let Some(path) = std::env::var_os(KUBECONFIG_ENV) {
            return Shared {
                kind,
                kubeconfig: PathBuf::from(path),
                plane: None,
            };
        }
        let opts = match kind {
            Kind::Simulated => Options::default(),
            Kind::Real => Options::real(REAL_NODES),
        };
        match ControlPlane::start(opts) {
            Ok(plane) => Shared {
                kind,
                kubeconfig: plane.kubeconfig().to_path_buf(),
                plane: Some(plane),
            },
            Err(e) => panic!("the local control plane did not start: {e}"),
        }
    });
    assert_eq!(
        shared.kind, kind,
        "this test binary already uses a control plane with {:?} nodes; put tests that need {kind:?} nodes in a binary of their own",
        shared.kind
    );
    shared
}

fn shared() -> &'static Shared {
    shared_of(SHARED.get().map_or(Kind::Simulated, |s| s.kind))
}

/// The admin kubeconfig of the test control plane, starting it if needed.
pub fn kubeconfig() -> &'static Path {
    &shared().kubeconfig
}

/// The control plane this binary started, if it started one.
pub fn control_plane() -> Option<&'static ControlPlane> {
    shared().plane.as_ref()
}

/// An admin client of the test control plane.
pub async fn client() -> kube::Client {
    crate::client_from_kubeconfig(kubeconfig())
        .await
        .unwrap_or_else(|e| panic!("no client for the test control plane: {e}"))
}

/// A namespace of its own for one test, deleted (in the background) when the
/// value is dropped.
pub struct TestNamespace {
    pub name: String,
    pub client: kube::Client,
}

impl TestNamespace {
    /// A namespaced API of this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Creates a namespace named `<prefix>-<random>` on the control plane with
/// simulated nodes and waits until pods can be created in it (its `default`
/// ServiceAccount exists).
pub async fn namespace(prefix: &str) -> TestNamespace {
    shared_of(Kind::Simulated);
    new_namespace(prefix).await
}

/// Like [`namespace`], on a control plane whose pods really run (real
/// nodes with the locally built Ray image). Needs root.
pub async fn real_namespace(prefix: &str) -> TestNamespace {
    tokio::task::spawn_blocking(|| shared_of(Kind::Real))
        .await
        .expect("control plane start-up panicked");
    new_namespace(prefix).await
}

/// Limits how many tests run real Ray clusters at once: this machine has
/// two cores, and Ray heads starting together starve each other.
pub async fn ray_permit() -> tokio::sync::SemaphorePermit<'static> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    PERMITS.acquire().await.expect("never closed")
}

async fn new_namespace(prefix: &str) -> TestNamespace {
    let client = client().await;
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = api
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating a test namespace failed: {e}{}", health()));
    let name = created.metadata.name.expect("server assigns a name");
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_until(
        "the namespace's default ServiceAccount",
        Duration::from_secs(60),
        || async { sa.get_opt("default").await.ok().flatten() },
    )
    .await;
    TestNamespace { name, client }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be shutting down:
        // delete from a short-lived thread with a runtime of its own.
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(c) = crate::client_from_kubeconfig(kubeconfig()).await {
                    let _ = Api::<Namespace>::all(c)
                        .delete(&name, &DeleteParams::background())
                        .await;
                }
            });
        });
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after
/// `timeout` with a message naming `what` and, if a control-plane process
/// died, which one and why.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out after {}s waiting for {what}{}",
                timeout.as_secs(),
                health()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An explanation to append to a failure: empty when every control-plane
/// process is alive.
pub fn health() -> String {
    match control_plane().map(ControlPlane::check) {
        Some(Err(e)) => format!("\n(the control plane is broken: {e})"),
        _ => String::new(),
    }
}

/// Installs (server-side applies) every CRD in the repository's
/// `config/crd/bases` and waits until each is Established. Idempotent, so
/// every test may call it.
pub async fn install_crds() {
    install_crd_dir(&crate::repo_root().join("config/crd/bases")).await;
}

/// Installs (server-side applies) the Gateway API standard CRDs fetched by
/// `hack/build-control-plane.sh` (`GATEWAY_API_VERSION` of
/// `hack/versions.env`) and waits until each is Established. Idempotent.
pub async fn install_gateway_api_crds() {
    let dir = crate::binaries::Binaries::ensure()
        .unwrap_or_else(|e| panic!("the Gateway API CRDs are not available: {e}"))
        .gateway_api_crds;
    install_crd_dir(&dir).await;
}

/// The GatewayClass whose Gateways [`gateway_controller`] serves.
pub const GATEWAY_CLASS: &str = "traefik";

/// A real Gateway API implementation on this binary's control plane (real
/// nodes only): installs the Gateway API CRDs, starts Traefik's Gateway
/// provider once and creates the GatewayClass [`GATEWAY_CLASS`] it
/// controls. Returns where every Gateway's port-80 listener answers.
pub async fn gateway_controller() -> std::net::SocketAddr {
    static STARTED: tokio::sync::OnceCell<std::net::SocketAddr> =
        tokio::sync::OnceCell::const_new();
    *STARTED
        .get_or_init(|| async {
            install_gateway_api_crds().await;
            let plane = control_plane().expect(
                "a Gateway controller runs next to a control plane this test binary started (unset KUBERAY_TEST_KUBECONFIG)",
            );
            let address = tokio::task::spawn_blocking(|| plane.start_gateway_controller())
                .await
                .expect("starting Traefik panicked")
                .unwrap_or_else(|e| panic!("starting the Gateway controller (Traefik): {e}"));
            let class = serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {"controllerName": crate::controlplane::GATEWAY_CONTROLLER_NAME},
            });
            let gvk = kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GatewayClass");
            let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "gatewayclasses");
            let api: Api<kube::api::DynamicObject> = Api::all_with(client().await, &ar);
            let obj: kube::api::DynamicObject = serde_json::from_value(class).unwrap();
            api.patch(
                GATEWAY_CLASS,
                &kube::api::PatchParams::apply("kuberay-tests").force(),
                &kube::api::Patch::Apply(&obj),
            )
            .await
            .unwrap_or_else(|e| panic!("creating GatewayClass {GATEWAY_CLASS}: {e}"));
            address
        })
        .await
}

async fn install_crd_dir(dir: &Path) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use serde::Deserialize;
    let api: Api<CustomResourceDefinition> = Api::all(client().await);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no CRD in {}", dir.display());
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_json::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if v["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(v).unwrap();
            apply_crd(&api, &crd).await;
        }
    }
}

async fn apply_crd(
    api: &Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) {
    use kube::api::{Patch, PatchParams};
    let name = crd.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("kuberay-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("installing {name}: {e}"));
    wait_until(
        &format!("{name} to be Established"),
        Duration::from_secs(30),
        || async {
            let c = api.get(&name).await.ok()?;
            let ok = c
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(())
        },
    )
    .await;
}
