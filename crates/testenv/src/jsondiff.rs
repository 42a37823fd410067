//! Comparing JSON the way Kubernetes means it, for tests: the first path at
//! which two values differ, ignoring what does not change meaning (absent
//! versus null, `1` versus `1.0`, and a number versus the same number as a
//! string, since quantities accept both).

use serde_json::Value;

/// `None` when `a` and `b` mean the same, else the first differing path with
/// both values.
pub fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(&format!("{path}.{k}"), va, vb)
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(&format!("{path}[{i}]"), va, vb)),
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if s.parse::<f64>().ok() == n.as_f64() =>
        {
            None
        }
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_a_dropped_field_and_ignores_equivalent_spellings() {
        let input = json!({"spec": {"a": 1, "b": {"c": [1, 2]}, "n": null}});
        let output = json!({"spec": {"a": "1", "b": {"c": [1]}}});
        assert_eq!(
            first_difference("", &input, &output).unwrap(),
            ".spec.b.c: [1,2] != [1]"
        );
        assert_eq!(
            first_difference("", &json!({"x": 1}), &json!({"x": 1.0})),
            None
        );
    }
}
