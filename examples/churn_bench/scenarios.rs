//! One scenario in one mode: a fresh cluster and origin, warmed, then the
//! scenario's actions under the steady load (or, for `sigkill`, the probe),
//! then teardown; its files go to `<out>/<scenario>-<mode>/`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use futures::future::join_all;

use crate::args::{Args, Mode, Scenario};
use crate::bench_common::format::{key_name, quantile_ms, secs};
use crate::client::{GetResult, Tally, get_with_retry, load_client};
use crate::cluster::Cluster;
use crate::config::config_yaml;
use crate::load::Load;
use crate::origin::Origin;
use crate::outcome::{ColdFigures, Outcome, SigkillFigures};
use crate::{ADMIN_PORT, PRE_ROLL, PROBE_KEYS_AT_ONCE, ROLL_TAIL, WARM_CONCURRENCY, addr};

pub async fn run_scenario(args: &Args, scenario: Scenario, mode: Mode) -> Result<Outcome> {
    // A scenario named twice in --scenarios runs twice: -2, -3, … keep
    // the later runs' files apart.
    let base = format!("{}-{}", scenario.name(), mode.name());
    let mut label = base.clone();
    let mut round = 1;
    while args.out.join(&label).exists() {
        round += 1;
        label = format!("{base}-{round}");
    }
    let dir = args.out.join(&label);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let origin = Origin::start().await?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        config_yaml(mode, origin.addr, args.no_churn_section),
    )?;
    let mut cluster =
        Cluster::new(&args.binary, &dir, &config, &label, origin.counts.clone()).await;
    let mut outcome = Outcome::new(scenario, mode);
    let result = drive(args, &origin, &mut cluster, &mut outcome).await;
    cluster.mark("stopping every node".into());
    cluster.teardown().await;
    if let Err(error) = cluster.write_timeline() {
        cluster.note(format!("could not write the timeline: {error:#}"));
    }
    outcome.notes.append(&mut cluster.notes);
    if let Err(error) = result {
        outcome.error = Some(format!("{error:#}"));
    }
    let json = outcome.json(args.keys);
    std::fs::write(
        dir.join("result.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(outcome)
}

async fn drive(
    args: &Args,
    origin: &Origin,
    cluster: &mut Cluster,
    outcome: &mut Outcome,
) -> Result<()> {
    let scenario = outcome.scenario;
    let size = if scenario == Scenario::ScaleIn { 6 } else { 5 };
    let initial: Vec<IpAddr> = (0..size).map(|i| addr(2 + i)).collect();
    cluster.mark(format!("starting {size} nodes"));
    let started = Instant::now();
    cluster.start(&initial).await?;
    cluster.mark(format!(
        "{size} nodes ready and alive everywhere in {}",
        secs(started.elapsed())
    ));

    let client = load_client();
    warm(args, origin, cluster, &client, &initial).await;
    if scenario == Scenario::Sigkill {
        return sigkill(origin, cluster, &client, &initial, args.keys, outcome).await;
    }

    let before = origin.bench_loads();
    let load = Load::start(client.clone(), &initial, args);
    cluster.mark(format!(
        "load running ({} req/s over {} workers)",
        args.rate, args.workers
    ));
    tokio::time::sleep(PRE_ROLL).await;
    let first_action = Instant::now();
    let mut members = initial.clone();
    let result = roll(scenario, cluster, &load, &mut members).await;
    let roll = first_action.elapsed();
    if result.is_ok() {
        cluster.mark(format!(
            "back to {} nodes alive everywhere, {} after the first action",
            members.len(),
            secs(roll)
        ));
        outcome.roll = Some(roll);
        let tail = match scenario {
            Scenario::ScaleOut | Scenario::ScaleIn => args.tail,
            _ => ROLL_TAIL,
        };
        tokio::time::sleep(tail).await;
    }
    outcome.tally = load.stop().await;
    outcome.origin_loads = origin.bench_loads() - before;
    cluster.mark(format!(
        "load stopped: {} requests, {} failed, {} retried; {} origin loads",
        outcome.tally.requests, outcome.tally.failed, outcome.tally.retried, outcome.origin_loads
    ));
    result?;
    if scenario == Scenario::Rolling && args.cold_keys > 0 {
        outcome.cold = Some(cold_misses(cluster, &client, &members, args.cold_keys).await);
    }
    Ok(())
}

/// The scenario's actions, from the first to the target shape.
async fn roll(
    scenario: Scenario,
    cluster: &mut Cluster,
    load: &Load,
    members: &mut Vec<IpAddr>,
) -> Result<()> {
    match scenario {
        Scenario::Rolling => {
            for ip in members.clone() {
                load.remove(ip);
                cluster.mark(format!("{ip} out of service, SIGTERM"));
                cluster.terminate(ip).await?;
                cluster.dns_remove(ip);
                cluster.dns_add(ip);
                cluster.spawn(ip)?;
                cluster.wait_ready(ip).await?;
                cluster.mark(format!("{ip} restarted and ready"));
                cluster.wait_shape(members).await?;
                load.add(ip);
                cluster.mark(format!("{ip} alive everywhere, in service"));
            }
        }
        Scenario::Replace => {
            let olds = members.clone();
            for (i, old) in olds.into_iter().enumerate() {
                let new = addr(2 + 5 + i as u8);
                members.push(new);
                cluster.mark(format!("starting {new}"));
                cluster.add_node(new, members).await?;
                load.add(new);
                cluster.mark(format!("{new} ready, alive everywhere, in service"));
                load.remove(old);
                cluster.mark(format!("{old} out of service, SIGTERM"));
                cluster.terminate(old).await?;
                cluster.dns_remove(old);
                members.retain(|&m| m != old);
            }
            cluster.wait_shape(members).await?;
        }
        Scenario::ScaleOut => {
            let new = addr(2 + members.len() as u8);
            members.push(new);
            cluster.mark(format!("starting {new}"));
            cluster.add_node(new, members).await?;
            load.add(new);
            cluster.mark(format!("{new} ready, alive everywhere, in service"));
        }
        Scenario::ScaleIn => {
            let gone = *members.last().expect("six nodes");
            load.remove(gone);
            cluster.mark(format!("{gone} out of service, SIGTERM"));
            cluster.terminate(gone).await?;
            cluster.dns_remove(gone);
            members.retain(|&m| m != gone);
            cluster.wait_shape(members).await?;
        }
        Scenario::Sigkill => unreachable!("sigkill has no load"),
    }
    Ok(())
}

/// Every key once, spread over the nodes; the origin must see each once.
async fn warm(
    args: &Args,
    origin: &Origin,
    cluster: &mut Cluster,
    client: &reqwest::Client,
    nodes: &[IpAddr],
) {
    let before = origin.bench_loads();
    let started = Instant::now();
    let results: Vec<GetResult> = futures::stream::iter(0..args.keys)
        .map(|i| {
            let ip = nodes[i % nodes.len()];
            let path = format!("/bench/{}", key_name(i));
            async move { get_with_retry(client, || Some(ip), &path).await }
        })
        .buffer_unordered(WARM_CONCURRENCY)
        .collect()
        .await;
    let loads = origin.bench_loads() - before;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.error.as_ref()).collect();
    cluster.mark(format!(
        "warmed {} keys in {} ({loads} origin loads, {} failed)",
        args.keys,
        secs(started.elapsed()),
        failed.len()
    ));
    if !failed.is_empty() {
        cluster.note(format!(
            "warm-up: {} of {} GETs failed, e.g. {}",
            failed.len(),
            args.keys,
            failed[0]
        ));
    }
    if loads != args.keys as u64 {
        cluster.note(format!(
            "warm-up: the origin saw {loads} loads for {} distinct keys",
            args.keys
        ));
    }
}

