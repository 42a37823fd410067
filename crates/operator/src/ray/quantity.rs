//! Kubernetes quantities (`500m`, `2Gi`, `1e3`) as numbers, and back to
//! canonical strings, for `ray start` resources and the desired totals in
//! RayCluster status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in base units, or `None` if it is malformed.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

/// Whether a quantity string uses binary (`Ki`, `Mi`, ...) suffixes.
fn is_binary(q: &str) -> bool {
    q.trim_end().ends_with('i')
}

/// Like Go's `Quantity.Value()`: the value rounded up to an integer, so
/// `500m` CPU asks Ray for one CPU.
pub fn ceil(q: &Quantity) -> Option<i64> {
    // Round first: parsing `2.2` can give 2.2000000000000002.
    parse(&q.0).map(|v| ((v * 1e9).round() / 1e9).ceil() as i64)
}

/// A quantity string for `value` in the style of `like` (binary suffixes if
/// it had one): `1500m`, `3`, `5Gi`, `6G`.
pub fn format(value: f64, like_binary: bool) -> String {
    let v = (value * 1000.0).round() / 1000.0;
    if v.fract() != 0.0 {
        return format!("{}m", (v * 1000.0).round() as i64);
    }
    let n = v as i64;
    if n != 0 {
        let units: &[(&str, i64)] = if like_binary {
            &[
                ("Ei", 1 << 60),
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ]
        } else {
            &[
                ("E", 1_000_000_000_000_000_000),
                ("P", 1_000_000_000_000_000),
                ("T", 1_000_000_000_000),
                ("G", 1_000_000_000),
                ("M", 1_000_000),
                ("k", 1_000),
            ]
        };
        for (suffix, size) in units {
            if n % size == 0 {
                return format!("{}{suffix}", n / size);
            }
        }
    }
    n.to_string()
}

/// GPU-like resource names: anything ending in `gpu` and NVIDIA MIG slices.
pub fn is_gpu(name: &str) -> bool {
    name.ends_with("gpu") || (name.starts_with("nvidia.com/mig-") && name.ends_with("gb"))
}

/// Totals of resources by name, remembering which used binary suffixes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    values: BTreeMap<String, (f64, bool)>,
}

impl Totals {
    pub fn add(&mut self, name: &str, q: &Quantity, times: f64) {
        if let Some(v) = parse(&q.0) {
            let e = self
                .values
                .entry(name.to_string())
                .or_insert((0.0, is_binary(&q.0)));
            e.0 += v * times;
        }
    }

    pub fn merge(&mut self, other: &Totals, times: f64) {
        for (k, (v, binary)) in &other.values {
            let e = self.values.entry(k.clone()).or_insert((0.0, *binary));
            e.0 += v * times;
        }
    }

    pub fn get(&self, name: &str) -> f64 {
        self.values.get(name).map_or(0.0, |v| v.0)
    }

    /// The total as a quantity string (`0` when absent).
    pub fn quantity(&self, name: &str) -> Quantity {
        let (v, binary) = self.values.get(name).copied().unwrap_or((0.0, false));
        Quantity(format(v, binary))
    }

    /// The sum over every GPU-like resource.
    pub fn gpus(&self) -> Quantity {
        let v = self
            .values
            .iter()
            .filter(|(k, _)| is_gpu(k))
            .map(|(_, v)| v.0)
            .sum();
        Quantity(format(v, false))
    }

    /// What one pod asks for: per container, its requests, and its limits
    /// for whatever it does not request (as the scheduler counts).
    pub fn of_pod(spec: &PodSpec) -> Self {
        let mut t = Self::default();
        for c in &spec.containers {
            let Some(r) = &c.resources else { continue };
            let requests = r.requests.clone().unwrap_or_default();
            for (k, q) in &requests {
                t.add(k, q, 1.0);
            }
            for (k, q) in r.limits.iter().flatten() {
                if !requests.contains_key(k) {
                    t.add(k, q, 1.0);
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2Gi"), Some(2.0 * 1024f64.powi(3)));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("3"), Some(3.0));
        assert_eq!(parse("1.5G"), Some(1.5e9));
        assert_eq!(parse("x"), None);
    }

    #[test]
    fn values_round_up_like_go() {
        assert_eq!(ceil(&Quantity("500m".into())), Some(1));
        assert_eq!(ceil(&Quantity("1500m".into())), Some(2));
        assert_eq!(ceil(&Quantity("2".into())), Some(2));
        assert_eq!(ceil(&Quantity("2.2".into())), Some(3));
        assert_eq!(ceil(&Quantity("1Gi".into())), Some(1 << 30));
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format(1.5, false), "1500m");
        assert_eq!(format(3.0, false), "3");
        assert_eq!(format(5.0 * 1024f64.powi(3), true), "5Gi");
        assert_eq!(format(6e9, false), "6G");
        assert_eq!(format(0.0, true), "0");
    }

    #[test]
    fn a_pod_counts_requests_then_limits() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m"}}}
        ]}))
        .unwrap();
        let t = Totals::of_pod(&spec);
        assert_eq!(t.quantity("cpu").0, "1500m");
        assert_eq!(t.quantity("memory").0, "1Gi");
        assert_eq!(t.gpus().0, "1");
    }
}
