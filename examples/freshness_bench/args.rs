//! The flags: the run's length and outage, the load, the modes, where the
//! binary is and where the results go.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::WARM_UP;
use crate::bench_common::flags::{Flags, whole_number};
use crate::bench_common::format::utc_stamp;

/// A cluster's freshness settings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// `ttl: 2s` and nothing else: the behaviour before issue 10.
    Baseline,
    /// Plus `refresh_ahead: 0.8`.
    RefreshAhead,
    /// Plus stale-while-revalidate, stale-if-error, TTL jitter and a bound
    /// on concurrent loads.
    Full,
    /// Full, plus a circuit breaker in front of the origin.
    Guarded,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::RefreshAhead => "refresh-ahead",
            Mode::Full => "full",
            Mode::Guarded => "guarded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Mode::Baseline,
            Mode::RefreshAhead,
            Mode::Full,
            Mode::Guarded,
        ]
        .into_iter()
        .find(|m| m.name() == text)
    }
}

pub struct Args {
    pub duration: Duration,
    pub outage_start: Duration,
    pub outage_length: Duration,
    /// Reads a second, per mode.
    pub rate: u32,
    pub keys: usize,
    pub origin_delay: Duration,
    pub modes: Vec<Mode>,
    pub binary: PathBuf,
    pub out: PathBuf,
}

impl Args {
    /// A read this slow waited for the origin: half the origin's delay.
    pub fn waited_threshold(&self) -> Duration {
        self.origin_delay / 2
    }

    pub fn outage_end(&self) -> Duration {
        self.outage_start + self.outage_length
    }
}

const USAGE: &str = "usage: freshness_bench [--duration 60] [--outage-start 20] \
[--outage-length 20] [--rate 600] [--keys 60] [--origin-delay-ms 100] \
[--modes baseline,refresh-ahead,full,guarded] [--binary target/release/shoal] [--out DIR]";

pub fn parse_args() -> Result<Args> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        outage_start: Duration::from_secs(20),
        outage_length: Duration::from_secs(20),
        rate: 600,
        keys: 60,
        origin_delay: Duration::from_millis(100),
        modes: vec![
            Mode::Baseline,
            Mode::RefreshAhead,
            Mode::Full,
            Mode::Guarded,
        ],
        binary: PathBuf::from("target/release/shoal"),
        out: PathBuf::from(format!("bench/results/freshness-{}", utc_stamp(true))),
    };
    let mut flags = Flags::from_env(USAGE);
    while let Some(flag) = flags.next_flag() {
        let value = flags.value(&flag)?;
        let number = || whole_number(&flag, &value);
        match flag.as_str() {
            "--duration" => args.duration = Duration::from_secs(number()?),
            "--outage-start" => args.outage_start = Duration::from_secs(number()?),
            "--outage-length" => args.outage_length = Duration::from_secs(number()?),
            "--rate" => {
                args.rate = u32::try_from(number()?).context("--rate is too large")?;
            }
            "--keys" => args.keys = number()? as usize,
            "--origin-delay-ms" => args.origin_delay = Duration::from_millis(number()?),
            "--modes" => {
                let mut modes = Vec::new();
                for name in value.split(',') {
                    let mode = Mode::parse(name).ok_or_else(|| {
                        anyhow!("unknown mode {name:?}: baseline, refresh-ahead, full, guarded")
                    })?;
                    if modes.contains(&mode) {
                        bail!("--modes names {name} twice");
                    }
                    modes.push(mode);
                }
                args.modes = modes;
            }
            "--binary" => args.binary = value.into(),
            "--out" => args.out = value.into(),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if args.rate == 0 || args.keys == 0 {
        bail!("--rate and --keys must be above 0");
    }
    if args.duration <= WARM_UP {
        bail!(
            "--duration must be longer than the {} s warm-up",
            WARM_UP.as_secs()
        );
    }
    if args.outage_length > Duration::ZERO
        && (args.outage_start < WARM_UP || args.outage_end() > args.duration)
    {
        bail!(
            "the outage (--outage-start {} --outage-length {}) must lie after the {} s warm-up \
             and within --duration {}",
            args.outage_start.as_secs(),
            args.outage_length.as_secs(),
            WARM_UP.as_secs(),
            args.duration.as_secs()
        );
    }
    if args.modes.is_empty() {
        bail!("nothing to run: give at least one mode");
    }
    Ok(args)
}
