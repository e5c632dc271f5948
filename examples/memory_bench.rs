//! What a node costs in memory (issue 11, item 5), for one or more `shoal`
//! binaries run one after another in the same run (the first is the
//! baseline the others are compared with):
//!
//! - **idle**: the binary with no config (the demo group) on a loopback
//!   address, its `VmRSS`, `RssAnon` and `RssFile` after `--idle-secs`;
//! - **entries**: the binary with one group big enough for every entry
//!   (`capacity: 4GiB`, `ttl: 0s`), `--entries` distinct small keys
//!   (`key-00000000`, 12 bytes) PUT through the service port with values of
//!   `--value-bytes`, then the growth of `VmRSS` over the idle node against
//!   the key and value bytes stored and the main cache's `/_stats` bytes.
//!
//! ```text
//! bench/memory.sh [--entries 1000000] [--value-bytes 32] [--idle-secs 5]
//!     [--concurrency 32] --binary BASELINE --binary CANDIDATE
//! ```
//!
//! Each node runs on an address of its own (127.0.61.x, clear of the test
//! suites' blocks and the other benches'), with the standard ports. The
//! figures per entry are the RSS growth over the idle node divided by the
//! entries, less the key and value bytes: everything the node holds for an
//! entry beyond its payload (cache structures, allocator rounding, the
//! bounded record of superseded writes, glibc's arenas).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;

#[path = "bench_common/flags.rs"]
mod flags;
#[path = "bench_common/node_process.rs"]
mod node_process;
#[path = "bench_common/run_info.rs"]
mod run_info;

use flags::{Flags, whole_number};
use node_process::{NodeProcess, shoal_command};

const USAGE: &str = "memory_bench [--entries 1000000] [--value-bytes 32] [--idle-secs 5] \
[--concurrency 32] [--out DIR] --binary BASELINE [--binary CANDIDATE ...]";

/// The key of entry `i`: 12 bytes.
fn key(i: u64) -> String {
    format!("key-{i:08}")
}

