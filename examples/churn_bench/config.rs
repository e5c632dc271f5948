//! Each mode's config file (`bench_common::binary::check_config` asks the
//! binary whether it accepts it).

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::DRAIN;
use crate::args::Mode;

pub fn config_yaml(mode: Mode, origin: SocketAddr, no_churn_section: bool) -> String {
    let mut yaml = format!(
        "node: {{ drain: {DRAIN} }}\ndiscovery: {{ resolve_interval: 2s }}\ndefault_group: bench\n"
    );
    if mode == Mode::Off && !no_churn_section {
        yaml.push_str(
            "churn: { previous_owner_lookup: false, handoff: false, successor_failover: false }\n",
        );
    }
    let _ = write!(
        yaml,
        "groups:\n  \
         bench: {{ capacity: 64MiB, loader: {{ http: {{ url: \"http://{origin}/bench/{{key}}\", timeout: 2s }} }} }}\n  \
         cold: {{ capacity: 16MiB, loader: {{ http: {{ url: \"http://{origin}/cold/{{key}}\", timeout: 2s }} }} }}\n"
    );
    yaml
}