async fn sigkill(
    origin: &Origin,
    cluster: &mut Cluster,
    client: &reqwest::Client,
    nodes: &[IpAddr],
    keys: usize,
    outcome: &mut Outcome,
) -> Result<()> {
    let owner = nodes[nodes.len() / 2];
    let survivors: Vec<IpAddr> = nodes.iter().copied().filter(|&n| n != owner).collect();
    let asked = survivors[0];
    let admin = cluster.admin.clone();
    let owners: Vec<Result<(String, IpAddr)>> = futures::stream::iter(0..keys)
        .map(|i| {
            let admin = admin.clone();
            async move {
                let key = key_name(i);
                let url = format!("http://{asked}:{ADMIN_PORT}/_ring/bench/{key}");
                let body = admin.get(&url).send().await?.bytes().await?;
                let json: serde_json::Value = serde_json::from_slice(&body)?;
                let ip = json["owner"]["addr"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| anyhow!("{url}: no owner.addr in {json}"))?;
                Ok((key, ip))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut owned = Vec::new();
    for result in owners {
        let (key, ip) = result?;
        if ip == owner {
            owned.push(key);
        }
    }
    cluster.mark(format!(
        "{owner} owns {} of {keys} keys; SIGKILL, then each asked of the {} survivors at once",
        owned.len(),
        survivors.len()
    ));
    let before = origin.per_key();
    let killed = Instant::now();
    cluster.kill(owner)?;
    let results: Vec<Vec<(GetResult, Duration)>> = futures::stream::iter(owned.iter())
        .map(|key| {
            let survivors = &survivors;
            async move {
                let path = format!("/bench/{key}");
                join_all(survivors.iter().map(|&ip| {
                    let path = &path;
                    async move {
                        let sent = Instant::now();
                        let result = get_with_retry(client, || Some(ip), path).await;
                        (result, sent.elapsed())
                    }
                }))
                .await
            }
        })
        .buffer_unordered(PROBE_KEYS_AT_ONCE)
        .collect()
        .await;
    let probe = killed.elapsed();
    let views = join_all(survivors.iter().map(|&ip| cluster.view(ip))).await;
    let still_listed = views
        .iter()
        .filter(|v| {
            v.as_ref()
                .is_ok_and(|v| v.lists(owner, &["alive", "suspect"]))
        })
        .count();
    let after = origin.per_key();
    for (result, latency) in results.iter().flatten() {
        outcome.tally.record(result, *latency);
    }
    let mut loads_per_key = BTreeMap::new();
    for key in &owned {
        let loads = after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0);
        *loads_per_key.entry(loads).or_insert(0) += 1;
    }
    let before_total: u64 = before.values().map(|&v| u64::from(v)).sum();
    let after_total: u64 = after.values().map(|&v| u64::from(v)).sum();
    outcome.origin_loads = after_total - before_total;
    let figures = SigkillFigures {
        owner,
        owned_keys: owned.len(),
        loads_per_key,
        probe,
        survivors: survivors.len(),
        still_listed,
    };
    cluster.mark(format!(
        "probe done {} after SIGKILL: {:.2} origin loads per key ({}), {} of {} requests failed; {still_listed} of {} survivors still list {owner}",
        secs(probe),
        figures.mean(),
        figures.distribution(),
        outcome.tally.failed,
        outcome.tally.requests,
        survivors.len()
    ));
    if still_listed < survivors.len() {
        cluster.note(format!(
            "sigkill: only {still_listed} of {} survivors still listed {owner} alive or suspect when the probe finished ({}): failure detection was quicker than the probe",
            survivors.len(),
            secs(probe)
        ));
    }
    outcome.sigkill = Some(figures);
    Ok(())
}

/// Never-seen keys of group `cold`, one at a time, round the nodes.
async fn cold_misses(
    cluster: &mut Cluster,
    client: &reqwest::Client,
    nodes: &[IpAddr],
    count: usize,
) -> ColdFigures {
    let mut tally = Tally::default();
    for i in 0..count {
        let ip = nodes[i % nodes.len()];
        let path = format!("/cold/c{i:04}");
        let sent = Instant::now();
        let result = get_with_retry(client, || Some(ip), &path).await;
        tally.record(&result, sent.elapsed());
    }
    let (requests, failed) = (tally.requests, tally.failed);
    let sorted = tally.sorted();
    let figures = ColdFigures {
        requests,
        failed,
        p50_ms: quantile_ms(sorted, 0.5),
        p99_ms: quantile_ms(sorted, 0.99),
    };
    cluster.mark(format!(
        "{count} cold misses: p50 {:.2} ms, p99 {:.2} ms, {} failed",
        figures.p50_ms, figures.p99_ms, figures.failed
    ));
    figures
}
