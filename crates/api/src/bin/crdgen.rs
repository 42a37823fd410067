//! Writes the CRDs to `config/crd/bases/` (or the directory given as the
//! first argument). The test suite fails when the committed files differ from
//! what this would write.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/crd/bases").into());
    std::fs::create_dir_all(&dir)?;
    for file in kuberay_api::crd::all() {
        let path = std::path::Path::new(&dir).join(&file.file_name);
        std::fs::write(&path, kuberay_api::crd::to_yaml(&file.crd))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
