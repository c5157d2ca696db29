//! `arm-emulator` as users and the demo run it: a separate process, its ready line, the
//! environment `fhirlock` needs to use it, ARM clients for its principals, and its control API
//! (`/_emulator/...`, see docs/emulator.md).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use fhirlock_arm::{ArmClient, ArmConfig, Cloud, CredentialConfig, Url};
use serde_json::{Value, json};
use testenv::process::{Process, Spec};

use crate::{OPERATOR_CLIENT, OPERATOR_SECRET, PORTAL_CLIENT, PORTAL_SECRET, TENANT};

const ARM_AUDIENCE: &str = "https://management.azure.com";

/// The emulator's ready line: where it listens and what it trusts.
#[derive(Clone, Debug)]
pub struct Ready {
    /// `https://127.0.0.1:<port>`, no trailing slash.
    pub arm_endpoint: String,
    pub authority_host: String,
    /// The CA that signed its serving certificate.
    pub ca_path: PathBuf,
    pub tenant_id: String,
    pub subscription_id: String,
}

impl Ready {
    pub fn parse(line: &str) -> anyhow::Result<Ready> {
        let v: Value = serde_json::from_str(line)?;
        if v["ready"] != true {
            bail!("not a ready line: {line}");
        }
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {k} in the ready line {line}"))
        };
        Ok(Ready {
            arm_endpoint: field("arm_endpoint")?,
            authority_host: field("authority_host")?,
            ca_path: field("ca_path")?.into(),
            tenant_id: field("tenant_id")?,
            subscription_id: field("subscription_id")?,
        })
    }

    pub fn cloud(&self) -> anyhow::Result<Cloud> {
        Ok(Cloud::custom(
            Url::parse(&self.arm_endpoint)?,
            Url::parse(&self.authority_host)?,
            ARM_AUDIENCE,
        ))
    }

    /// A client configuration that trusts the emulator's CA.
    pub fn arm_config(
        &self,
        credential: CredentialConfig,
        user_agent: &str,
    ) -> anyhow::Result<ArmConfig> {
        Ok(ArmConfig {
            cloud: self.cloud()?,
            credential,
            extra_ca_pem: Some(self.ca_path.clone()),
            user_agent: Some(user_agent.into()),
        })
    }

    pub fn secret_credential(&self, client_id: &str, secret: &str) -> CredentialConfig {
        CredentialConfig::ClientSecret {
            tenant_id: self.tenant_id.clone(),
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    /// An ARM client acting as the principal `client_id`.
    pub fn arm_client(
        &self,
        client_id: &str,
        secret: &str,
        user_agent: &str,
    ) -> anyhow::Result<ArmClient> {
        let config = self.arm_config(self.secret_credential(client_id, secret), user_agent)?;
        ArmClient::new(config)
    }
}

/// The emulator's control API.
pub struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    pub fn new(ready: &Ready) -> anyhow::Result<Control> {
        let ca = std::fs::read(&ready.ca_path)
            .with_context(|| format!("reading {}", ready.ca_path.display()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
            .build()?;
        Ok(Control {
            http,
            base: ready.arm_endpoint.trim_end_matches('/').to_owned(),
        })
    }

    /// `method path` with an optional JSON body; the answer as JSON (`null` when it has none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes())?,
            format!("{}{path}", self.base),
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

    /// Requests counted since the last reset, by principal, method, resource type and status.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.call("GET", "/_emulator/stats", None).await
    }

    pub async fn reset_stats(&self) -> anyhow::Result<()> {
        self.call("DELETE", "/_emulator/stats", None).await?;
        Ok(())
    }

    /// Requests by `principal`, by kind.
    pub async fn counts(&self, principal: &str) -> anyhow::Result<Counts> {
        Ok(Counts::of(&self.stats().await?, principal))
    }

    /// Requests by the operator's principal as `(reads, writes, deletes)`.
    pub async fn operator_requests(&self) -> anyhow::Result<(u64, u64, u64)> {
        let c = self.counts(crate::OPERATOR_OBJECT).await?;
        Ok((c.reads, c.writes, c.deletes))
    }

    /// Adds fault rules: one rule, or an array of them.
    pub async fn faults(&self, rules: Value) -> anyhow::Result<()> {
        self.call("POST", "/_emulator/faults", Some(rules)).await?;
        Ok(())
    }

    /// The fault rules not yet used up (`count` is what is left of each).
    pub async fn pending_faults(&self) -> anyhow::Result<Value> {
        let mut v = self.call("GET", "/_emulator/faults", None).await?;
        Ok(v["faults"].take())
    }

    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.call("DELETE", "/_emulator/faults", None).await?;
        Ok(())
    }

    /// The exposure oracle: what reaches each site and account, and from where.
    pub async fn exposure(&self) -> anyhow::Result<Value> {
        self.call("GET", "/_emulator/exposure", None).await
    }

    /// Its whole state, the operation log included.
    pub async fn state(&self) -> anyhow::Result<Value> {
        self.call("GET", "/_emulator/state", None).await
    }

    pub async fn set_throttle(&self, throttle: &Throttle) -> anyhow::Result<()> {
        self.call("PUT", "/_emulator/throttle", Some(throttle.json()))
            .await?;
        Ok(())
    }

    /// Grants `principal` the `actions` on `scope`.
    pub async fn assign_role(
        &self,
        principal: &str,
        scope: &str,
        actions: &[&str],
    ) -> anyhow::Result<()> {
        let body = json!({"principal": principal, "scope": scope, "actions": actions});
        self.call("POST", "/_emulator/role-assignments", Some(body))
            .await?;
        Ok(())
    }
}

