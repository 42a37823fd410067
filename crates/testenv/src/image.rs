//! Container images without a registry or Docker: a root filesystem on disk
//! is packed into a one-layer image archive (the `docker save` layout that
//! containerd imports) with its config (entrypoint, env, user, os/arch), and
//! imported into a node's containerd under every name it should answer to.
//!
//! The layer is written by GNU tar, which keeps hard links, device nodes,
//! ownership and modes exactly; this module writes the manifest and the
//! config and names everything by its SHA-256, as the format requires.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// How a container from the image runs by default.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// `uid:gid`, numeric so that `runAsNonRoot` can be checked.
    pub user: String,
    pub working_dir: String,
    pub exposed_ports: Vec<u16>,
}

/// A root filesystem, its config, and the references it is imported under.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Normalised by containerd like any reference without a registry host.
    pub names: Vec<String>,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

impl ImageSpec {
    fn config_json(&self, diff_id: &str) -> serde_json::Value {
        let mut config = serde_json::json!({
            "Env": self.config.env,
            "User": self.config.user,
            "WorkingDir": self.config.working_dir,
        });
        if !self.config.entrypoint.is_empty() {
            config["Entrypoint"] = serde_json::json!(self.config.entrypoint);
        }
        if !self.config.cmd.is_empty() {
            config["Cmd"] = serde_json::json!(self.config.cmd);
        }
        if !self.config.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, serde_json::Value> = self
                .config
                .exposed_ports
                .iter()
                .map(|p| (format!("{p}/tcp"), serde_json::json!({})))
                .collect();
            config["ExposedPorts"] = serde_json::Value::Object(ports);
        }
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            // A fixed date keeps the config, and so the image ID, a pure
            // function of its content.
            "created": "1970-01-01T00:00:00Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kuberay-testenv image pack"}],
        })
    }

    /// Packs the image into `<dir>/<key>.tar`, unless an archive of the same
    /// content is already there (the key covers the rootfs path, which the
    /// build scripts make content-addressed, the names and the config).
    /// Rootfs trees that are not content-addressed must be packed with
    /// `reuse = false`.
    pub fn pack(&self, dir: &Path, reuse: bool) -> Result<PathBuf, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let key = {
            let mut h = Sha256::new();
            h.update(self.rootfs.display().to_string());
            h.update(self.names.join(","));
            h.update(format!("{:?}", self.config));
            hex(&h.finalize())[..16].to_string()
        };
        let archive = dir.join(format!("{key}.tar"));
        if reuse && archive.is_file() {
            return Ok(archive);
        }
        let work = tempfile::Builder::new()
            .prefix(".pack-")
            .tempdir_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let layer = work.path().join("layer.tar");
        let out = Command::new("tar")
            .args(["--create", "--numeric-owner", "--xattrs", "--sort=name"])
            .args([
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "--exclude=./dev/*",
            ])
            .arg("--file")
            .arg(&layer)
            .arg("--directory")
            .arg(&self.rootfs)
            .arg(".")
            .output()
            .map_err(|e| Error::io(Path::new("tar"), e))?;
        if !out.status.success() {
            return Err(Error::BuildFailed(format!(
                "tar of {} failed: {}",
                self.rootfs.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let diff_id = format!("sha256:{}", sha256_file(&layer)?);
        let config = serde_json::to_vec(&self.config_json(&diff_id)).expect("json");
        let config_name = format!("{}.json", hex(&Sha256::digest(&config)));
        let layer_name = format!("{}/layer.tar", &diff_id["sha256:".len()..]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": self.names,
            "Layers": [layer_name],
        }]))
        .expect("json");

        // The archive itself: manifest, config and the layer under its digest.
        let tmp_archive = work.path().join("image.tar");
        let file = std::fs::File::create(&tmp_archive).map_err(|e| Error::io(&tmp_archive, e))?;
        let mut tar = TarWriter::new(file);
        tar.file("manifest.json", &manifest)
            .and_then(|_| tar.file(&config_name, &config))
            .and_then(|_| tar.file_from_path(&layer_name, &layer))
            .and_then(|_| tar.finish())
            .map_err(|e| Error::io(&tmp_archive, e))?;
        std::fs::rename(&tmp_archive, &archive).map_err(|e| Error::io(&archive, e))?;
        prune_older(dir, &self.names[0], &archive);
        Ok(archive)
    }
}

