//! kubectl against one [`ControlPlane`]: the CRDs, namespaces, objects, TLS Secrets and
//! SecuredFhirEndpoints a test or benchmark needs.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;
use testenv::ControlPlane;

use crate::text;

pub const CRD: &str = "securedfhirendpoints.fhirlock.io";

/// The pinned kubectl against one control plane.
#[derive(Clone, Copy)]
pub struct Cluster<'a> {
    pub plane: &'a ControlPlane,
    retry: Duration,
}

impl<'a> Cluster<'a> {
    pub fn new(plane: &'a ControlPlane) -> Cluster<'a> {
        Cluster {
            plane,
            retry: Duration::ZERO,
        }
    }

    /// [`Cluster::ok`] retries a failing kubectl for up to `retry` (while the control plane
    /// restarts).
    pub fn retrying(self, retry: Duration) -> Cluster<'a> {
        Cluster { retry, ..self }
    }

    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.plane.kubectl()?.args(args).output()?)
    }

    /// Its stdout, or an error with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let deadline = Instant::now() + self.retry;
        loop {
            let out = self.kubectl(args)?;
            if out.status.success() {
                return Ok(text(&out.stdout));
            }
            if Instant::now() >= deadline {
                bail!(
                    "kubectl {args:?} failed:\n{}{}",
                    text(&out.stdout),
                    text(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the CRD `name` is Established. `kubectl wait` fails at once, rather than
    /// waiting, while a new CRD has no status conditions yet ("<nil> is of the type <nil>"),
    /// which a busy apiserver shows for a moment: so it is retried for up to a minute.
    pub fn wait_established(&self, name: &str) -> anyhow::Result<()> {
        let crd = format!("crd/{name}");
        let args = ["wait", "--for=condition=Established", "--timeout=60s", &crd];
        Cluster::new(self.plane)
            .retrying(Duration::from_secs(60))
            .ok(&args)
            .map(drop)
    }

    /// The CRDs from `crds/`, Established, and kubectl's discovery cache refreshed (it
    /// predates them, as a user's would).
    pub fn install_crds(&self) -> anyhow::Result<()> {
        let crds = testenv::workspace_root().join("crds");
        self.ok(&["apply", "-f", &crds.display().to_string()])?;
        self.wait_established(CRD)?;
        self.ok(&["api-resources", "--api-group=fhirlock.io"])?;
        Ok(())
    }

    /// Creates a namespace unless it exists.
    pub fn namespace(&self, name: &str) -> anyhow::Result<String> {
        let out = self.kubectl(&["create", "namespace", name])?;
        let err = text(&out.stderr);
        if !out.status.success() && !err.contains("AlreadyExists") {
            bail!("creating namespace {name}: {err}");
        }
        Ok(name.to_owned())
    }

    /// `kubectl apply -f <file with this object>`, written into `dir`; its output, whether it
    /// succeeded or not.
    pub fn apply(&self, object: &Value, dir: &Path) -> anyhow::Result<Output> {
        let file = object_file(object, dir)?;
        self.kubectl(&["apply", "-f", &file])
    }

    /// As [`Cluster::apply`], failing unless kubectl succeeds.
    pub fn apply_ok(&self, object: &Value, dir: &Path) -> anyhow::Result<String> {
        let file = object_file(object, dir)?;
        self.ok(&["apply", "-f", &file])
    }

    /// A kubernetes.io/tls Secret with a fresh self-signed certificate for `host`, applied (so it
    /// replaces an earlier one, as cert-manager renewing it would). Its PEM files go into `dir`.
    /// Returns (certificate, key).
    pub fn tls_secret(
        &self,
        ns: &str,
        name: &str,
        host: &str,
        dir: &Path,
    ) -> anyhow::Result<(String, String)> {
        let (cert, key) = testenv::self_signed(host)?;
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, &cert)?;
        std::fs::write(&k, &key)?;
        let (c, k) = (c.display().to_string(), k.display().to_string());
        let yaml = self.ok(&[
            "create",
            "secret",
            "tls",
            name,
            "-n",
            ns,
            "--cert",
            &c,
            "--key",
            &k,
            "--dry-run=client",
            "-o",
            "yaml",
        ])?;
        let file = dir.join(format!("{name}-secret.yaml"));
        std::fs::write(&file, yaml)?;
        self.ok(&["apply", "-f", &file.display().to_string()])?;
        Ok((cert, key))
    }

    /// The SecuredFhirEndpoint, `None` when it does not exist or the apiserver does not answer.
    pub fn endpoint(&self, ns: &str, name: &str) -> Option<Value> {
        let out = self
            .kubectl(&["get", "sfe", name, "-n", ns, "-o", "json"])
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The apiserver says the SecuredFhirEndpoint does not exist.
    pub fn endpoint_gone(&self, ns: &str, name: &str) -> bool {
        self.kubectl(&["get", "sfe", name, "-n", ns])
            .is_ok_and(|out| !out.status.success() && text(&out.stderr).contains("NotFound"))
    }
}

/// Writes `object` as YAML to `<dir>/<kind>-<name>.yaml`; returns the path.
fn object_file(object: &Value, dir: &Path) -> anyhow::Result<String> {
    let file = dir.join(format!(
        "{}-{}.yaml",
        object["kind"].as_str().unwrap_or("object"),
        object["metadata"]["name"].as_str().unwrap_or("object")
    ));
    std::fs::write(&file, serde_yaml::to_string(object)?)?;
    Ok(file.display().to_string())
}