/// Requests of one principal from `/_emulator/stats`, by kind.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    /// GETs of operation status URLs (resource types `…/operations`, `…/operationsStatus`, …).
    pub polls: u64,
    pub by_status: BTreeMap<String, u64>,
}

impl Counts {
    pub fn of(stats: &Value, principal: &str) -> Counts {
        let mut c = Counts::default();
        for e in entries(stats).filter(|e| e["principal"] == principal) {
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

    pub fn status(&self, s: u16) -> u64 {
        self.by_status.get(&s.to_string()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.reads + self.writes + self.deletes
    }
}

/// The entries of `/_emulator/stats`.
pub fn entries(stats: &Value) -> impl Iterator<Item = &Value> {
    stats["entries"].as_array().into_iter().flatten()
}

/// How many requests the stats count among the entries `keep` selects.
pub fn requests(stats: &Value, keep: impl Fn(&Value) -> bool) -> u64 {
    entries(stats)
        .filter(|e| keep(e))
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum()
}

/// ARM's token buckets, per subscription and principal: (capacity, refill per second).
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    pub reads: (f64, f64),
    pub writes: (f64, f64),
    pub deletes: (f64, f64),
}

impl Throttle {
    /// ARM's documented sizes (the emulator's defaults).
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

/// How to start an emulator.
pub struct EmulatorOptions {
    pub program: PathBuf,
    /// Its configuration: tenants, principals, role assignments and the seeded estate.
    pub config: PathBuf,
    /// Azure time per real second (0.01: a 300 s gateway takes 3 s).
    pub time_scale: f64,
    /// The directory for its log and the files of what runs against it (kept); a temporary one,
    /// removed on drop, when `None`.
    pub dir: Option<PathBuf>,
    /// Its data on tmpfs when there is one: it rewrites and fsyncs its whole state before
    /// acknowledging each write, which with many estates would measure the disk.
    pub data_on_tmpfs: bool,
    /// When dropped, hold every write body the operator's principal sent to Microsoft's own
    /// models (`tests/emulator-conformance/check-bodies.sh`), and panic on any violation.
    pub check_bodies_on_drop: bool,
}

/// A running `arm-emulator`. Dropped, it is killed and its temporary files removed.
pub struct Emulator {
    process: Process,
    /// Azure time per real second, as started.
    time_scale: f64,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    data: PathBuf,
    remove_data: bool,
    check_bodies: bool,
    pub ready: Ready,
    pub control: Control,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Not while a test is already failing: a second panic would abort the test binary.
        let verdict = (self.check_bodies && !std::thread::panicking()).then(|| self.check_bodies());
        self.process.kill();
        if self.remove_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
        if let Some(Err(e)) = verdict {
            panic!("{e:#}");
        }
    }
}

impl Emulator {
    /// Starts it on a free loopback port and waits for its ready line.
    pub fn start(o: EmulatorOptions) -> anyhow::Result<Emulator> {
        let (temp, dir) = match o.dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir()?;
                let d = t.path().to_owned();
                (Some(t), d)
            }
        };
        let shm = Path::new("/dev/shm");
        let (data, remove_data) = if o.data_on_tmpfs && shm.is_dir() {
            let d = tempfile::Builder::new()
                .prefix("fhirlock-bench-azure-")
                .tempdir_in(shm)?
                .keep();
            (d, true)
        } else if o.data_on_tmpfs {
            (dir.join("azure"), true)
        } else {
            (dir.clone(), false)
        };
        let spec = Spec::new(o.program, dir.join("emulator.log"))
            .args(["--addr", "127.0.0.1:0", "--time-scale"])
            .args([o.time_scale.to_string()])
            .args(["--data-dir".into(), data.display().to_string()])
            .args(["--config".into(), o.config.display().to_string()])
            .pipe_stdout();
        let mut process = Process::start(spec)?;
        let ready = read_ready(&mut process)?;
        let control = Control::new(&ready)?;
        Ok(Emulator {
            process,
            time_scale: o.time_scale,
            dir,
            _temp: temp,
            data,
            remove_data,
            check_bodies: o.check_bodies_on_drop,
            ready,
            control,
        })
    }

