//! The YAML config file the nodes of a test get.

use super::Origin;

/// The YAML config file given to every node of a test.
#[derive(Debug, Clone)]
pub struct Config {
    pub drain: String,
    pub peer_timeout: String,
    pub connect_timeout: String,
    pub default_group: Option<String>,
    /// (name, YAML flow mapping of the group).
    pub groups: Vec<(String, String)>,
    /// Whole top-level YAML lines, e.g. `discovery: { resolve_interval: 2s }`.
    pub extra: Vec<String>,
}

impl Config {
    /// Group `data` (default group; origin `/data/{key}`, loader timeout 5 s)
    /// and group `short` (origin `/short/{key}`, loader timeout 1 s, for
    /// timeouts); drain 1 s; peer timeout 10 s (above every loader timeout).
    pub fn standard(origin: &Origin) -> Self {
        Self {
            drain: "1s".into(),
            peer_timeout: "10s".into(),
            connect_timeout: "250ms".into(),
            default_group: Some("data".into()),
            groups: vec![
                (
                    "data".into(),
                    format!(
                        "{{ capacity: 16MiB, loader: {{ http: {{ url: \"{}\", timeout: 5s }} }} }}",
                        origin.url_template("data")
                    ),
                ),
                (
                    "short".into(),
                    format!(
                        "{{ capacity: 1MiB, loader: {{ http: {{ url: \"{}\", timeout: 1s }} }} }}",
                        origin.url_template("short")
                    ),
                ),
            ],
            extra: Vec::new(),
        }
    }

    /// Adds a top-level YAML line.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    pub fn drain(mut self, drain: &str) -> Self {
        self.drain = drain.into();
        self
    }

    /// Adds a group: `body` is a YAML flow mapping such as
    /// `{ read_only: true, loader: { demo: {} } }`.
    pub fn group(mut self, name: &str, body: &str) -> Self {
        self.groups.push((name.into(), body.into()));
        self
    }

    pub fn yaml(&self) -> String {
        let mut yaml = format!(
            "node: {{ drain: {} }}\npeer: {{ timeout: {}, connect_timeout: {} }}\n",
            self.drain, self.peer_timeout, self.connect_timeout
        );
        if let Some(default) = &self.default_group {
            yaml.push_str(&format!("default_group: {default}\n"));
        }
        for line in &self.extra {
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str("groups:\n");
        for (name, body) in &self.groups {
            yaml.push_str(&format!("  {name}: {body}\n"));
        }
        yaml
    }
}
