//! The layers of `crates/operator/src` depend only downwards: `runtime/`
//! and `kit/` know neither `ray/` nor any controller, `ray/` knows no
//! controller, no controller reaches into another, and only the process
//! (`runtime/`, the binary) reads the environment. Checked on the source
//! text, so a stray `use` fails here with the file that has it.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    kuberay_testenv::repo_root().join("crates/operator/src")
}

/// Every `.rs` file below `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// The files under `layer` that mention any of `forbidden`, with the
/// offending lines.
fn offenders(layer: &str, forbidden: &[&str]) -> Vec<String> {
    sources(&src().join(layer))
        .into_iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, line)| forbidden.iter().any(|f| line.contains(f)))
                .map(|(n, line)| format!("{}:{}: {}", path.display(), n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_generic_layers_know_no_controller_and_no_ray() {
    for layer in ["kit", "runtime"] {
        let found = offenders(layer, &["crate::controllers", "crate::ray"]);
        assert!(
            found.is_empty(),
            "{layer}/ must not depend on controllers/ or ray/:\n{}",
            found.join("\n")
        );
    }
    // The toolkit does not even know the Ray API (the process parses the
    // feature gates, so runtime/ does).
    let found = offenders("kit", &["kuberay_api"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn ray_knowledge_knows_no_controller() {
    let found = offenders("ray", &["crate::controllers"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn controllers_do_not_reach_into_each_other() {
    let controllers = src().join("controllers");
    for entry in std::fs::read_dir(&controllers).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let me = path.file_name().unwrap().to_string_lossy().to_string();
        let others: Vec<String> = std::fs::read_dir(&controllers)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() && p != &path)
            .map(|p| {
                format!(
                    "crate::controllers::{}",
                    p.file_name().unwrap().to_string_lossy()
                )
            })
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let found = offenders(&format!("controllers/{me}"), &others);
        assert!(
            found.is_empty(),
            "the {me} controller reaches into another:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn only_the_process_reads_the_environment() {
    for layer in ["kit", "ray", "controllers"] {
        let found = offenders(layer, &["std::env::var", "env::var("]);
        assert!(
            found.is_empty(),
            "{layer}/ reads the environment; take the setting from Config:\n{}",
            found.join("\n")
        );
    }
}