struct Args {
    binaries: Vec<PathBuf>,
    entries: u64,
    value_bytes: usize,
    idle: Duration,
    concurrency: usize,
    out: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut flags = Flags::from_env(USAGE);
    let mut args = Args {
        binaries: Vec::new(),
        entries: 1_000_000,
        value_bytes: 32,
        idle: Duration::from_secs(5),
        concurrency: 32,
        out: PathBuf::from("bench/results/memory"),
    };
    while let Some(flag) = flags.next_flag() {
        let value = flags.value(&flag)?;
        match flag.as_str() {
            "--binary" => args.binaries.push(PathBuf::from(value)),
            "--entries" => args.entries = whole_number(&flag, &value)?,
            "--value-bytes" => args.value_bytes = whole_number(&flag, &value)? as usize,
            "--idle-secs" => args.idle = Duration::from_secs(whole_number(&flag, &value)?),
            "--concurrency" => args.concurrency = whole_number(&flag, &value)?.max(1) as usize,
            "--out" => args.out = PathBuf::from(value),
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    if args.binaries.is_empty() {
        bail!("give at least one --binary\n{USAGE}");
    }
    Ok(args)
}

/// A process's memory, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

fn rss(pid: u32) -> Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        threads: field("Threads:"),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One node of the bench: its process and where it answers.
struct Running {
    process: NodeProcess,
    pid: u32,
    ip: IpAddr,
}

/// Starts `binary` on `ip` with `extra` arguments and waits until its
/// `/readyz` answers 200.
async fn start(
    client: &reqwest::Client,
    binary: &Path,
    ip: IpAddr,
    log: &Path,
    extra: &[String],
) -> Result<Running> {
    let mut command = shoal_command(binary, log)?;
    command
        .arg("--bind")
        .arg(ip.to_string())
        .arg("--node-name")
        .arg(node_process::node_name(ip))
        .args(extra);
    let process = NodeProcess::spawn(command)?;
    let pid = process.id();
    let mut running = Running { process, pid, ip };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = running.process.try_exit() {
            bail!(
                "{} exited at start ({status}): see {}",
                binary.display(),
                log.display()
            );
        }
        let ready = client
            .get(format!("http://{ip}:9090/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(running);
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready within 20 s: see {}",
                binary.display(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The main cache's `(bytes, items)` of group `mem` from `/_stats`.
async fn main_stats(client: &reqwest::Client, ip: IpAddr) -> Result<(u64, u64)> {
    let body = client
        .get(format!("http://{ip}:9090/_stats"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let stats: serde_json::Value = serde_json::from_slice(&body).context("/_stats is JSON")?;
    let main = &stats["groups"]["mem"]["main"];
    let number = |field: &str| {
        main[field]
            .as_u64()
            .with_context(|| format!("/_stats has no groups.mem.main.{field}: {stats}"))
    };
    Ok((number("bytes")?, number("items")?))
}

struct Figures {
    binary: String,
    idle: Rss,
    before: Rss,
    after: Rss,
    stats_bytes: u64,
    stats_items: u64,
    payload: u64,
    puts_per_sec: f64,
}

impl Figures {
    fn growth_bytes(&self) -> f64 {
        (self.after.total as f64 - self.before.total as f64) * 1024.0
    }

    /// RSS growth per entry beyond its key and value bytes.
    fn overhead_per_entry(&self) -> f64 {
        (self.growth_bytes() - self.payload as f64) / self.stats_items.max(1) as f64
    }

    /// RSS growth over what `/_stats` accounts.
    fn growth_over_stats(&self) -> f64 {
        self.growth_bytes() / self.stats_bytes.max(1) as f64
    }
}

async fn measure(args: &Args, binary: &Path, index: u8) -> Result<Figures> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let name = binary.display().to_string();

    // Idle: the demo config, nothing asked.
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 61, 2 + 2 * index));
    let mut idle_node = start(
        &client,
        binary,
        ip,
        &args.out.join(format!("idle-{index}.log")),
        &[],
    )
    .await?;
    tokio::time::sleep(args.idle).await;
    let idle = rss(idle_node.pid)?;
    println!(
        "{name}: idle VmRSS {:.1} MiB (anon {:.1}, file {:.1}), {} threads",
        mib(idle.total),
        mib(idle.anon),
        mib(idle.file),
        idle.threads
    );
    idle_node.process.signal(libc::SIGTERM);

    // Entries: one big group, PUTs through the service port.
    let config = args.out.join(format!("entries-{index}.yaml"));
    std::fs::write(
        &config,
        "node: { drain: 0s }\ndefault_group: mem\ngroups:\n  mem: { capacity: 4GiB, hot_fraction: 0.01, ttl: 0s, loader: { demo: { delay: 0ms } } }\n",
    )?;
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 61, 3 + 2 * index));
    let node = start(
        &client,
        binary,
        ip,
        &args.out.join(format!("entries-{index}.log")),
        &["--config".into(), config.display().to_string()],
    )
    .await?;
    tokio::time::sleep(args.idle).await;
    let before = rss(node.pid)?;
    let value = bytes::Bytes::from(vec![b'v'; args.value_bytes]);
    let started = Instant::now();
    let mut failures = 0u64;
    let mut puts = futures::stream::iter(0..args.entries)
        .map(|i| {
            let request = client
                .put(format!("http://{}:3000/mem/{}", node.ip, key(i)))
                .body(value.clone());
            async move { request.send().await.map(|r| r.status()) }
        })
        .buffer_unordered(args.concurrency);
    let mut done = 0u64;
    while let Some(answer) = puts.next().await {
        match answer {
            Ok(status) if status.as_u16() == 204 => {}
            _ => failures += 1,
        }
        done += 1;
        if done.is_multiple_of(200_000) {
            println!("{name}: {done} PUTs");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if failures > 0 {
        bail!("{failures} of {} PUTs failed", args.entries);
    }
    let (stats_bytes, stats_items) = main_stats(&client, node.ip).await?;
    // Let the allocator and moka settle before reading the RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss(node.pid)?;
    let payload = (0..args.entries)
        .map(|i| (key(i).len() + args.value_bytes) as u64)
        .sum();
    Ok(Figures {
        binary: name,
        idle,
        before,
        after,
        stats_bytes,
        stats_items,
        payload,
        puts_per_sec: args.entries as f64 / seconds,
    })
}

fn report(args: &Args, figures: &[Figures]) -> String {
    let mut text = String::new();
    text.push_str(&format!(
        "memory_bench: {} entries of a 12-byte key and a {}-byte value, PUT through the service port; tree {}; {}\n\n",
        args.entries,
        args.value_bytes,
        run_info::git_commit(),
        run_info::machine("-")
    ));
    text.push_str("| binary | idle VmRSS (anon + file) MiB | threads | RSS before → after entries MiB | /_stats bytes (items) | key+value bytes | RSS growth per entry beyond key+value | RSS growth / /_stats bytes | PUT/s |\n|---|---|---|---|---|---|---|---|---|\n");
    for f in figures {
        text.push_str(&format!(
            "| {} | {:.1} ({:.1} + {:.1}) | {} | {:.1} → {:.1} | {} ({}) | {} | {:.0} B | {:.3} | {:.0} |\n",
            f.binary,
            mib(f.idle.total),
            mib(f.idle.anon),
            mib(f.idle.file),
            f.idle.threads,
            mib(f.before.total),
            mib(f.after.total),
            f.stats_bytes,
            f.stats_items,
            f.payload,
            f.overhead_per_entry(),
            f.growth_over_stats(),
            f.puts_per_sec
        ));
    }
    text
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let mut figures = Vec::new();
    for (index, binary) in args.binaries.iter().enumerate() {
        let index = u8::try_from(index).context("at most 100 binaries")?;
        figures.push(measure(&args, binary, index).await?);
    }
    let text = report(&args, &figures);
    print!("{text}");
    std::fs::write(args.out.join("summary.md"), &text)?;
    Ok(())
}

#[tokio::main]
async fn main() {
    shoal::install_crypto_provider();
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        eprintln!("memory_bench: {error:#}");
        std::process::exit(1);
    }
}
