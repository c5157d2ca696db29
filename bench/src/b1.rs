//! B1: ARM requests per steady-state resync of a converged endpoint, beside a blind-PUT
//! baseline (what Azure Service Operator v2 does on every resync).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fhirlock_arm::{ArmClient, OperationStatus, WriteOutcome};
use fhirlock_core::observed::api_version as av;
use fhirlock_testkit::{Counts, OPERATOR_CLIENT, OPERATOR_SECRET};
use serde_json::Value;

use crate::estate::{NS, endpoint};
use crate::log;
use crate::md::table_header;
use crate::world::World;

const TIME_SCALE: f64 = 0.1;
const RESYNC: u64 = 3;
const WINDOW: Duration = Duration::from_secs(36);
const BLIND_RESYNCS: usize = 2;

pub async fn run() -> anyhow::Result<String> {
    let w = World::new(1, TIME_SCALE, None).await?;
    let steady = steady_state(&w).await?;
    // The baseline, with the operator stopped: the same principal, the same transport
    // (fhirlock-arm), the desired bodies computed once against the converged state.
    log("b1: blind-PUT baseline");
    let blind = blind_puts(&w).await?;
    report(&steady, &blind)
}

/// fhirlock's requests over [`WINDOW`] once converged.
struct Steady {
    window: f64,
    /// Reconciles in the window.
    resyncs: f64,
    counts: Counts,
    /// Reconciles by result since the operator started.
    by_result: BTreeMap<String, u64>,
}

async fn steady_state(w: &World) -> anyhow::Result<Steady> {
    let resync = RESYNC.to_string();
    let op = w.operator(&["--resync-seconds", &resync]).await?;
    w.create_endpoints(1)?;
    w.wait_ready(1, Duration::from_secs(600), &op).await?;
    log("b1: converged; measuring fhirlock's steady state");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r0 = op.reconciles()?;
    w.emu.control.reset_stats().await?;
    let t0 = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let counts = w.operator_counts().await?;
    let r1 = op.reconciles()?;
    let window = t0.elapsed().as_secs_f64();
    let resyncs = (r1.total() - r0.total()) as f64;
    if resyncs < 1.0 {
        bail!("no reconcile in {window:.0} s");
    }
    Ok(Steady {
        window,
        resyncs,
        counts,
        by_result: r1.by_result,
    })
}

/// The blind-PUT baseline: [`BLIND_RESYNCS`] resyncs that each PUT every managed resource.
struct Blind {
    secs: f64,
    counts: Counts,
    /// Long-running operations started.
    lros: usize,
}