/// Imports an image archive into the containerd listening on `socket`, in
/// the namespace the CRI uses, and pins each of its names so the kubelet's
/// image garbage collection never removes it (there is no registry to pull
/// it back from). containerd stores short names fully qualified; the names
/// it actually stored are read back rather than guessed.
pub fn import(ctr: &Path, socket: &Path, archive: &Path, names: &[String]) -> Result<(), Error> {
    let run = |args: &[&str]| -> Result<String, Error> {
        let out = Command::new(ctr)
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .map_err(|e| Error::io(ctr, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::BuildFailed(format!(
                "ctr {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    run(&["images", "import", &archive.display().to_string()])?;
    let stored = run(&["images", "ls", "--quiet"])?;
    for name in names {
        let full = stored.lines().find(|s| stored_as(s, name)).ok_or_else(|| {
            Error::BuildFailed(format!(
                "{name} is not among the images containerd holds after importing {}",
                archive.display()
            ))
        })?;
        run(&["images", "label", full, "io.cri-containerd.pinned=pinned"])?;
    }
    Ok(())
}

/// Whether containerd's stored reference `stored` is the short name `name`:
/// equal, or `name` after a registry host and, for one-element
/// repositories, the `library/` prefix.
pub fn stored_as(stored: &str, name: &str) -> bool {
    stored == name
        || stored.ends_with(&format!("/{name}"))
            && (name.contains('/') || stored.ends_with(&format!("/library/{name}")))
}

/// Archives of an image are named by content, so every change of a rootfs
/// or config adds one: keep the newest two per image name (the one just
/// written and the one a concurrent user may still be importing).
fn prune_older(dir: &Path, name: &str, keep: &Path) {
    let marker = |archive: &Path| archive.with_extension("name");
    let _ = std::fs::write(marker(keep), name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut same: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar") && p != keep)
        .filter(|p| std::fs::read_to_string(marker(p)).is_ok_and(|n| n == name))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    same.sort();
    same.reverse();
    for (_, old) in same.into_iter().skip(1) {
        let _ = std::fs::remove_file(marker(&old));
        let _ = std::fs::remove_file(old);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Just enough of the ustar format for the outer archive: regular files
/// with short names, owned by root, mode 0644.
struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> Self {
        Self { out }
    }

    fn header(&mut self, name: &str, size: u64) -> std::io::Result<()> {
        assert!(name.len() < 100, "tar member name too long: {name}");
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], value: u64| {
            let s = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(s.as_bytes());
        };
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.write_all(&h)
    }

    fn pad(&mut self, size: u64) -> std::io::Result<()> {
        let rem = (512 - size % 512) % 512;
        self.out.write_all(&vec![0u8; rem as usize])
    }

    fn file(&mut self, name: &str, body: &[u8]) -> std::io::Result<()> {
        self.header(name, body.len() as u64)?;
        self.out.write_all(body)?;
        self.pad(body.len() as u64)
    }

    fn file_from_path(&mut self, name: &str, path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        self.header(name, size)?;
        let copied = std::io::copy(&mut f, &mut self.out)?;
        assert_eq!(copied, size, "{} changed while archived", path.display());
        self.pad(size)
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_references_match_their_short_names() {
        assert!(stored_as(
            "registry.example/rayproject/ray:2.52.0",
            "rayproject/ray:2.52.0"
        ));
        assert!(stored_as("registry.example/library/pause:1", "pause:1"));
        assert!(!stored_as("registry.example/other/pause:1", "pause:1"));
        assert!(!stored_as(
            "registry.example/rayproject/ray:2.52.0-py310",
            "rayproject/ray:2.52.0"
        ));
    }

    #[test]
    fn packs_a_rootfs_into_a_readable_archive() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::write(rootfs.join("bin/hello"), "hi").unwrap();
        let spec = ImageSpec {
            names: vec!["example/hello:1".into()],
            rootfs,
            config: ImageConfig {
                entrypoint: vec!["/bin/hello".into()],
                user: "1000:100".into(),
                ..Default::default()
            },
        };
        let archive = spec.pack(&dir.path().join("out"), true).unwrap();
        let list = Command::new("tar")
            .arg("-tf")
            .arg(&archive)
            .output()
            .unwrap();
        let names = String::from_utf8(list.stdout).unwrap();
        assert!(names.lines().any(|l| l == "manifest.json"), "{names}");
        assert!(names.lines().any(|l| l.ends_with("/layer.tar")), "{names}");
        let manifest = Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json")
            .output()
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
        assert_eq!(m[0]["RepoTags"][0], "example/hello:1");
        // Packing again with reuse returns the same archive untouched.
        let again = spec.pack(&dir.path().join("out"), true).unwrap();
        assert_eq!(archive, again);
    }
}
