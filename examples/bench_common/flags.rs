//! The command line as the benches take it: `--flag value` pairs, a bench's
//! own switches, and `-h`/`--help` printing the usage.

use anyhow::{Context, Result, anyhow};

pub struct Flags {
    args: std::iter::Skip<std::env::Args>,
    usage: &'static str,
}

impl Flags {
    /// This process's arguments, `usage` printed for `--help` and with a
    /// missing value.
    pub fn from_env(usage: &'static str) -> Self {
        Self {
            args: std::env::args().skip(1),
            usage,
        }
    }

    /// The next flag; `-h` or `--help` prints the usage and exits 0.
    pub fn next_flag(&mut self) -> Option<String> {
        let flag = self.args.next()?;
        if flag == "-h" || flag == "--help" {
            println!("{}", self.usage);
            std::process::exit(0);
        }
        Some(flag)
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String> {
        self.args
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{}", self.usage))
    }
}

/// `value` as the whole number `flag` takes.
pub fn whole_number(flag: &str, value: &str) -> Result<u64> {
    value
        .parse::<u64>()
        .with_context(|| format!("{flag} takes a whole number, not {value:?}"))
}
