//! `make bench`: issue 7's benchmarks B1–B5, measured against a real kube-apiserver and etcd
//! (`testenv`), the `arm-emulator` binary and the `fhirlock run` binary, all as separate processes
//! (release builds), as in `tests/controller.rs`. Writes `docs/benchmarks.md`.
//!
//! ```text
//! fhirlock-bench [b1] [b2] [b3] [b4] [b5]     (none: all five)
//! fhirlock-bench doc                          (only re-assemble the document)
//! ```
//!
//! Each benchmark writes its section to `target/bench/<b>.md`; the document is assembled from the
//! sections present, so one benchmark can be re-run alone. Request counts come from the emulator's
//! `/_emulator/stats` (exact); times are reported against a reference measured in the same run.

mod env;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use env::{Emulator, Operator, Plane, Throttle};
use serde_json::{Value, json};

pub const SUB: &str = "6f1c2a52-0000-4000-8000-000000000001";
const NS: &str = "bench";
const WEB: &str = "2024-11-01";

fn out_dir() -> PathBuf {
    testenv::workspace_root().join("target/bench")
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench {}] {}", env::utc_now(), msg.as_ref());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut which: Vec<String> = std::env::args().skip(1).collect();
    if which.is_empty() {
        which = ["b1", "b5", "b2", "b4", "b3"].map(String::from).to_vec();
    }
    std::fs::create_dir_all(out_dir())?;
    if which == ["doc"] {
        // Only re-assemble docs/benchmarks.md from the sections already measured.
        return write_doc();
    }
    let started = Instant::now();
    for b in &which {
        let t = Instant::now();
        log(format!("{b}: start"));
        let section = match b.as_str() {
            "b1" => b1().await,
            "b2" => b2().await,
            "b3" => b3().await,
            "b4" => b4().await,
            "b5" => b5().await,
            other => bail!("unknown benchmark {other:?} (b1..b5)"),
        };
        match section {
            Ok(md) => {
                let md = format!(
                    "{md}\nMeasured {} by `{}`; this benchmark took {:.0} s.\n",
                    env::utc_now(),
                    command_for(b),
                    t.elapsed().as_secs_f64()
                );
                std::fs::write(out_dir().join(format!("{b}.md")), md)?;
                log(format!("{b}: done in {:.0} s", t.elapsed().as_secs_f64()));
            }
            Err(e) => {
                let md = format!(
                    "**Not measured**: the run of `{}` on {} failed: `{}`\n",
                    command_for(b),
                    env::utc_now(),
                    format!("{e:#}").replace('`', "'")
                );
                std::fs::write(out_dir().join(format!("{b}.md")), md)?;
                log(format!("{b}: FAILED: {e:#}"));
            }
        }
        write_doc()?;
    }
    log(format!(
        "all done in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn command_for(b: &str) -> String {
    format!("make bench BENCH={b}")
}

// ---- the estates and endpoints ------------------------------------------------------------------

/// Endpoint `i`'s own estate: a VNet `10.a.b.0/24` (one per endpoint, so that one endpoint's
/// gateway operation never locks another's VNet), an App Service plan, a wide-open site and a
/// wide-open Cosmos account, like `examples/arm-emulator-estate.yaml`.
fn octets(i: usize) -> (usize, usize) {
    (20 + i / 256, i % 256)
}

fn vnet_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/hscn-net/providers/Microsoft.Network/virtualNetworks/vnet-e{i}"
    )
}
fn site_id(i: usize) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/site-e{i}")
}
fn cosmos_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-e{i}"
    )
}

