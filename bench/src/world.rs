//! What a benchmark runs on: a fresh control plane, an emulator seeded with `n` estates, the
//! namespace's TLS Secret, and operators started into it (release builds); and converging `n`
//! endpoints from scratch, which several benchmarks start with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use fhirlock_testkit::operator::OperatorOptions;
use fhirlock_testkit::{
    Binaries, Cluster, Counts, Emulator, EmulatorOptions, OPERATOR_OBJECT, Operator, Throttle,
};
use serde_json::Value;
use testenv::ControlPlane;

use crate::estate::{NS, endpoint, endpoint_of, seeds};
use crate::{log, out_dir};

pub struct World {
    pub plane: ControlPlane,
    pub emu: Emulator,
    /// Under target/bench/runs, kept for the logs (operator, emulator).
    pub dir: PathBuf,
    /// The TLS Secret's certificate and key (PEM).
    pub tls: (String, String),
}

impl World {
    pub async fn new(
        n: usize,
        time_scale: f64,
        throttle: Option<Throttle>,
    ) -> anyhow::Result<World> {
        let runs = out_dir().join("runs");
        std::fs::create_dir_all(&runs)?;
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&runs)?
            .keep();
        let plane = ControlPlane::start()?;
        Cluster::new(&plane).install_crds()?;
        let emu = start_emulator(&dir, seeds(n), time_scale, throttle).await?;
        let cluster = Cluster::new(&plane);
        cluster.namespace(NS)?;
        let tls = cluster.tls_secret(NS, "fhir-tls", "*.trust.nhs.uk", &dir)?;
        Ok(World {
            plane,
            emu,
            dir,
            tls,
        })
    }

    fn cluster(&self) -> Cluster<'_> {
        Cluster::new(&self.plane)
    }

    /// `fhirlock run <flags>` for the namespace, once its `/readyz` answers.
    pub async fn operator(&self, flags: &[&str]) -> anyhow::Result<Operator> {
        let config = fhirlock_testkit::tenancy(&self.dir, &[NS], None)?;
        let op = Operator::start(
            &self.emu,
            OperatorOptions {
                program: Binaries::release().path("fhirlock")?,
                config: &config,
                kubeconfig: &self.plane.kubeconfig_path(),
                args: flags.iter().map(|f| f.to_string()).collect(),
                env: Vec::new(),
            },
        )?;
        op.wait_ready(Duration::from_secs(60)).await?;
        Ok(op)
    }

    /// Creates endpoints `0..n` with one `kubectl create`.
    pub fn create_endpoints(&self, n: usize) -> anyhow::Result<()> {
        let mut yaml = String::new();
        for i in 0..n {
            yaml.push_str("---\n");
            yaml.push_str(&serde_yaml::to_string(&endpoint(i))?);
        }
        let file = self.dir.join(format!("endpoints-{n}.yaml"));
        std::fs::write(&file, yaml)?;
        self.cluster()
            .ok(&["create", "-f", &file.display().to_string()])?;
        Ok(())
    }

    /// How many endpoints have Ready True.
    pub fn ready_count(&self) -> anyhow::Result<usize> {
        let out = self.cluster().ok(&[
            "get",
            "sfe",
            "-A",
            "-o",
            r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}"#,
        ])?;
        Ok(out.split_whitespace().filter(|s| *s == "True").count())
    }

    /// Waits until `n` endpoints are Ready (their observed generation current).
    pub async fn wait_ready(
        &self,
        n: usize,
        timeout: Duration,
        op: &Operator,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_log = Instant::now();
        loop {
            let ready = self.ready_count()?;
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

    /// Requests of the operator's principal since the last reset.
    pub async fn operator_counts(&self) -> anyhow::Result<Counts> {
        self.emu.control.counts(OPERATOR_OBJECT).await
    }
}

/// `examples/arm-emulator-estate.yaml`'s tenant and principals with `seed` as the estate, and
/// the throttle's buckets if given; its data on tmpfs (it rewrites its whole state on each write).
async fn start_emulator(
    dir: &std::path::Path,
    seed: Vec<Value>,
    time_scale: f64,
    throttle: Option<Throttle>,
) -> anyhow::Result<Emulator> {
    let mut cfg = fhirlock_testkit::example("arm-emulator-estate.yaml")?;
    cfg["seed"] = Value::Array(seed);
    if let Some(t) = throttle {
        cfg["throttle"] = t.json();
    }
    let config = dir.join("emulator.json");
    std::fs::write(&config, serde_json::to_vec(&cfg)?)?;
    let options = EmulatorOptions {
        program: Binaries::release().path("arm-emulator")?,
        config,
        time_scale,
        dir: Some(dir.to_owned()),
        data_on_tmpfs: true,
        check_bodies_on_drop: false,
    };
    // It blocks until the emulator's ready line.
    tokio::task::spawn_blocking(move || Emulator::start(options)).await?
}

/// One convergence of `n` endpoints from scratch, as measured.
pub struct Converged {
    pub n: usize,
    /// Endpoints Ready at the end (`n` unless the wait was cut off).
    pub ready: usize,
    pub wall: f64,
    pub critical: f64,
    pub ops: usize,
    pub cpu: f64,
    pub counts: Counts,
    pub reconciles: u64,
    pub reconcile_errors: u64,
    pub deferred: u64,
}

/// A world of `n` estates and an operator with `flags`, then `n` endpoints created at once and
/// waited for; with `allow_partial`, a wait cut off at `timeout` still measures.
pub async fn converge(
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
    let r0 = op.reconciles()?;
    let t0 = Instant::now();
    w.create_endpoints(n)?;
    let ready = match w.wait_ready(n, timeout, &op).await {
        Ok(()) => n,
        Err(e) if allow_partial && op.alive() => {
            log(format!("  stopped: {e:#}"));
            w.ready_count()?
        }
        Err(e) => return Err(e),
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = op.cpu_seconds()? - cpu0;
    let r1 = op.reconciles()?;
    let counts = w.operator_counts().await?;
    let state = w.emu.control.state().await?;
    let (cp, ops) = critical_path(&state);
    let c = Converged {
        n,
        ready,
        wall,
        critical: cp,
        ops,
        cpu,
        counts,
        reconciles: r1.total() - r0.total(),
        reconcile_errors: r1.by_result.get("error").copied().unwrap_or(0)
            - r0.by_result.get("error").copied().unwrap_or(0),
        deferred: r1.deferred - r0.deferred,
    };
    Ok((w, op, c))
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
