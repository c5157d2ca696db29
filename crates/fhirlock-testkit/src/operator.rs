//! `fhirlock run` as a separate process against a control plane and an emulator, and what it
//! tells about itself: `/metrics`, `/readyz`, `/proc`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use testenv::process::{Process, Spec};

use crate::Emulator;

/// How to start an operator.
pub struct OperatorOptions<'a> {
    pub program: PathBuf,
    /// The tenancy file (`--config`).
    pub config: &'a Path,
    pub kubeconfig: &'a Path,
    /// Flags after `run --config <config> --metrics-addr <addr>`.
    pub args: Vec<String>,
    /// Set on top of the emulator's environment and `KUBECONFIG`.
    pub env: Vec<(String, String)>,
}

/// A running `fhirlock run`. Dropped, it is killed (SIGKILL).
pub struct Operator {
    process: Process,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl Operator {
    /// Starts it with its metrics on a free loopback port, logging to
    /// `<emulator dir>/operator-<port>.log`. It does not wait for it to be ready.
    pub fn start(emu: &Emulator, o: OperatorOptions<'_>) -> anyhow::Result<Operator> {
        Operator::start_in(emu.dir(), emu.env(), o)
    }

    /// As [`Operator::start`], against whatever ARM `azure_env` names (the emulator's
    /// environment, or real Azure's `AZURE_*` variables), logging into `dir`.
    pub fn start_in<K: Into<String>, V: Into<String>>(
        dir: &Path,
        azure_env: impl IntoIterator<Item = (K, V)>,
        o: OperatorOptions<'_>,
    ) -> anyhow::Result<Operator> {
        let port = testenv::free_port()?;
        let log = dir.join(format!("operator-{port}.log"));
        let spec = Spec::new(o.program, &log)
            .args([
                "run".into(),
                "--config".into(),
                o.config.display().to_string(),
            ])
            .args(["--metrics-addr".into(), format!("127.0.0.1:{port}")])
            .args(o.args)
            .envs(azure_env)
            .envs([("KUBECONFIG", o.kubeconfig.display().to_string())])
            .envs(o.env);
        Ok(Operator {
            process: Process::start(spec)?,
            log,
            metrics_port: port,
        })
    }

    /// Waits until `/readyz` answers 200, or fails after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.readyz() != 200 {
            if Instant::now() > deadline {
                bail!("the operator is not ready; log: {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// SIGKILL: no chance to clean up or step down.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM and wait: a graceful shutdown.
    pub fn terminate(&mut self) {
        self.process.terminate(Duration::from_secs(120));
    }

    /// SIGKILL, then the same command again (its log is appended to).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().map(|_| ())
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Running, and not a zombie.
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .is_ok_and(|stat| !stat.contains(") Z "))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// user + system CPU seconds of the process so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let after = &stat[stat.rfind(')').context("stat")? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of proc(5), counted from `state` (field 3) here.
        let (utime, stime): (f64, f64) = (f[11].parse()?, f[12].parse()?);
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok((utime + stime) / tck)
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory_kb(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// `GET http://127.0.0.1:<metrics port><path>`: (status, body).
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        // HTTP/1.0: the server closes the connection after the answer, which ends the body.
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.metrics_port
        )?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .with_context(|| format!("GET {path}: no HTTP answer: {answer}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("GET {path}: no status in {head}"))?;
        Ok((status, body.to_owned()))
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.get("/metrics")?.1)
    }

    /// The HTTP status of `/readyz` (what the Deployment's readiness probe asks); 0 when it
    /// does not answer.
    pub fn readyz(&self) -> u16 {
        self.get("/readyz").map_or(0, |(status, _)| status)
    }

    pub fn reconciles(&self) -> anyhow::Result<Reconciles> {
        Ok(Reconciles::of(&self.metrics()?))
    }

    /// ARM requests the operator counted with this status (`fhirlock_arm_requests_total`).
    pub fn arm_requests_with_status(&self, status: &str) -> anyhow::Result<u64> {
        let text = self.metrics()?;
        let needle = format!("status=\"{status}\"");
        Ok(samples(&text, "fhirlock_arm_requests_total")
            .iter()
            .filter(|(l, _)| l.contains(&needle))
            .map(|(_, v)| *v as u64)
            .sum())
    }
}

/// What `/metrics` says about reconciles.
#[derive(Debug, Default, Clone)]
pub struct Reconciles {
    pub by_result: BTreeMap<String, u64>,
    /// `fhirlock_arm_deferred_writes_total`, over every label set.
    pub deferred: u64,
}

impl Reconciles {
    pub fn of(metrics: &str) -> Reconciles {
        let mut r = Reconciles::default();
        for (labels, v) in samples(metrics, "fhirlock_reconciles_total") {
            let result = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("result="))
                .unwrap_or("")
                .trim_matches('"')
                .to_owned();
            *r.by_result.entry(result).or_default() += v as u64;
        }
        r.deferred = samples(metrics, "fhirlock_arm_deferred_writes_total")
            .iter()
            .map(|(_, v)| *v as u64)
            .sum();
        r
    }

    pub fn total(&self) -> u64 {
        self.by_result.values().sum()
    }
}

/// `(labels, value)` of every sample of `name` on a Prometheus text page.
pub fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let end = r.find('}')?;
                (&r[..end], r[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                return None;
            };
            Some((labels, value.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}
