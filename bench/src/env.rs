//! The processes a benchmark runs: the control plane (`testenv`), `arm-emulator` and
//! `fhirlock run` (release builds), and what the bench reads from them.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fhirlock_arm::{ArmClient, ArmConfig, Cloud, CredentialConfig, Url};
use serde_json::{Value, json};

pub const TENANT: &str = "6f1c2a52-0000-4000-8000-00000000a001";
pub const OPERATOR_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c001";
pub const OPERATOR_OBJECT: &str = "6f1c2a52-0000-4000-8000-00000000b001";
pub const OPERATOR_SECRET: &str = "fhirlock-dev-secret";
pub const PORTAL_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c002";
pub const PORTAL_SECRET: &str = "portal-dev-secret";

pub fn utc_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A release binary of this workspace (`make bench` builds them first).
pub fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    // FHIRLOCK_BENCH_BIN_DIR: another build of the binaries (only to try the harness out).
    let dir = std::env::var_os("FHIRLOCK_BENCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testenv::workspace_root().join("target/release"));
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} is missing: run `make bench` (it builds the release binaries)",
            p.display()
        );
    }
    Ok(p)
}

fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl only; the child dies with the bench.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

// ---- the control plane ----------------------------------------------------------------------------

pub struct Plane {
    plane: testenv::ControlPlane,
    tls: Option<(String, String)>,
}

impl Plane {
    pub fn start(_dir: &Path) -> anyhow::Result<Plane> {
        let plane = testenv::ControlPlane::start()?;
        let p = Plane { plane, tls: None };
        let crds = testenv::workspace_root().join("crds");
        p.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()])?;
        p.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/securedfhirendpoints.fhirlock.io",
        ])?;
        Ok(p)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.plane.kubeconfig_path()
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.plane.kubectl()?.args(args).output()?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn namespace(&self, ns: &str) -> anyhow::Result<()> {
        self.kubectl_ok(&["create", "namespace", ns]).map(|_| ())
    }

    /// A kubernetes.io/tls Secret with a fresh self-signed certificate, shared by the namespace's
    /// endpoints.
    pub fn tls_secret(&mut self, ns: &str, name: &str, dir: &Path) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["*.trust.nhs.uk".into()])?.self_signed(&key)?;
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        self.kubectl_ok(&[
            "create",
            "secret",
            "tls",
            name,
            "-n",
            ns,
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ])?;
        self.tls = Some((cert.pem(), key.serialize_pem()));
        Ok(())
    }

    pub fn tls_pair(&self) -> (String, String) {
        self.tls.clone().expect("tls_secret first")
    }

    /// How many endpoints have Ready True.
    pub fn ready_count(&self) -> anyhow::Result<usize> {
        let out = self.kubectl_ok(&[
            "get",
            "sfe",
            "-A",
            "-o",
            r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}"#,
        ])?;
        Ok(out.split_whitespace().filter(|s| *s == "True").count())
    }
}

// ---- the emulator -----------------------------------------------------------------------------------

/// Bucket sizes: (capacity, refill per second) for reads, writes, deletes.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    pub reads: (f64, f64),
    pub writes: (f64, f64),
    pub deletes: (f64, f64),
}

impl Throttle {
    /// ARM's documented token bucket (the emulator's defaults).
    pub fn azure() -> Throttle {
        Throttle {
            reads: (250.0, 25.0),
            writes: (200.0, 10.0),
            deletes: (200.0, 10.0),
        }
    }
    /// Out of the way.
    pub fn raised() -> Throttle {
        let big = (1_000_000.0, 100_000.0);
        Throttle {
            reads: big,
            writes: big,
            deletes: big,
        }
    }
    pub fn json(&self) -> Value {
        let b = |(c, r): (f64, f64)| json!({"capacity": c, "refillPerSecond": r});
        json!({"reads": b(self.reads), "writes": b(self.writes), "deletes": b(self.deletes)})
    }
}

