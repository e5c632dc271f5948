//! The node counters this bench reads from `/metrics`: issue 10's and the
//! origin-load counters, for the bench's group only.

use std::collections::BTreeMap;

use crate::GROUP;

/// The counter families read.
pub const FAMILIES: [&str; 6] = [
    "shoal_local_loads_total",
    "shoal_local_load_errors_total",
    "shoal_refreshes_total",
    "shoal_stale_served_total",
    "shoal_origin_revalidations_total",
    "shoal_origin_rejected_total",
];

/// Series → value, a series written `family` or `family{label=value,…}`
/// with the `group` label left out. A series the node has not rendered
/// (the Prometheus client leaves out a family none of whose series was
/// ever touched) reads as 0.
pub type Counters = BTreeMap<String, f64>;

/// One node's counters at one moment; `None` when `/metrics` did not
/// answer.
pub struct NodeSnapshot {
    pub node: String,
    pub counters: Option<Counters>,
}

/// A mode's nodes at the end of the warm-up and at the end of the run.
pub struct ModeSnapshots {
    pub warm: Vec<NodeSnapshot>,
    pub end: Vec<NodeSnapshot>,
}

/// One line of the text format: name, labels, value.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

/// `name{a="x",b="y"} 12`. Label values here are plain words, so no
/// escapes are handled.
fn parse_line(line: &str) -> Option<Sample<'_>> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let labels = body
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key, value.trim_matches('"')))
                })
                .collect::<Option<Vec<_>>>()?;
            (name, labels)
        }
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The [`FAMILIES`] series of [`GROUP`] in a `/metrics` text.
pub fn parse_counters(text: &str) -> Counters {
    let mut counters = Counters::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(Sample {
            name,
            labels,
            value,
        }) = parse_line(line)
        else {
            continue;
        };
        if !FAMILIES.contains(&name) || !labels.contains(&("group", GROUP)) {
            continue;
        }
        let rest: Vec<String> = labels
            .iter()
            .filter(|(key, _)| *key != "group")
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let series = if rest.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", rest.join(","))
        };
        *counters.entry(series).or_default() += value;
    }
    counters
}

/// `end − start` per series (a series missing at the start counted from 0).
pub fn delta(start: Option<&Counters>, end: &Counters) -> Counters {
    end.iter()
        .map(|(series, value)| {
            let before = start.and_then(|s| s.get(series)).copied().unwrap_or(0.0);
            (series.clone(), value - before)
        })
        .collect()
}

/// The sum of a family's series, or of those with `label` = `value`.
pub fn sum(counters: &Counters, family: &str, label: Option<(&str, &str)>) -> f64 {
    let wanted = label.map(|(key, value)| format!("{key}={value}"));
    counters
        .iter()
        .filter(|(series, _)| {
            let (name, labels) = series.split_once('{').unwrap_or((series.as_str(), ""));
            name == family
                && wanted.as_ref().is_none_or(|w| {
                    labels
                        .trim_end_matches('}')
                        .split(',')
                        .any(|pair| pair == w)
                })
        })
        .fold(0.0, |total, (_, value)| total + value)
}
