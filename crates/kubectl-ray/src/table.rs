//! Tables printed the way kubectl's (and so KubeRay's plugin's) table
//! printer prints them: upper-cased headers, columns padded by Go's
//! tabwriter (minimum width 6, padding 3, the last column unpadded), nothing
//! at all when there are no rows. Ages as kubectl shows them.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kuberay_operator::ray::quantity;

const MIN_WIDTH: usize = 6;
const PADDING: usize = 3;

/// Renders `rows` under `headers`; empty when there are no rows, as
/// kubectl's printer prints nothing (not even headers) for an empty table.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let lines: Vec<Vec<String>> = std::iter::once(header)
        .chain(rows.iter().map(|r| r.iter().map(|c| one_line(c)).collect()))
        .collect();
    let columns = headers.len();
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|i| {
            lines
                .iter()
                .map(|l| l.get(i).map_or(0, |c| c.chars().count()) + PADDING)
                .max()
                .unwrap_or(0)
                .max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate().take(columns) {
            text.push_str(cell);
            if let Some(w) = widths.get(i) {
                let pad = w - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// A cell shows its first line only, then `...`, as kubectl's printer does.
fn one_line(cell: &str) -> String {
    match cell.find(['\n', '\r', '\u{c}']) {
        Some(i) => format!("{}...", &cell[..i]),
        None => cell.to_string(),
    }
}

/// A quantity in Kubernetes' canonical form (`0` when absent): `1000m`
/// shows as `1`, `0.5` as `500m`, as Go's `Quantity.String()` does.
pub fn quantity(q: Option<&Quantity>) -> String {
    let Some(q) = q else { return "0".into() };
    match quantity::parse(&q.0) {
        Some(v) => quantity::format(v, q.0.trim_end().ends_with('i')),
        None => q.0.clone(),
    }
}

/// The age of an object as kubectl shows it (`<unknown>` without a
/// creation time).
pub fn age(created: Option<&Time>) -> String {
    match created {
        Some(t) => {
            let secs = jiff::Timestamp::now().as_second() - t.0.as_second();
            human_duration(secs)
        }
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration`: two significant units at most,
/// coarser as the duration grows.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_like_gos_tabwriter() {
        let t = render(
            &["Name", "CPUs", "Cluster"],
            &[vec!["a".into(), "2".into(), "rc".into()]],
        );
        // "NAME" is 4 wide: its column is max(6, 4 + 3) = 7; "CPUS" likewise.
        assert_eq!(t, "NAME   CPUS   CLUSTER\na      2      rc\n");
    }

    #[test]
    fn an_empty_table_prints_nothing() {
        assert_eq!(render(&["Name"], &[]), "");
    }

    #[test]
    fn a_short_header_gets_the_minimum_width() {
        let t = render(&["Min", "X"], &[vec!["1".into(), "y".into()]]);
        assert_eq!(t, "MIN   X\n1     y\n");
    }

    #[test]
    fn multi_line_cells_are_cut() {
        let t = render(&["A", "B"], &[vec!["x\ny".into(), "z".into()]]);
        assert_eq!(t, "A      B\nx...   z\n");
    }

    #[test]
    fn quantities_are_canonical() {
        assert_eq!(quantity(None), "0");
        assert_eq!(quantity(Some(&Quantity("1000m".into()))), "1");
        assert_eq!(quantity(Some(&Quantity("0.5".into()))), "500m");
        assert_eq!(quantity(Some(&Quantity("24Gi".into()))), "24Gi");
        assert_eq!(quantity(Some(&Quantity("6".into()))), "6");
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
        assert_eq!(human_duration(-5), "<invalid>");
    }
}
