//! The flags: which scenarios and modes to run, the load, where the binary
//! is and where the results go.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::bench_common::flags::{Flags, whole_number};
use crate::bench_common::format::utc_stamp;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scenario {
    Rolling,
    Replace,
    ScaleOut,
    ScaleIn,
    Sigkill,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Rolling,
        Scenario::Replace,
        Scenario::ScaleOut,
        Scenario::ScaleIn,
        Scenario::Sigkill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Rolling => "rolling",
            Scenario::Replace => "replace",
            Scenario::ScaleOut => "scale-out",
            Scenario::ScaleIn => "scale-in",
            Scenario::Sigkill => "sigkill",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Scenario::Rolling => "rolling restart in place",
            Scenario::Replace => "replace roll (maxSurge 1)",
            Scenario::ScaleOut => "scale-out 5 → 6",
            Scenario::ScaleIn => "scale-in 6 → 5",
            Scenario::Sigkill => "owner SIGKILLed before detection",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "rolling" | "1" => Scenario::Rolling,
            "replace" | "2" => Scenario::Replace,
            "scale-out" | "3" => Scenario::ScaleOut,
            "scale-in" | "4" => Scenario::ScaleIn,
            "sigkill" | "5" => Scenario::Sigkill,
            other => bail!(
                "unknown scenario {other:?}: rolling, replace, scale-out, scale-in, sigkill (or 1-5)"
            ),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    On,
    Off,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
        }
    }
}

pub struct Args {
    pub scenarios: Vec<Scenario>,
    pub modes: Vec<Mode>,
    pub keys: usize,
    pub rate: u32,
    pub workers: usize,
    pub tail: Duration,
    pub cold_keys: usize,
    pub binary: PathBuf,
    pub out: PathBuf,
    pub no_churn_section: bool,
}

const USAGE: &str = "usage: churn_bench [--scenarios rolling,replace,scale-out,scale-in,sigkill] \
[--modes on,off] [--keys 2000] [--rate 400] [--workers 16] [--tail 5] [--cold-keys 200] \
[--binary target/release/shoal] [--out DIR] [--no-churn-section]";

pub fn parse_args() -> Result<Args> {
    let mut args = Args {
        scenarios: Scenario::ALL.to_vec(),
        modes: vec![Mode::On, Mode::Off],
        keys: 2000,
        rate: 400,
        workers: 16,
        tail: Duration::from_secs(5),
        cold_keys: 200,
        binary: PathBuf::from("target/release/shoal"),
        out: PathBuf::from(format!("bench/results/churn-{}", utc_stamp(true))),
        no_churn_section: false,
    };
    let mut flags = Flags::from_env(USAGE);
    while let Some(flag) = flags.next_flag() {
        if flag == "--no-churn-section" {
            args.no_churn_section = true;
            continue;
        }
        let value = flags.value(&flag)?;
        let number = || whole_number(&flag, &value);
        match flag.as_str() {
            "--scenarios" => {
                args.scenarios = value
                    .split(',')
                    .map(Scenario::parse)
                    .collect::<Result<_>>()?;
            }
            "--modes" => {
                args.modes = value
                    .split(',')
                    .map(|m| match m {
                        "on" => Ok(Mode::On),
                        "off" => Ok(Mode::Off),
                        other => Err(anyhow!("unknown mode {other:?}: on, off")),
                    })
                    .collect::<Result<_>>()?;
            }
            "--keys" => args.keys = number()? as usize,
            "--rate" => args.rate = number()? as u32,
            "--workers" => args.workers = number()? as usize,
            "--tail" => args.tail = Duration::from_secs(number()?),
            "--cold-keys" => args.cold_keys = number()? as usize,
            "--binary" => args.binary = value.into(),
            "--out" => args.out = value.into(),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    if args.keys == 0 || args.rate == 0 || args.workers == 0 {
        bail!("--keys, --rate and --workers must be above 0");
    }
    if args.scenarios.is_empty() || args.modes.is_empty() {
        bail!("nothing to run: give at least one scenario and one mode");
    }
    Ok(args)
}
