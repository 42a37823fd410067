//! Writes the CRDs to `config/crd/bases/` and to the operator Helm chart's
//! `crds/` (or only to the directory given as the first argument). The test
//! suite fails when the committed files differ from what this would write.

const DEFAULT_DIRS: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/crd/bases"),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../helm-chart/kuberay-operator/crds"
    ),
];

fn main() -> std::io::Result<()> {
    let dirs: Vec<String> = match std::env::args().nth(1) {
        Some(d) => vec![d],
        None => DEFAULT_DIRS.iter().map(|d| d.to_string()).collect(),
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