    /// Every write body the operator's principal sent, held to Microsoft's models (read-only
    /// fields, unknown properties, enums, required fields, constraints, ARM's tag rules) by
    /// `tests/emulator-conformance/check-bodies.sh`, from the emulator's request log.
    pub fn check_bodies(&self) -> anyhow::Result<()> {
        let script = testenv::workspace_root().join("tests/emulator-conformance/check-bodies.sh");
        let out = std::process::Command::new(&script)
            .args(["--url", &self.ready.arm_endpoint, "--ca"])
            .arg(&self.ready.ca_path)
            .args(["--principal", crate::OPERATOR_OBJECT])
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        match out.status.code() {
            Some(0) => Ok(()),
            code => bail!(
                "the bodies fhirlock sent break Microsoft's models (check-bodies exit {code:?}):\n{}{}",
                crate::text(&out.stdout),
                crate::text(&out.stderr)
            ),
        }
    }

    /// Kills it (SIGKILL) and starts it again on the same address with the same data directory:
    /// accepted writes and running operations survive; counters and faults do not.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let addr = self
            .ready
            .arm_endpoint
            .trim_start_matches("https://")
            .to_owned();
        let mut spec = self.process.spec().clone();
        let at = spec.args.iter().position(|a| a == "--addr").unwrap_or(0);
        spec.args[at + 1] = addr;
        self.process.kill();
        self.process = Process::start(spec)?;
        let ready = read_ready(&mut self.process)?;
        if ready.arm_endpoint != self.ready.arm_endpoint {
            bail!(
                "restarted on {} instead of {}",
                ready.arm_endpoint,
                self.ready.arm_endpoint
            );
        }
        Ok(())
    }

    /// Its working directory: its log, and the files and logs of what runs against it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An ARM client acting as a person in the portal.
    pub fn portal(&self) -> anyhow::Result<ArmClient> {
        self.ready
            .arm_client(PORTAL_CLIENT, PORTAL_SECRET, "portal")
    }

    /// The environment under which `fhirlock` acts as the operator's principal. It also scales
    /// fhirlock's wait for a Cosmos DB firewall change to the emulator's time: the emulator's
    /// default `cosmosFirewallPropagationSeconds` (900 s of Azure time), plus a real second.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "FHIRLOCK_COSMOS_FIREWALL_PROPAGATION_SECONDS",
                format!("{}", (900.0 * self.time_scale).ceil() + 1.0),
            ),
            ("FHIRLOCK_ARM_ENDPOINT", self.ready.arm_endpoint.clone()),
            ("FHIRLOCK_ARM_AUDIENCE", ARM_AUDIENCE.into()),
            ("AZURE_AUTHORITY_HOST", self.ready.authority_host.clone()),
            (
                "FHIRLOCK_CA_BUNDLE",
                self.ready.ca_path.display().to_string(),
            ),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", OPERATOR_CLIENT.into()),
            ("AZURE_CLIENT_SECRET", OPERATOR_SECRET.into()),
        ]
    }
}

/// Reads the first line of its stdout (then closes it).
fn read_ready(process: &mut Process) -> anyhow::Result<Ready> {
    let stdout = process.take_stdout().context("stdout is not piped")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    Ready::parse(&line).with_context(|| {
        format!(
            "emulator ready line {line:?} (log: {})",
            process.spec().log.display()
        )
    })
}
