//! Pure validation of Ray objects: what the API server's schema cannot check
//! (cross-field rules, name lengths that keep generated names valid, option
//! combinations Ray does not support). Every error names the field path and
//! the problem, so the controller can put it in a status condition and a
//! Warning event as is. All problems are reported at once, not just the
//! first, so a user fixes a spec in one round.

mod cluster_options;
mod raycluster;
mod raycronjob;
mod rayjob;
mod rayservice;

use std::fmt;

use k8s_openapi::api::core::v1::{Container, EnvVar};

pub use raycluster::{validate_raycluster, validate_raycluster_status};
pub use raycronjob::{parse_schedule, validate_raycronjob};
pub use rayjob::{validate_rayjob, validate_rayjob_status};
/// Go-style durations (`90s`, `5m`, `1h30m`) or plain seconds; also the kubectl plugin's `--timeout`.
pub use rayservice::parse_timeout;
pub use rayservice::{INITIALIZING_TIMEOUT_ANNOTATION, validate_rayservice};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.workerGroupSpecs[1].minReplicas`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why an object is invalid: one or more field errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors while a validator walks an object.
#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn into_result(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// A value of a closed set that this version does not know.
pub(crate) fn check_known<T: KnownValue>(errs: &mut Errors, field: &str, value: Option<&T>) {
    if let Some(v) = value
        && !v.known()
    {
        errs.add(
            field,
            format!(
                "unsupported value {:?}; supported: {}",
                v.text(),
                T::values().join(", ")
            ),
        );
    }
}

/// The common face of the `string_enum!` types, for [`check_known`].
pub(crate) trait KnownValue {
    fn known(&self) -> bool;
    fn text(&self) -> &str;
    fn values() -> &'static [&'static str];
}

macro_rules! known_value {
    ($($t:ty),+ $(,)?) => {$(
        impl KnownValue for $t {
            fn known(&self) -> bool { self.is_known() }
            fn text(&self) -> &str { self.as_str() }
            fn values() -> &'static [&'static str] { Self::VALUES }
        }
    )+};
}

known_value!(
    crate::raycluster::AuthMode,
    crate::raycluster::UpscalingMode,
    crate::raycluster::AutoscalerVersion,
    crate::raycluster::GcsBackend,
    crate::raycluster::GcsStorageDeletionPolicy,
    crate::raycluster::IngressPathType,
    crate::raycluster::NetworkPolicyMode,
    crate::raycluster::RayClusterUpgradeType,
    crate::rayjob::JobSubmissionMode,
    crate::rayjob::DeletionPolicyType,
    crate::rayjob::JobStatus,
    crate::rayjob::JobDeploymentStatus,
    crate::rayservice::RayServiceUpgradeType,
);

/// `Some(problem)` when `name` is not a DNS-1035 label (what Service names
/// must be): at most 63 characters of `[a-z0-9-]`, starting with a letter and
/// ending with a letter or digit.
pub fn dns1035_label_problem(name: &str) -> Option<String> {
    label_problem(name, |c| c.is_ascii_lowercase(), "a lower-case letter")
}

/// Like [`dns1035_label_problem`], but a digit may come first (DNS-1123).
pub fn dns1123_label_problem(name: &str) -> Option<String> {
    label_problem(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        "a lower-case letter or digit",
    )
}

fn label_problem(name: &str, first_ok: fn(char) -> bool, first: &str) -> Option<String> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.len() > 63 {
        Some(format!("{name:?} is longer than 63 characters"))
    } else if !name.chars().all(valid_char) {
        Some(format!(
            "{name:?} may contain only lower-case letters, digits and '-'"
        ))
    } else if !name.starts_with(first_ok) {
        Some(format!("{name:?} must start with {first}"))
    } else if name.ends_with('-') {
        Some(format!("{name:?} must end with a letter or digit"))
    } else {
        None
    }
}

/// Problems of a label key: an optional DNS subdomain prefix and `/`, then a
/// name of at most 63 characters of alphanumerics, `-`, `_`, `.`, starting
/// and ending alphanumeric.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.')
                .all(|part| dns1123_label_problem(part).is_none());
        if !ok {
            return Some(format!(
                "prefix {p:?} must be a DNS subdomain (lower-case labels separated by '.')"
            ));
        }
    }
    label_value_problem(name)
        .map(|p| format!("name part {p}"))
        .or_else(|| {
            name.is_empty()
                .then(|| "name part must not be empty".into())
        })
}

/// Problems of a label value: empty, or at most 63 characters of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if value.len() > 63 {
        Some(format!("{value:?} is longer than 63 characters"))
    } else if !value.chars().all(ok_char)
        || !value.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !value.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some(format!(
            "{value:?} must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    } else {
        None
    }
}

/// `major.minor.patch` of a Ray version such as `2.52.0` (a missing patch
/// is 0; suffixes like `rc1` are ignored).
pub fn parse_ray_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let mut parts = core.split('.');
    let num = |s: Option<&str>| -> Option<u64> {
        let s = s?;
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let major = num(parts.next())?;
    let minor = num(parts.next())?;
    let patch = num(parts.next()).unwrap_or(0);
    Some((major, minor, patch))
}

/// The environment variable `name` of a container, if set.
pub(crate) fn env_var<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref()?.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests;