pub struct Emulator {
    child: Child,
    data: PathBuf,
    pub arm_endpoint: String,
    pub authority_host: String,
    pub ca_path: PathBuf,
    ctl: reqwest::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Emulator {
    /// The development tenant and principals of `examples/arm-emulator-estate.yaml`, with `seed`.
    pub async fn start(
        dir: &Path,
        seed: Vec<Value>,
        time_scale: f64,
        throttle: Option<Throttle>,
    ) -> anyhow::Result<Emulator> {
        let example = testenv::workspace_root().join("examples/arm-emulator-estate.yaml");
        let mut cfg: Value = serde_yaml::from_str(&std::fs::read_to_string(example)?)?;
        cfg["seed"] = Value::Array(seed);
        if let Some(t) = throttle {
            cfg["throttle"] = t.json();
        }
        let cfg_path = dir.join("emulator.json");
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
        // On tmpfs when there is one: the emulator rewrites and fsyncs its whole state (every
        // estate) before acknowledging each write, which at 1,000 estates would measure the disk.
        let shm = Path::new("/dev/shm");
        let data = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("fhirlock-bench-azure-")
                .tempdir_in(shm)?
                .keep()
        } else {
            dir.join("azure")
        };
        let mut cmd = Command::new(release_bin("arm-emulator")?);
        cmd.args([
            "--addr",
            "127.0.0.1:0",
            "--time-scale",
            &time_scale.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&cfg_path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("emulator.log"))?);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await??;
        let ready: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "emulator ready line {line:?} (log: {})",
                dir.join("emulator.log").display()
            )
        })?;
        let ca_path = PathBuf::from(ready["ca_path"].as_str().unwrap_or_default());
        let ca = std::fs::read(&ca_path)?;
        let ctl = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
            .build()?;
        Ok(Emulator {
            child,
            data,
            arm_endpoint: ready["arm_endpoint"].as_str().unwrap_or_default().into(),
            authority_host: ready["authority_host"].as_str().unwrap_or_default().into(),
            ca_path,
            ctl,
        })
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FHIRLOCK_ARM_ENDPOINT", self.arm_endpoint.clone()),
            (
                "FHIRLOCK_ARM_AUDIENCE",
                "https://management.azure.com".into(),
            ),
            ("AZURE_AUTHORITY_HOST", self.authority_host.clone()),
            ("FHIRLOCK_CA_BUNDLE", self.ca_path.display().to_string()),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", OPERATOR_CLIENT.into()),
            ("AZURE_CLIENT_SECRET", OPERATOR_SECRET.into()),
        ]
    }

    pub fn arm_client(&self, client_id: &str, secret: &str) -> anyhow::Result<ArmClient> {
        let cloud = Cloud::custom(
            Url::parse(&self.arm_endpoint)?,
            Url::parse(&self.authority_host)?,
            "https://management.azure.com",
        );
        ArmClient::new(ArmConfig {
            cloud,
            credential: CredentialConfig::ClientSecret {
                tenant_id: TENANT.into(),
                client_id: client_id.into(),
                secret: secret.into(),
            },
            extra_ca_pem: Some(self.ca_path.clone()),
            user_agent: Some("fhirlock-bench".into()),
        })
    }

    pub async fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.ctl.request(
            reqwest::Method::from_bytes(method.as_bytes())?,
            format!("{}{path}", self.arm_endpoint),
        );
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.control("GET", "/_emulator/stats", None).await
    }

    pub async fn reset_stats(&self) -> anyhow::Result<()> {
        self.control("DELETE", "/_emulator/stats", None)
            .await
            .map(|_| ())
    }
}

// ---- the operator -----------------------------------------------------------------------------------

pub struct Operator {
    child: Child,
    pub log: PathBuf,
    metrics_port: u16,
    http: reqwest::Client,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/metrics` says about reconciles.
#[derive(Debug, Default, Clone)]
pub struct Reconciles {
    pub by_result: BTreeMap<String, u64>,
    pub deferred: u64,
}

impl Reconciles {
    pub fn total(&self) -> u64 {
        self.by_result.values().sum()
    }
}

/// `(labels, value)` of every sample of `name`.
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
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

impl Operator {
    pub async fn start(
        plane: &Plane,
        emu: &Emulator,
        tenancy: &Path,
        flags: &[&str],
        dir: &Path,
    ) -> anyhow::Result<Operator> {
        let port = testenv::free_port()?;
        let log = dir.join(format!("operator-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(release_bin("fhirlock")?);
        cmd.arg("run")
            .arg("--config")
            .arg(tenancy)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(flags)
            .envs(emu.env())
            .env("KUBECONFIG", plane.kubeconfig())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        die_with_parent(&mut cmd);
        let child = cmd.spawn()?;
        let op = Operator {
            child,
            log,
            metrics_port: port,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = op
                .http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(op);
            }
            if Instant::now() > deadline {
                bail!("the operator is not ready; log: {}", op.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}/stat", self.pid())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
                .unwrap_or_default()
                .contains(") Z ")
    }

    /// user + system CPU seconds of the operator process so far.
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

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await?
            .text()
            .await?)
    }

    pub async fn reconciles(&self) -> anyhow::Result<Reconciles> {
        let text = self.metrics().await?;
        let mut r = Reconciles::default();
        for (labels, v) in samples(&text, "fhirlock_reconciles_total") {
            let result = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("result="))
                .unwrap_or("")
                .trim_matches('"')
                .to_owned();
            *r.by_result.entry(result).or_default() += v as u64;
        }
        r.deferred = samples(&text, "fhirlock_arm_deferred_writes_total")
            .iter()
            .map(|(_, v)| *v as u64)
            .sum();
        Ok(r)
    }

    /// ARM requests the operator counted with this status (`fhirlock_arm_requests_total`).
    pub async fn arm_requests_with_status(&self, status: &str) -> anyhow::Result<u64> {
        let text = self.metrics().await?;
        let needle = format!("status=\"{status}\"");
        Ok(samples(&text, "fhirlock_arm_requests_total")
            .iter()
            .filter(|(l, _)| l.contains(&needle))
            .map(|(_, v)| *v as u64)
            .sum())
    }
}
