//! The images real nodes hold: the pod sandbox (pause), Ray, and the
//! operator. There is no registry: each is packed from a root filesystem
//! (built by `hack/build-node-images.sh`, or assembled here for the
//! operator) and imported into every node's containerd.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::configs::PAUSE_IMAGE;
use crate::Error;
use crate::binaries::{cache_dir, version};
use crate::image::{ImageConfig, ImageSpec};

/// The operator image's name, as the `kuberay-operator` chart's values
/// give it (`image.repository:image.tag`).
pub const OPERATOR_IMAGE: &str = "kuberay-operator:v1.7.0-rs";

/// The pause and Ray images, building their root filesystems first if the
/// cache lacks them.
pub fn standard_images(reference_dir: Option<&Path>) -> Result<Vec<ImageSpec>, Error> {
    let script = crate::repo_root().join("hack/build-node-images.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::io(&script, e))?;
    if !out.status.success() {
        return Err(Error::BuildFailed(format!(
            "{} exited with {}; its messages are above",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| -> Result<PathBuf, Error> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(PathBuf::from)
            .ok_or_else(|| Error::BuildFailed(format!("{} printed no {key}", script.display())))
    };
    let pause = ImageSpec {
        names: vec![PAUSE_IMAGE.into()],
        rootfs: get("PAUSE_ROOTFS")?,
        config: ImageConfig {
            entrypoint: vec!["/pause".into()],
            user: "65535:65535".into(),
            working_dir: "/".into(),
            ..Default::default()
        },
    };
    let ray = ImageSpec {
        names: ray_image_names(&crate::repo_root(), reference_dir),
        rootfs: get("RAY_ROOTFS")?,
        config: ImageConfig {
            cmd: vec!["/bin/bash".into()],
            env: vec![
                "PATH=/home/ray/anaconda3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "HOME=/home/ray".into(),
                "LANG=C.UTF-8".into(),
                // No usage reports: nothing in a local pod may reach out.
                "RAY_USAGE_STATS_ENABLED=0".into(),
            ],
            user: "1000:100".into(),
            working_dir: "/home/ray".into(),
            ..Default::default()
        },
    };
    Ok(vec![pause, ray])
}

/// Every name the one locally built Ray image answers to: its own version,
/// and each `rayproject/ray*` reference in the charts, the tests and
/// KubeRay's samples, so that they run unchanged (with the pinned Ray
/// version, whatever their tag says).
pub fn ray_image_names(repo: &Path, reference_dir: Option<&Path>) -> Vec<String> {
    let mut names = BTreeSet::from([format!("rayproject/ray:{}", version("RAY_VERSION"))]);
    let mut roots = vec![repo.join("helm-chart"), repo.join("crates")];
    roots.extend(reference_dir.map(|d| d.join("samples")));
    for root in roots {
        scan(&root, &mut names);
    }
    names.into_iter().collect()
}

fn scan(dir: &Path, names: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            scan(&path, names);
            continue;
        }
        let interesting = path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "rs" || e == "tpl");
        if !interesting {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, _) in text.match_indices("rayproject/ray") {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/:._-".contains(c)))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            if let Some((_, tag)) = name.split_once(':')
                && !tag.is_empty()
                && !tag.contains(':')
            {
                names.insert(name.to_string());
            }
        }
    }
}

/// The operator image from a built binary, as `Dockerfile` describes it
/// (the binary as entrypoint, the CA bundle, a numeric non-root user), with
/// the shared libraries the binary links taken from the host that built it
/// instead of a base image.
pub fn operator_image(binary: &Path) -> Result<ImageSpec, Error> {
    let bytes = std::fs::read(binary).map_err(|e| Error::io(binary, e))?;
    let key: String = Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache_dir().join("images").join(format!("operator-{key}"));
    let rootfs = dir.join("rootfs");
    if !rootfs.join("kuberay-operator").is_file() {
        let tmp = dir.join("rootfs.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let put = |dest: &str, src: &Path| -> Result<(), Error> {
            let target = tmp.join(dest.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().expect("absolute"))
                .map_err(|e| Error::io(&target, e))?;
            std::fs::copy(src, &target).map_err(|e| Error::io(src, e))?;
            Ok(())
        };
        put("/kuberay-operator", binary)?;
        for lib in shared_libraries(binary)? {
            put(&lib.display().to_string(), &lib)?;
        }
        put(
            "/etc/ssl/certs/ca-certificates.crt",
            Path::new("/etc/ssl/certs/ca-certificates.crt"),
        )?;
        let etc = tmp.join("etc");
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n",
        )
        .map_err(|e| Error::io(&etc, e))?;
        std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n")
            .map_err(|e| Error::io(&etc, e))?;
        let t = tmp.join("tmp");
        std::fs::create_dir_all(&t).map_err(|e| Error::io(&t, e))?;
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::rename(&tmp, &rootfs).map_err(|e| Error::io(&rootfs, e))?;
        prune_operator_trees(&dir);
    }
    Ok(ImageSpec {
        names: vec![OPERATOR_IMAGE.into()],
        rootfs,
        config: ImageConfig {
            entrypoint: vec!["/kuberay-operator".into()],
            user: "65532:65532".into(),
            working_dir: "/".into(),
            exposed_ports: vec![8080, 8082],
            ..Default::default()
        },
    })
}

/// Every operator build gets a tree of its own; keep the newest two.
fn prune_operator_trees(keep: &Path) {
    let Some(parent) = keep.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let mut trees: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != keep)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("operator-"))
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    trees.sort();
    trees.reverse();
    for (_, old) in trees.into_iter().skip(1) {
        let _ = std::fs::remove_dir_all(old);
    }
}

/// The shared libraries (and the loader) a dynamically linked binary
/// needs, by absolute path, from `ldd`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| Error::io(Path::new("ldd"), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_absolute_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn finds_every_ray_image_reference() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("samples")).unwrap();
        std::fs::write(
            dir.path().join("samples/a.yaml"),
            "image: rayproject/ray:2.46.0\n  image: \"rayproject/ray:nightly-gpu\"\nrepository: rayproject/ray\n",
        )
        .unwrap();
        let names = ray_image_names(Path::new("/nonexistent"), Some(dir.path()));
        assert!(
            names.contains(&"rayproject/ray:2.46.0".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"rayproject/ray:nightly-gpu".to_string()));
        assert!(names.contains(&format!("rayproject/ray:{}", version("RAY_VERSION"))));
        assert!(!names.iter().any(|n| n == "rayproject/ray"));
    }
}