async fn blind_puts(w: &World) -> anyhow::Result<Blind> {
    let arm = w
        .emu
        .ready
        .arm_client(OPERATOR_CLIENT, OPERATOR_SECRET, "fhirlock-bench")?;
    let resources = desired_bodies(w, &arm).await?;
    w.emu.control.reset_stats().await?;
    let mut lros = 0;
    let t0 = Instant::now();
    for _ in 0..BLIND_RESYNCS {
        for resource in &resources {
            if put_and_wait(&arm, resource).await? {
                lros += 1;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let counts = w.operator_counts().await?;
    Ok(Blind { secs, counts, lros })
}

/// (what, id, api-version, desired body) of the six resources fhirlock manages: the two
/// subnets, the site, `config/web` and the Cosmos account as read back, the gateway as fhirlock
/// would write it (the listener certificate as PFX).
async fn desired_bodies(
    w: &World,
    arm: &ArmClient,
) -> anyhow::Result<Vec<(&'static str, String, &'static str, Value)>> {
    let spec: fhirlock_api::v1alpha1::SecuredFhirEndpointSpec =
        serde_json::from_value(endpoint(0)["spec"].clone())?;
    let (cert, key) = &w.tls;
    let certificate = fhirlock::tls::pfx_from_pem(cert.as_bytes(), key.as_bytes())?;
    let d = fhirlock_core::Desired::from_spec(NS, "ep-e0", &spec, certificate);
    let observed = fhirlock::reconcile::observe::read_all(arm, &d).await?;
    if !fhirlock_core::plan::plan(&d, &observed).is_empty() {
        bail!("the endpoint is not converged before the baseline");
    }
    let body = |v: &Option<Value>, what: &str| {
        v.clone()
            .with_context(|| format!("{what} missing in the converged state"))
    };
    let subnet = |name: &str, what: &str| observed.subnet_json(name).context(what.to_owned());
    Ok(vec![
        (
            "integration subnet",
            d.integration_subnet.id.clone(),
            av::NETWORK,
            subnet(&d.integration_subnet.name, "integration subnet")?,
        ),
        (
            "gateway subnet",
            d.gateway_subnet.id.clone(),
            av::NETWORK,
            subnet(&d.gateway_subnet.name, "gateway subnet")?,
        ),
        (
            "application gateway",
            d.gateway.id.clone(),
            av::NETWORK,
            fhirlock_core::plan::gateway_body(&d, &observed).context("gateway body")?,
        ),
        (
            "site",
            d.site_id.clone(),
            av::WEB,
            body(&observed.site, "site")?,
        ),
        (
            "site config/web",
            d.site_config_id(),
            av::WEB,
            body(&observed.site_config, "config/web")?,
        ),
        (
            "Cosmos account",
            d.cosmos_id.clone(),
            av::COSMOS,
            body(&observed.cosmos, "Cosmos")?,
        ),
    ])
}

/// One blind PUT, waiting for its long-running operation (if it starts one) by polling its
/// status URL as `Retry-After` says. Whether it started one.
async fn put_and_wait(
    arm: &ArmClient,
    (what, id, api, body): &(&'static str, String, &'static str, Value),
) -> anyhow::Result<bool> {
    let outcome = arm
        .put(id, api, body)
        .await
        .with_context(|| format!("blind PUT of the {what}"))?;
    let WriteOutcome::Accepted(o) = outcome else {
        return Ok(false);
    };
    let mut wait = o.next_poll_in(None);
    loop {
        tokio::time::sleep(wait).await;
        match arm.poll(&o).await? {
            OperationStatus::InProgress { retry_after } => wait = o.next_poll_in(retry_after),
            OperationStatus::Succeeded => return Ok(true),
            OperationStatus::Failed(e) => bail!("blind PUT of the {what}: operation failed: {e}"),
        }
    }
}

fn report(steady: &Steady, blind: &Blind) -> anyhow::Result<String> {
    let (window, resyncs, fl, fl_cpu_ok) = (
        steady.window,
        steady.resyncs,
        &steady.counts,
        &steady.by_result,
    );
    let (blind_secs, bl, lros) = (blind.secs, &blind.counts, blind.lros);
    let n = BLIND_RESYNCS as f64;

    let mut md = String::new();
    writeln!(
        md,
        "## B1: ARM requests per steady-state resync of a converged endpoint\n"
    )?;
    writeln!(
        md,
        "One endpoint, converged (`Ready`) against its own wide-open estate. fhirlock: `fhirlock run --resync-seconds {RESYNC}` \
         observed for {window:.0} s, divided by the reconciles counted in `fhirlock_reconciles_total` over the same window \
         (reconciles by result since the operator started: {fl_cpu_ok:?}). Blind PUT: the operator stopped, then {BLIND_RESYNCS} resyncs by the \
         bench's driver (`bench/src/b1.rs`), which per resync GETs nothing and PUTs each of the six resources fhirlock \
         manages with its desired body, waiting for each long-running operation by polling its status URL as `Retry-After` \
         says (as Azure Service Operator v2 does on every resync). The bodies are computed once against the converged state: the two \
         subnets and the site, `config/web` and Cosmos account as read back; the gateway from `fhirlock_core::plan::gateway_body` \
         (the listener certificate as PFX). Same principal, same ARM client (`fhirlock-arm`), same emulator. Counts are the \
         emulator's `/_emulator/stats` for the operator principal. Emulator time scale {TIME_SCALE} (a 300 s gateway update \
         takes 30 s; `Retry-After` 10 s scales to 1 s, so the number of polls per operation is the one Azure's defaults give).\n"
    )?;
    let periods = window / RESYNC as f64;
    table_header(
        &mut md,
        &[
            "strategy",
            "ARM reads / resync period",
            "of which operation polls",
            "ARM writes / resync period",
            "long-running operations started / resync period",
            "reconciles / resync period",
            "ARM reads / reconcile",
            "429s",
        ],
        true,
    )?;
    writeln!(
        md,
        "| fhirlock (`fhirlock run`) | **{:.2}** | {:.2} | **{:.2}** | 0 | {:.2} | {:.2} | {} |",
        fl.reads as f64 / periods,
        fl.polls as f64 / periods,
        (fl.writes + fl.deletes) as f64 / periods,
        resyncs / periods,
        fl.reads as f64 / resyncs,
        fl.status(429)
    )?;
    writeln!(
        md,
        "| blind PUT of every managed resource (ASO v2 style) | **{:.2}** | {:.2} | **{:.2}** | {:.2} | 1 | {:.2} | {} |",
        bl.reads as f64 / n,
        bl.polls as f64 / n,
        (bl.writes + bl.deletes) as f64 / n,
        lros as f64 / n,
        bl.reads as f64 / n,
        bl.status(429)
    )?;
    let per_period = resyncs / periods;
    let echo = if per_period > 1.05 {
        "A resync period holds more than one reconcile here: the status update at the end of a reconcile (it always carries a \
         new `lastSyncTime`) comes back through the watch and triggers another reconcile, which reads Azure again."
    } else {
        "One reconcile per resync period: the watch event caused by fhirlock's own status update does not trigger another \
         reconcile (or read)."
    };
    writeln!(
        md,
        "\nfhirlock: {periods:.0} resync periods of {RESYNC} s observed ({window:.0} s), {resyncs:.0} reconciles, {} GETs, {} writes. \
         {echo} The table counts what ARM saw.",
        fl.reads,
        fl.writes + fl.deletes
    )?;
    writeln!(
        md,
        "\nThe blind-PUT resyncs took {:.1} s of wall time each at this time scale ({:.0} s of Azure time): every resync re-runs a gateway \
         update and a Cosmos update, and while they run the VNet and the account are locked against other writers (409/412). \
         fhirlock's resync writes nothing, so it starts no operation and locks nothing.",
        blind_secs / n,
        blind_secs / n / TIME_SCALE
    )?;
    Ok(md)
}
