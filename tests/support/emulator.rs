//! `arm-emulator` as a separate process, as users and the demo run it: its ready line, the
//! environment `fhirlock` needs to use it, its control API, and an out-of-band principal (a
//! person in the portal) making plain ARM calls with their own credentials.

use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fhirlock_arm::{ArmClient, ArmConfig, Cloud, CredentialConfig, Url};
use serde_json::Value;

pub const SUBSCRIPTION: &str = "6f1c2a52-0000-4000-8000-000000000001";
pub const TENANT: &str = "6f1c2a52-0000-4000-8000-00000000a001";
pub const OPERATOR_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c001";
pub const OPERATOR_OBJECT: &str = "6f1c2a52-0000-4000-8000-00000000b001";
pub const OPERATOR_SECRET: &str = "fhirlock-dev-secret";
pub const PORTAL_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c002";
pub const PORTAL_SECRET: &str = "portal-dev-secret";

/// A built binary of this workspace (`cargo test --workspace` builds them all first).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testenv::workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or `make test`)",
        path.display()
    );
    path
}

pub struct Emulator {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    time_scale: f64,
    pub arm_endpoint: String,
    pub authority_host: String,
    pub ca_path: PathBuf,
    ctl: reqwest::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts the emulator with `examples/<config>` on a free loopback port.
    pub fn start(config: &str, time_scale: f64) -> Emulator {
        let dir = tempfile::tempdir().unwrap();
        let config = testenv::workspace_root().join("examples").join(config);
        let (child, ready) = Self::spawn(dir.path(), &config, time_scale, "127.0.0.1:0");
        let ca_path = PathBuf::from(ready["ca_path"].as_str().unwrap());
        let ca = std::fs::read(&ca_path).unwrap();
        let ctl = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .build()
            .unwrap();
        Emulator {
            child,
            dir,
            config,
            time_scale,
            arm_endpoint: ready["arm_endpoint"].as_str().unwrap().to_owned(),
            authority_host: ready["authority_host"].as_str().unwrap().to_owned(),
            ca_path,
            ctl,
        }
    }

    /// Kills the emulator (SIGKILL) and starts it again on the same address with the same data
    /// directory: accepted writes and running operations survive; counters and faults do not.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let addr = self.arm_endpoint.trim_start_matches("https://").to_owned();
        let (child, ready) = Self::spawn(self.dir.path(), &self.config, self.time_scale, &addr);
        assert_eq!(ready["arm_endpoint"], self.arm_endpoint.as_str());
        self.child = child;
    }

    fn spawn(dir: &Path, config: &Path, time_scale: f64, addr: &str) -> (Child, Value) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("emulator.log"))
            .unwrap();
        let mut cmd = Command::new(bin("arm-emulator"));
        cmd.args(["--addr", addr, "--time-scale", &time_scale.to_string()])
            .arg("--data-dir")
            .arg(dir)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: prctl only; the emulator dies with the test binary.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("emulator ready line {line:?}: {e}"));
        (child, ready)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment under which `fhirlock` acts as the operator's principal.
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

    /// An ARM client acting as a person in the portal.
    pub fn portal(&self) -> ArmClient {
        let cloud = Cloud::custom(
            Url::parse(&self.arm_endpoint).unwrap(),
            Url::parse(&self.authority_host).unwrap(),
            "https://management.azure.com",
        );
        ArmClient::new(ArmConfig {
            cloud,
            credential: CredentialConfig::ClientSecret {
                tenant_id: TENANT.into(),
                client_id: PORTAL_CLIENT.into(),
                secret: PORTAL_SECRET.into(),
            },
            extra_ca_pem: Some(self.ca_path.clone()),
            user_agent: Some("portal".into()),
        })
        .unwrap()
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .ctl
            .request(method, format!("{}{path}", self.arm_endpoint));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn stats(&self) -> Value {
        self.control(reqwest::Method::GET, "/_emulator/stats", None)
            .await
    }
    pub async fn reset_stats(&self) {
        self.control(reqwest::Method::DELETE, "/_emulator/stats", None)
            .await;
    }
    pub async fn faults(&self, rules: Value) {
        self.control(reqwest::Method::POST, "/_emulator/faults", Some(rules))
            .await;
    }
    /// The fault rules not yet used up (`count` is what is left of each).
    pub async fn pending_faults(&self) -> Value {
        let mut v = self
            .control(reqwest::Method::GET, "/_emulator/faults", None)
            .await;
        v["faults"].take()
    }
    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/_emulator/faults", None)
            .await;
    }
    pub async fn exposure(&self) -> Value {
        self.control(reqwest::Method::GET, "/_emulator/exposure", None)
            .await
    }

    /// Requests by the operator's principal as `(reads, writes, deletes)`.
    pub async fn operator_requests(&self) -> (u64, u64, u64) {
        let stats = self.stats().await;
        let mut counts = (0, 0, 0);
        for e in stats["entries"].as_array().unwrap() {
            if e["principal"] != OPERATOR_OBJECT {
                continue;
            }
            let n = e["count"].as_u64().unwrap();
            match e["method"].as_str().unwrap() {
                "GET" => counts.0 += n,
                "DELETE" => counts.2 += n,
                _ => counts.1 += n,
            }
        }
        counts
    }
}

/// Runs `fhirlock <args>` against the emulator; returns (exit code, stdout, stderr).
pub fn fhirlock(emu: &Emulator, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("fhirlock"))
        .args(args)
        .envs(emu.env())
        .current_dir(testenv::workspace_root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        crate::text(&out.stdout),
        crate::text(&out.stderr),
    )
}