fn seeds(n: usize) -> Vec<Value> {
    let mut out = vec![
        json!({"id": format!("/subscriptions/{SUB}/resourceGroups/hscn-net"), "body": {"location": "uksouth"}}),
        json!({"id": format!("/subscriptions/{SUB}/resourceGroups/fhir"), "body": {"location": "uksouth"}}),
    ];
    for i in 0..n {
        let (a, b) = octets(i);
        let plan = format!(
            "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/serverfarms/plan-e{i}"
        );
        out.push(json!({"id": vnet_id(i), "body": {"location": "uksouth",
            "properties": {"addressSpace": {"addressPrefixes": [format!("10.{a}.{b}.0/24")]}}}}));
        out.push(json!({"id": plan, "body": {"location": "uksouth", "kind": "linux",
            "sku": {"name": "P1v3", "tier": "PremiumV3", "size": "P1v3", "family": "Pv3", "capacity": 1},
            "properties": {"reserved": true}}}));
        out.push(json!({"id": site_id(i), "body": {"location": "uksouth", "kind": "app,linux", "properties": {
            "serverFarmId": plan, "httpsOnly": false, "publicNetworkAccess": "Enabled",
            "siteConfig": {"linuxFxVersion": "DOTNETCORE|8.0", "ipSecurityRestrictionsDefaultAction": "Allow",
                "ipSecurityRestrictions": [{"name": "office", "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100, "tag": "Default"}],
                "scmIpSecurityRestrictionsDefaultAction": "Allow", "scmIpSecurityRestrictionsUseMain": false,
                "scmIpSecurityRestrictions": [], "minTlsVersion": "1.2", "ftpsState": "AllAllowed"}}}}));
        out.push(json!({"id": cosmos_id(i), "body": {"location": "uksouth", "kind": "GlobalDocumentDB", "properties": {
            "databaseAccountOfferType": "Standard",
            "locations": [{"locationName": "UK South", "failoverPriority": 0, "isZoneRedundant": false}],
            "publicNetworkAccess": "Enabled", "isVirtualNetworkFilterEnabled": false, "virtualNetworkRules": [],
            "ipRules": [{"ipAddressOrRange": "198.51.100.0/24"}, {"ipAddressOrRange": "0.0.0.0"}],
            "networkAclBypass": "AzureServices", "networkAclBypassResourceIds": [],
            "disableLocalAuth": false, "disableKeyBasedMetadataWriteAccess": false}}}));
    }
    out
}

/// `examples/fhir-endpoint.yaml`, re-pointed at estate `i`.
fn endpoint(i: usize) -> Value {
    let (a, b) = octets(i);
    json!({
        "apiVersion": "fhirlock.io/v1alpha1",
        "kind": "SecuredFhirEndpoint",
        "metadata": {"name": format!("ep-e{i}"), "namespace": NS},
        "spec": {
            "subscriptionId": SUB,
            "network": {
                "virtualNetworkId": vnet_id(i),
                "gatewaySubnet": {"name": "snet-fhir-agw", "addressPrefix": format!("10.{a}.{b}.0/26")},
                "integrationSubnet": {"name": "snet-fhir-int", "addressPrefix": format!("10.{a}.{b}.64/27")},
            },
            "appService": {"id": site_id(i), "scmSite": "LockedLikeMain"},
            "cosmosDb": {"id": cosmos_id(i)},
            "gateway": {
                "name": format!("agw-e{i}"), "resourceGroup": "fhir", "location": "uksouth",
                "sku": {"tier": "WAF_v2", "minCapacity": 1, "maxCapacity": 3},
                "privateIPAddress": format!("10.{a}.{b}.10"),
                "hostName": format!("fhir-e{i}.trust.nhs.uk"),
                "tls": {"secretRef": {"name": "fhir-tls"}},
                "sslPolicy": "AppGwSslPolicy20220101S",
                "probePath": "/metadata",
            },
            "mode": "Enforce",
            "deletionPolicy": "Retain",
        }
    })
}

/// Which endpoint an ARM id belongs to (`…-e<i>` in one of its names).
fn endpoint_of(id: &str) -> Option<usize> {
    let at = id.find("-e")?;
    let digits: String = id[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A control plane, an emulator seeded with `n` estates, and the namespace's TLS Secret.
struct World {
    plane: Plane,
    emu: Emulator,
    dir: PathBuf,
}

impl World {
    async fn new(n: usize, time_scale: f64, throttle: Option<Throttle>) -> anyhow::Result<World> {
        // Under target/bench/runs, kept for the logs (operator, emulator).
        let runs = out_dir().join("runs");
        std::fs::create_dir_all(&runs)?;
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&runs)?
            .keep();
        let mut plane = Plane::start(&dir)?;
        let emu = Emulator::start(&dir, seeds(n), time_scale, throttle).await?;
        plane.namespace(NS)?;
        plane.tls_secret(NS, "fhir-tls", &dir)?;
        Ok(World { plane, emu, dir })
    }

    fn tenancy(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.as_path().join("tenancy.yaml");
        let t = json!({"tenants": [{"namespace": NS, "scopes": [
            format!("/subscriptions/{SUB}/resourceGroups/fhir"),
            format!("/subscriptions/{SUB}/resourceGroups/hscn-net")],
            "identity": {"operator": {}}}]});
        std::fs::write(&path, serde_yaml::to_string(&t)?)?;
        Ok(path)
    }

    async fn operator(&self, flags: &[&str]) -> anyhow::Result<Operator> {
        Operator::start(
            &self.plane,
            &self.emu,
            &self.tenancy()?,
            flags,
            self.dir.as_path(),
        )
        .await
    }

    /// Creates endpoints `0..n` with one `kubectl create`.
    fn create_endpoints(&self, n: usize) -> anyhow::Result<()> {
        let mut yaml = String::new();
        for i in 0..n {
            yaml.push_str("---\n");
            yaml.push_str(&serde_yaml::to_string(&endpoint(i))?);
        }
        let file = self.dir.as_path().join(format!("endpoints-{n}.yaml"));
        std::fs::write(&file, yaml)?;
        self.plane
            .kubectl_ok(&["create", "-f", file.to_str().unwrap()])?;
        Ok(())
    }

    /// Waits until `n` endpoints are Ready (their observed generation current).
    async fn wait_ready(&self, n: usize, timeout: Duration, op: &Operator) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_log = Instant::now();
        loop {
            let ready = self.plane.ready_count()?;
            if ready >= n {
                return Ok(());
            }
            if !op.alive() {
                bail!("the operator exited; log: {}", op.log.display());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {ready} of {n} endpoints Ready after {} s",
                    timeout.as_secs()
                );
            }
            if last_log.elapsed() > Duration::from_secs(30) {
                log(format!("  {ready}/{n} Ready"));
                last_log = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Requests per principal and method class from `/_emulator/stats`.
#[derive(Debug, Default, Clone)]
struct Counts {
    reads: u64,
    writes: u64,
    deletes: u64,
    /// GETs of operation status URLs (resource types `…/operations`, `…/operationsStatus`, …).
    polls: u64,
    by_status: BTreeMap<String, u64>,
}

impl Counts {
    fn of(stats: &Value, principal: &str) -> Counts {
        let mut c = Counts::default();
        for e in stats["entries"].as_array().into_iter().flatten() {
            if e["principal"] != principal {
                continue;
            }
            let n = e["count"].as_u64().unwrap_or(0);
            let rt = e["resourceType"].as_str().unwrap_or("");
            match e["method"].as_str().unwrap_or("") {
                "GET" | "HEAD" => {
                    c.reads += n;
                    if rt.to_ascii_lowercase().contains("operation") {
                        c.polls += n;
                    }
                }
                "DELETE" => c.deletes += n,
                _ => c.writes += n,
            }
            *c.by_status.entry(e["status"].to_string()).or_default() += n;
        }
        c
    }
    fn status(&self, s: u16) -> u64 {
        self.by_status.get(&s.to_string()).copied().unwrap_or(0)
    }
    fn total(&self) -> u64 {
        self.reads + self.writes + self.deletes
    }
}

/// The critical path of emulated operation durations: fhirlock runs one operation at a time per
/// endpoint and endpoints are independent, so it is the largest per-endpoint sum of the
/// durations the emulator gave the operations it ran (from its operation log).
fn critical_path(state: &Value) -> (f64, usize) {
    let mut per: BTreeMap<usize, f64> = BTreeMap::new();
    let mut ops = 0;
    for o in state["operations"]
        .as_object()
        .map(|m| m.values().cloned().collect::<Vec<_>>())
        .or_else(|| state["operations"].as_array().cloned())
        .unwrap_or_default()
    {
        let (Some(start), Some(due)) = (o["startMs"].as_u64(), o["dueMs"].as_u64()) else {
            continue;
        };
        if let Some(i) = endpoint_of(o["resourceId"].as_str().unwrap_or("")) {
            *per.entry(i).or_default() += (due.saturating_sub(start)) as f64 / 1000.0;
            ops += 1;
        }
    }
    (per.values().cloned().fold(0.0, f64::max), ops)
}

fn fmt_ratio(x: f64) -> String {
    format!("{x:.2}")
}

// ---- B1: reads and writes per steady-state resync, beside a blind-PUT baseline ----------------

const B1_TIME_SCALE: f64 = 0.1;
const B1_RESYNC: u64 = 3;
const B1_WINDOW: Duration = Duration::from_secs(36);
const B1_BLIND_RESYNCS: usize = 2;

async fn b1() -> anyhow::Result<String> {
    let w = World::new(1, B1_TIME_SCALE, None).await?;
    let resync = B1_RESYNC.to_string();
    let op = w.operator(&["--resync-seconds", &resync]).await?;
    w.create_endpoints(1)?;
    w.wait_ready(1, Duration::from_secs(600), &op).await?;
    log("b1: converged; measuring fhirlock's steady state");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r0 = op.reconciles().await?;
    w.emu.reset_stats().await?;
    let t0 = Instant::now();
    tokio::time::sleep(B1_WINDOW).await;
    let stats = w.emu.stats().await?;
    let r1 = op.reconciles().await?;
    let window = t0.elapsed().as_secs_f64();
    let fl = Counts::of(&stats, env::OPERATOR_OBJECT);
    let resyncs = (r1.total() - r0.total()) as f64;
    if resyncs < 1.0 {
        bail!("no reconcile in {window:.0} s");
    }
    let fl_cpu_ok = r1.by_result.clone();
    drop(op);

    // The baseline, with the operator stopped: the same principal, the same transport
    // (fhirlock-arm), the desired bodies computed once against the converged state.
    log("b1: blind-PUT baseline");
    let arm = w
        .emu
        .arm_client(env::OPERATOR_CLIENT, env::OPERATOR_SECRET)?;
    let spec: fhirlock_api::v1alpha1::SecuredFhirEndpointSpec =
        serde_json::from_value(endpoint(0)["spec"].clone())?;
    let (cert, key) = w.plane.tls_pair();
    let certificate = fhirlock::tls::pfx_from_pem(cert.as_bytes(), key.as_bytes())?;
    let d = fhirlock_core::Desired::from_spec(NS, "ep-e0", &spec, certificate);
    let observed = fhirlock::azure::observe(&arm, &d).await?;
    if !fhirlock_core::plan::plan(&d, &observed).is_empty() {
        bail!("the endpoint is not converged before the baseline");
    }
    let body = |v: &Option<Value>, what: &str| {
        v.clone()
            .with_context(|| format!("{what} missing in the converged state"))
    };
    use fhirlock_core::observed::api_version as av;
    let resources: Vec<(&str, String, &str, Value)> = vec![
        (
            "integration subnet",
            d.integration_subnet.id.clone(),
            av::NETWORK,
            observed
                .subnet_json(&d.integration_subnet.name)
                .context("integration subnet")?,
        ),
        (
            "gateway subnet",
            d.gateway_subnet.id.clone(),
            av::NETWORK,
            observed
                .subnet_json(&d.gateway_subnet.name)
                .context("gateway subnet")?,
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
    ];
    w.emu.reset_stats().await?;
    let mut lros = 0;
    let bt0 = Instant::now();
    for _ in 0..B1_BLIND_RESYNCS {
        for (what, id, api, body) in &resources {
            let outcome = arm
                .put(id, api, body)
                .await
                .with_context(|| format!("blind PUT of the {what}"))?;
            if let fhirlock_arm::WriteOutcome::Accepted(o) = outcome {
                lros += 1;
                let mut wait = o.next_poll_in(None);
                loop {
                    tokio::time::sleep(wait).await;
                    match arm.poll(&o).await? {
                        fhirlock_arm::OperationStatus::InProgress { retry_after } => {
                            wait = o.next_poll_in(retry_after)
                        }
                        fhirlock_arm::OperationStatus::Succeeded => break,
                        fhirlock_arm::OperationStatus::Failed(e) => {
                            bail!("blind PUT of the {what}: operation failed: {e}")
                        }
                    }
                }
            }
        }
    }
    let blind_secs = bt0.elapsed().as_secs_f64();
    let bstats = w.emu.stats().await?;
    let bl = Counts::of(&bstats, env::OPERATOR_OBJECT);
    let n = B1_BLIND_RESYNCS as f64;

    let mut md = String::new();
    writeln!(
        md,
        "## B1: ARM requests per steady-state resync of a converged endpoint\n"
    )?;
    writeln!(
        md,
        "One endpoint, converged (`Ready`) against its own wide-open estate. fhirlock: `fhirlock run --resync-seconds {B1_RESYNC}` \
         observed for {window:.0} s, divided by the reconciles counted in `fhirlock_reconciles_total` over the same window \
         (reconciles by result since the operator started: {fl_cpu_ok:?}). Blind PUT: the operator stopped, then {B1_BLIND_RESYNCS} resyncs by the \
         bench's driver (`bench/src/main.rs`, `b1`), which per resync GETs nothing and PUTs each of the six resources fhirlock \
         manages with its desired body, waiting for each long-running operation by polling its status URL as `Retry-After` \
         says (as Azure Service Operator v2 does on every resync). The bodies are computed once against the converged state: the two \
         subnets and the site, `config/web` and Cosmos account as read back; the gateway from `fhirlock_core::plan::gateway_body` \
         (the listener certificate as PFX). Same principal, same ARM client (`fhirlock-arm`), same emulator. Counts are the \
         emulator's `/_emulator/stats` for the operator principal. Emulator time scale {B1_TIME_SCALE} (a 300 s gateway update \
         takes 30 s; `Retry-After` 10 s scales to 1 s, so the number of polls per operation is the one Azure's defaults give).\n"
    )?;
    let periods = window / B1_RESYNC as f64;
    writeln!(
        md,
        "| strategy | ARM reads / resync period | of which operation polls | ARM writes / resync period | long-running operations started / resync period | reconciles / resync period | ARM reads / reconcile | 429s |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
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
        "\nfhirlock: {periods:.0} resync periods of {B1_RESYNC} s observed ({window:.0} s), {resyncs:.0} reconciles, {} GETs, {} writes. \
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
        blind_secs / n / B1_TIME_SCALE
    )?;
    Ok(md)
}

// ---- B2: convergence of 1, 10 and 100 endpoints from scratch ----------------------------------

const B2_TIME_SCALE: f64 = 0.02;

async fn converge(
    n: usize,
    time_scale: f64,
    throttle: Option<Throttle>,
    flags: &[&str],
    timeout: Duration,
    allow_partial: bool,
) -> anyhow::Result<(World, Operator, Converged)> {
    let w = World::new(n, time_scale, throttle).await?;
    let op = w.operator(flags).await?;
    let cpu0 = op.cpu_seconds()?;
    let r0 = op.reconciles().await?;
    let t0 = Instant::now();
    w.create_endpoints(n)?;
    let ready = match w.wait_ready(n, timeout, &op).await {
        Ok(()) => n,
        Err(e) if allow_partial && op.alive() => {
            log(format!("  stopped: {e:#}"));
            w.plane.ready_count()?
        }
        Err(e) => return Err(e),
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = op.cpu_seconds()? - cpu0;
    let r1 = op.reconciles().await?;
    let stats = w.emu.stats().await?;
    let state = w.emu.control("GET", "/_emulator/state", None).await?;
    let (cp, ops) = critical_path(&state);
    let c = Converged {
        n,
        ready,
        wall,
        critical: cp,
        ops,
        cpu,
        counts: Counts::of(&stats, env::OPERATOR_OBJECT),
        reconciles: r1.total() - r0.total(),
        reconcile_errors: r1.by_result.get("error").copied().unwrap_or(0)
            - r0.by_result.get("error").copied().unwrap_or(0),
        deferred: r1.deferred - r0.deferred,
    };
    Ok((w, op, c))
}

struct Converged {
    n: usize,
    /// Endpoints Ready at the end (`n` unless the wait was cut off).
    ready: usize,
    wall: f64,
    critical: f64,
    ops: usize,
    cpu: f64,
    counts: Counts,
    reconciles: u64,
    reconcile_errors: u64,
    deferred: u64,
}

async fn b2() -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for n in [1usize, 10, 100] {
        log(format!("b2: {n} endpoint(s)"));
        let (w, op, c) = converge(
            n,
            B2_TIME_SCALE,
            Some(Throttle::raised()),
            &["--resync-seconds", "60"],
            Duration::from_secs(900),
            false,
        )
        .await?;
        log(format!(
            "b2: {n}: wall {:.1} s, critical path {:.1} s, cpu {:.2} s",
            c.wall, c.critical, c.cpu
        ));
        drop(op);
        drop(w);
        rows.push(c);
    }
    let mut md = String::new();
    writeln!(
        md,
        "## B2: convergence from scratch, 1, 10 and 100 endpoints\n"
    )?;
    writeln!(
        md,
        "Each size in a fresh control plane and emulator (time scale {B2_TIME_SCALE}: a 300 s gateway takes {:.0} s), each endpoint \
         with its own wide-open estate and VNet, the throttle raised out of the way (buckets of 1,000,000 requests; B5 uses Azure's). \
         `fhirlock run` with the defaults (`--concurrency 4`, `--arm-budget-share 0.5`) and `--resync-seconds 60`, started and ready \
         before the endpoints are created with one `kubectl create -f`. Wall time runs from that `kubectl create` until every endpoint \
         is `Ready`. The reference is the **critical path**: fhirlock runs one long-running operation at a time per endpoint and the \
         endpoints are independent, so no schedule can finish before the largest per-endpoint sum of the durations the emulator \
         gave the operations (read from its operation log, `/_emulator/state`). CPU is the operator process's user + system time \
         over the same interval (`/proc/<pid>/stat`).\n",
        300.0 * B2_TIME_SCALE
    )?;
    writeln!(
        md,
        "| endpoints | wall / critical path | wall (s) | critical path (s) | operations | operator CPU s per endpoint | ARM reads | ARM writes | reconciles |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for c in &rows {
        writeln!(
            md,
            "| {} | **{}** | {:.1} | {:.1} | {} | {:.3} | {} | {} | {} |",
            c.n,
            fmt_ratio(c.wall / c.critical),
            c.wall,
            c.critical,
            c.ops,
            c.cpu / c.n as f64,
            c.counts.reads,
            c.counts.writes,
            c.reconciles
        )?;
    }
    Ok(md)
}

// ---- B5: 100 endpoints under Azure's real bucket sizes -------------------------------------------

/// B5 stops waiting after this long (about 20 times the critical path at this time scale) and
/// reports how far convergence got.
const B5_CUTOFF: u64 = 240;

async fn b5() -> anyhow::Result<String> {
    let n = 100;
    let (w, op, c) = converge(
        n,
        B2_TIME_SCALE,
        None,
        &["--resync-seconds", "60"],
        Duration::from_secs(B5_CUTOFF),
        true,
    )
    .await?;
    let arm_429 = op.arm_requests_with_status("429").await?;
    drop(op);
    drop(w);
    let mut md = String::new();
    writeln!(
        md,
        "## B5: 100 endpoints converging under Azure's bucket sizes\n"
    )?;
    writeln!(
        md,
        "As B2 with 100 endpoints (time scale {B2_TIME_SCALE}, `--resync-seconds 60`, otherwise defaults), but the emulator's \
         throttle at ARM's documented sizes, per subscription and principal: reads 250 / refill 25 per s, writes 200 / 10 per s, \
         deletes 200 / 10 per s. A 429 is counted by the emulator (operator principal). fhirlock never re-sends a throttled \
         request inside a reconcile: the reconcile ends, and the endpoint is requeued after the longer of `Retry-After` and its \
         exponential backoff, with jitter (counted as `fhirlock_reconciles_total{{result=\"error\"}}`). Observing is held back \
         while the estimated read bucket is below fhirlock's share (`--arm-budget-share`), and writes likewise \
         (`fhirlock_arm_deferred_writes_total`). After its own writes, the next reconcile re-reads only what they changed.\n"
    )?;
    writeln!(
        md,
        "| endpoints | Ready at the end | 429s (emulator) | 429s seen by fhirlock | retries: reconciles requeued after an ARM error | deferred writes | ARM requests | reads | writes | wall / critical path | wall (s) |"
    )?;
    writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    writeln!(
        md,
        "| {} | **{}** | **{}** | {} | **{}** | {} | {} | {} | {} | {} | {:.1} |",
        c.n,
        c.ready,
        c.counts.status(429),
        arm_429,
        c.reconcile_errors,
        c.deferred,
        c.counts.total(),
        c.counts.reads,
        c.counts.writes,
        if c.ready == c.n {
            fmt_ratio(c.wall / c.critical)
        } else {
            format!("not converged; cut off at {B5_CUTOFF} s")
        },
        c.wall
    )?;
    if c.ready < c.n {
        writeln!(
            md,
            "\nThe run was cut off after {B5_CUTOFF} s with {} of {} endpoints `Ready` (the critical path of the operations that \
             did run: {:.1} s). The operator read {:.1} times per second, against the read bucket's refill of 25 per second.",
            c.ready,
            c.n,
            c.critical,
            c.counts.reads as f64 / c.wall
        )?;
    }
    writeln!(
        md,
        "\nReads per endpoint: {:.1} (B2 without the throttle, same build: see its table). Reconciles: {}.",
        c.counts.reads as f64 / c.n as f64,
        c.reconciles
    )?;
    let others: Vec<String> = c
        .counts
        .by_status
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    writeln!(md, "\nARM answers by status: {}.", others.join(", "))?;
    Ok(md)
}

// ---- B4: back-door detection latency at 100 endpoints ---------------------------------------------

const B4_RESYNC: u64 = 60;

async fn b4() -> anyhow::Result<String> {
    let n = 100;
    let resync = B4_RESYNC.to_string();
    let (w, op, _) = converge(
        n,
        B2_TIME_SCALE,
        Some(Throttle::raised()),
        &["--resync-seconds", &resync],
        Duration::from_secs(900),
        false,
    )
    .await?;
    log("b4: converged; Azure's bucket sizes from here on; opening back doors");
    w.emu
        .control("PUT", "/_emulator/throttle", Some(Throttle::azure().json()))
        .await?;
    // Let the convergence burst pass (each endpoint's last reconcile requeued one resync later).
    tokio::time::sleep(Duration::from_secs(B4_RESYNC + 10)).await;
    w.emu.reset_stats().await?;
    let t0 = Instant::now();
    let portal = w.emu.arm_client(env::PORTAL_CLIENT, env::PORTAL_SECRET)?;
    // One back door per endpoint, at uniformly random times over one resync period: the SCM
    // site opened to everyone (the portal's "allow all" on the advanced tool site).
    let span = B4_RESYNC as f64;
    let mut schedule: Vec<(f64, usize)> =
        (0..n).map(|i| (rand::random_range(0.0..span), i)).collect();
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut opened: BTreeMap<usize, f64> = BTreeMap::new();
    let mut closed: BTreeMap<usize, f64> = BTreeMap::new();
    let mut next = 0;
    let deadline = span + 3.0 * B4_RESYNC as f64;
    let mut cut_off = false;
    while closed.len() < n {
        let now = t0.elapsed().as_secs_f64();
        if now > deadline {
            log(format!(
                "b4: {} of {n} back doors still open after {deadline:.0} s",
                n - closed.len()
            ));
            cut_off = true;
            break;
        }
        while next < schedule.len() && schedule[next].0 <= now {
            let i = schedule[next].1;
            portal
                .patch(
                    &format!("{}/config/web", site_id(i)),
                    WEB,
                    &json!({"properties": {"scmIpSecurityRestrictionsDefaultAction": "Allow", "scmIpSecurityRestrictionsUseMain": false}}),
                )
                .await
                .context("opening a back door")?;
            opened.insert(i, t0.elapsed().as_secs_f64());
            next += 1;
        }
        if opened.len() > closed.len() {
            let exposure = w.emu.control("GET", "/_emulator/exposure", None).await?;
            let at = t0.elapsed().as_secs_f64();
            for (&i, &t) in &opened {
                if closed.contains_key(&i) {
                    continue;
                }
                if !scm_open(&exposure, &site_id(i)) {
                    closed.insert(i, at - t);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let window = t0.elapsed().as_secs_f64();
    let stats = w.emu.stats().await?;
    let fl = Counts::of(&stats, env::OPERATOR_OBJECT);
    drop(op);
    drop(w);
    let mut lat: Vec<f64> = closed.values().cloned().collect();
    lat.sort_by(f64::total_cmp);
    // Over all n back doors; one still open at the cut-off counts as longer than any closed one.
    let pct = |p: f64| {
        lat.get(((p * n as f64).ceil() as usize).clamp(1, n) - 1)
            .copied()
    };
    let secs = |v: Option<f64>| v.map_or("still open".to_owned(), |v| format!("{v:.1}"));
    let ratio = |v: Option<f64>| {
        v.map_or("not closed by the cut-off".to_owned(), |v| {
            fmt_ratio(v / B4_RESYNC as f64)
        })
    };
    let (p50, p99, max) = (
        pct(0.50),
        pct(0.99),
        if cut_off { None } else { lat.last().copied() },
    );
    let reads_per_s = fl.reads as f64 / window;
    let share = reads_per_s / Throttle::azure().reads.1;
    let mut md = String::new();
    writeln!(md, "## B4: back-door detection latency at 100 endpoints\n")?;
    writeln!(
        md,
        "100 converged endpoints (converged as in B2, then the emulator's buckets set to ARM's sizes), `fhirlock run --resync-seconds {B4_RESYNC}`. \
         After one quiet resync period, the portal principal (`portal-user`, plain ARM PATCHes of `config/web`) opens one back door \
         per endpoint — the SCM site opened to everyone (`scmIpSecurityRestrictionsDefaultAction: Allow`, not using the main rules) — \
         at uniformly random times over {span:.0} s. Latency runs from the PATCH's answer until the emulator's exposure oracle \
         (`/_emulator/exposure`, polled every 250 ms) no longer finds the SCM endpoint reachable. The reference is the configured resync period \
         (jittered ±10%), which bounds the latency. The read rate is the operator principal's ARM reads over the whole {window:.0} s window \
         (resyncs, the corrections' own reads and the re-reads after them), as a share of the read bucket's refill rate (25 per s).\n"
    )?;
    writeln!(
        md,
        "| endpoints | back doors closed | p50 / resync | p99 / resync | p50 (s) | p99 (s) | max (s) | operator reads / s | share of the read refill (25/s) | operator writes | 429s |"
    )?;
    writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    writeln!(
        md,
        "| {n} | {} | **{}** | **{}** | {} | {} | {} | {reads_per_s:.2} | **{:.0}%** | {} | {} |",
        lat.len(),
        ratio(p50),
        ratio(p99),
        secs(p50),
        secs(p99),
        secs(max),
        share * 100.0,
        fl.writes,
        fl.status(429)
    )?;
    if cut_off {
        writeln!(
            md,
            "\nCut off {deadline:.0} s after the first back door opened, with {} of {n} still open; {} of the operator's reads \
             were answered 429.",
            n - lat.len(),
            fl.status(429)
        )?;
    }
    if cut_off {
        writeln!(
            md,
            "\nReads per second count every GET the operator sent, those answered 429 included."
        )?;
    } else {
        writeln!(
            md,
            "\nThe read rate scales as 7 × endpoints / resync period: at the default `--resync-seconds 300` it is a fifth of the figure above, \
         and latency scales with the period the same way."
        )?;
    }
    Ok(md)
}

/// Whether the exposure oracle finds a site's SCM endpoint reachable from the internet.
fn scm_open(exposure: &Value, site: &str) -> bool {
    let sites = exposure["sites"].as_object();
    let Some(s) = sites.and_then(|m| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(site))
            .map(|(_, v)| v)
    }) else {
        return true;
    };
    s["scm"]["reachableFrom"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["source"] == "internet"))
}

// ---- B3: memory and CPU at 1,000 endpoints in steady state ---------------------------------------

const B3_N: usize = 1000;
const B3_RESYNC: u64 = 300;

async fn b3() -> anyhow::Result<String> {
    let resync = B3_RESYNC.to_string();
    // Converge with resyncs out of the way: on two shared cores, 1,000 endpoints resyncing every
    // minute crowd out the last ones still converging (an earlier run slowed to a few a minute).
    let (w, op, c) = converge(
        B3_N,
        0.01,
        Some(Throttle::raised()),
        &["--resync-seconds", "3600", "--concurrency", "16"],
        Duration::from_secs(3600),
        false,
    )
    .await?;
    log(format!(
        "b3: {B3_N} converged in {:.0} s; restarting the operator with --resync-seconds {B3_RESYNC}",
        c.wall
    ));
    // The steady state measured is a fresh operator's: it lists the 1,000 endpoints, looks at
    // each once, then resyncs. Wait out that first look (one resync period), then measure one.
    drop(op);
    let op = w
        .operator(&["--resync-seconds", &resync, "--concurrency", "16"])
        .await?;
    tokio::time::sleep(Duration::from_secs(B3_RESYNC)).await;
    let (cpu0, r0) = (op.cpu_seconds()?, op.reconciles().await?);
    w.emu.reset_stats().await?;
    let t0 = Instant::now();
    let mut rss_max = 0u64;
    let mut rss_samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(B3_RESYNC) {
        let (rss, _) = op.memory_kb()?;
        rss_max = rss_max.max(rss);
        rss_samples.push(rss);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu = op.cpu_seconds()? - cpu0;
    let r1 = op.reconciles().await?;
    let (rss_end, hwm) = op.memory_kb()?;
    let stats = w.emu.stats().await?;
    let fl = Counts::of(&stats, env::OPERATOR_OBJECT);
    drop(op);
    drop(w);
    let reconciles = r1.total() - r0.total();
    let mut md = String::new();
    writeln!(
        md,
        "## B3: operator memory and CPU at 1,000 endpoints in steady state\n"
    )?;
    writeln!(
        md,
        "1,000 endpoints, each with its own estate, converged from scratch (time scale 0.01, throttle raised as in B2, \
         `fhirlock run --resync-seconds 3600 --concurrency 16`; convergence took {:.0} s). Then a fresh \
         `fhirlock run --resync-seconds {B3_RESYNC} --concurrency 16` replaces that operator; after one resync period (its first look at every endpoint), \
         the operator process is observed for {window:.0} s (one resync period): resident memory from `/proc/<pid>/status` \
         (VmRSS sampled every 2 s; VmHWM is the peak since that operator started, its first look at every endpoint included), CPU from `/proc/<pid>/stat`.\n",
        c.wall
    )?;
    writeln!(
        md,
        "| endpoints | VmRSS (MiB, max in window) | VmRSS at end (MiB) | VmHWM (MiB) | CPU s per s (cores) | CPU ms per endpoint resync | reconciles in window | ARM reads | ARM writes |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    writeln!(
        md,
        "| {B3_N} | **{:.1}** | {:.1} | {:.1} | **{:.3}** | {:.2} | {reconciles} | {} | {} |",
        rss_max as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu / window,
        if reconciles > 0 {
            cpu * 1000.0 / reconciles as f64
        } else {
            f64::NAN
        },
        fl.reads,
        fl.writes
    )?;
    Ok(md)
}

// ---- the document -----------------------------------------------------------------------------------

fn write_doc() -> anyhow::Result<()> {
    let root = testenv::workspace_root();
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .current_dir(&root)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo");
    let mut md = String::new();
    writeln!(md, "# fhirlock benchmarks\n")?;
    writeln!(
        md,
        "Generated by `make bench` (`bench/`, package `fhirlock-bench`); do not edit by hand. Every figure below was measured on \
         the machine described here, by the command given with it. Each benchmark runs a real kube-apiserver and etcd \
         (`testenv`), the `arm-emulator` binary and the `fhirlock run` binary as separate processes (release builds, the \
         operator with its production defaults unless a flag is named). ARM request counts are exact: they come from the \
         emulator's `/_emulator/stats` for the operator's principal. Times are given as ratios against a reference measured \
         in the same run; absolute seconds are shown for context only and depend on the emulator's time scale. The machine \
         was not dedicated to the run: other builds and test runs shared its two cores, which affects the time ratios and CPU \
         figures but not the request counts.\n"
    )?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(
        md,
        "| machine | {} CPUs ({}), {mem} RAM, Linux {} |",
        sh("nproc"),
        cpu,
        sh("uname -r")
    )?;
    writeln!(md, "| document written | {} |", env::utc_now())?;
    writeln!(
        md,
        "| builds | fhirlock and arm-emulator: release (`target/release`); this harness: {} profile |",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    )?;
    writeln!(
        md,
        "| git commit | `{}`{} |",
        sh("git rev-parse --short HEAD"),
        if sh("git status --porcelain -- crates bench").is_empty() {
            ""
        } else {
            " (with uncommitted changes in crates/ or bench/)"
        }
    )?;
    writeln!(
        md,
        "| reproduce | `make bench` (all five, in the order B1, B5, B2, B4, B3; each section gives its own duration), or `make bench BENCH=b1` … `BENCH=b5` for one |\n"
    )?;
    for (b, title) in [
        ("b1", "B1"),
        ("b2", "B2"),
        ("b3", "B3"),
        ("b4", "B4"),
        ("b5", "B5"),
    ] {
        match std::fs::read_to_string(out_dir().join(format!("{b}.md"))) {
            Ok(s) => md.push_str(&s),
            Err(_) => writeln!(
                md,
                "## {title}\n\n**Not measured yet** on this machine: run `{}`.",
                command_for(b)
            )?,
        }
        md.push('\n');
    }
    std::fs::write(root.join("docs/benchmarks.md"), md)?;
    Ok(())
}
