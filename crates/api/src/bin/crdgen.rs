//! Writes the CRDs to `config/crd/bases/` and to the operator Helm chart's
//! `crds/` (or only to the directory given as the first argument). The test
//! suite fails when the committed files differ from what this would write.

/// Where the CRDs go, under the repository's root.
const DEFAULT_DIRS: [&str; 2] = ["config/crd/bases", "helm-chart/kuberay-operator/crds"];

/// The repository's root: where `cargo run` says this crate is (the
/// compile-time path may belong to another checkout sharing the target
/// directory).
fn repo_root() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("../..")
}

fn main() -> std::io::Result<()> {
    let dirs: Vec<String> = match std::env::args().nth(1) {
        Some(d) => vec![d],
        None => DEFAULT_DIRS
            .iter()
            .map(|d| repo_root().join(d).display().to_string())
            .collect(),
    };
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for file in kuberay_api::crd::all() {
            let path = std::path::Path::new(&dir).join(&file.file_name);
            std::fs::write(&path, kuberay_api::crd::to_yaml(&file.crd))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
