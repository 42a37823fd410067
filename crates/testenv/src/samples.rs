//! KubeRay's sample manifests and CRDs, read from `../shared/kuberay` beside
//! the repository (or `$KUBERAY_REFERENCE_DIR`). They are test data only and
//! never copied into the repository; tests that need them skip, saying so,
//! when the directory is absent.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

/// One YAML document of a sample file.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File name, e.g. `ray-cluster.sample.yaml`.
    pub file: String,
    /// Position of the document in its file.
    pub index: usize,
    pub value: Value,
}

impl Sample {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn is_ray(&self) -> bool {
        self.value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("ray.io/"))
    }

    /// `file#index`, for messages.
    pub fn id(&self) -> String {
        format!("{}#{}", self.file, self.index)
    }
}

/// Where the reference data is looked for: `KUBERAY_REFERENCE_DIR`, else
/// `../shared/kuberay` next to the repository.
fn reference_location() -> PathBuf {
    std::env::var_os("KUBERAY_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("../shared/kuberay"))
}

/// The reference directory, if present, for uses that work without it
/// (naming the images real nodes hold).
pub fn reference_dir_if_present() -> Option<PathBuf> {
    let dir = reference_location();
    dir.join("samples").is_dir().then_some(dir)
}

/// The reference directory. Tests that read KubeRay's samples or CRDs
/// never pass without them: this panics, saying where to put them.
pub fn reference_dir() -> PathBuf {
    reference_dir_if_present().unwrap_or_else(|| {
        panic!(
            "KubeRay's reference data (samples/ and crds/) is needed by this test and is not at {}. \
             Put KubeRay v1.7's samples and CRDs in ../shared/kuberay next to the repository, or set \
             KUBERAY_REFERENCE_DIR to a directory holding samples/ and crds/",
            reference_location().display()
        )
    })
}

/// The text of one of KubeRay's sample manifests (`ray-job.sample.yaml`);
/// panics, saying where to put the reference data, when it is missing: a
/// test that needs a sample never passes without it.
pub fn required(file: &str) -> String {
    let path = reference_location().join("samples").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "KubeRay's sample {} is needed by this test and could not be read ({e}). Put KubeRay's \
             samples in ../shared/kuberay/samples next to the repository, or set KUBERAY_REFERENCE_DIR \
             to a directory holding samples/",
            path.display()
        )
    })
}

/// Every document of a multi-document YAML text, empty ones skipped, read
/// the way kubectl reads it.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let text = yaml11_octals(text);
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Every document of every sample file, in file-name order.
pub fn all() -> Vec<Sample> {
    let dir = reference_dir().join("samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable sample");
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (index, value) in docs.into_iter().enumerate() {
            out.push(Sample {
                file: file.clone(),
                index,
                value,
            });
        }
    }
    out
}

/// The documents of the samples whose kind is a Ray kind.
pub fn ray_objects() -> Vec<Sample> {
    all().into_iter().filter(Sample::is_ray).collect()
}

/// KubeRay's own CRD for a plural (`rayclusters`, ...), as JSON.
pub fn kuberay_crd(plural: &str) -> Value {
    let path = reference_dir().join(format!("crds/ray.io_{plural}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "KubeRay's CRD {} is needed by this test: {e}",
            path.display()
        )
    });
    parse_documents(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} holds no document", path.display()))
}

/// kubectl reads YAML 1.1, where a plain `0777` is octal (511); serde_yaml
/// reads YAML 1.2, where it is the string "0777". Manifests rely on the former
/// for file modes (`defaultMode: 0777`), so plain octal values of mapping
/// entries are rewritten to decimal before parsing. Quoted values are left
/// alone: they are strings in both versions.
fn yaml11_octals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let rewritten = body.rsplit_once(": ").and_then(|(key, value)| {
            let digits = value.trim().strip_prefix('0')?;
            if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            let n = u32::from_str_radix(digits, 8).ok()?;
            Some(format!("{key}: {n}"))
        });
        match rewritten {
            Some(r) => {
                out.push_str(&r);
                out.push_str(&line[body.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_octal_modes_read_as_kubectl_reads_them() {
        let docs = parse_documents("a: 0777\nb: '0777'\nc: 0\ne: 10\n").unwrap();
        assert_eq!(docs[0]["a"], 511);
        assert_eq!(docs[0]["b"], "0777");
        assert_eq!(docs[0]["c"], 0);
        assert_eq!(docs[0]["e"], 10);
    }
}
