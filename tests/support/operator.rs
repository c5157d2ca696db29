//! `fhirlock run` as a separate process against the shared control plane and an emulator.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::emulator::{Emulator, SUBSCRIPTION, bin};
use crate::{kubectl, kubectl_ok, plane, text};

pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
    pub metrics_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tenancy file allowing `namespaces` the estate's two resource groups, as the operator's own
/// identity (unless `identity` is given).
pub fn tenancy(dir: &Path, namespaces: &[&str], identity: Option<Value>) -> PathBuf {
    let scopes = json!([
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir"),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/hscn-net"),
    ]);
    let tenants: Vec<Value> = namespaces
        .iter()
        .map(|ns| json!({"namespace": ns, "scopes": scopes, "identity": identity.clone().unwrap_or(json!({"operator": {}}))}))
        .collect();
    let path = dir.join("tenancy.yaml");
    std::fs::write(
        &path,
        serde_yaml::to_string(&json!({"tenants": tenants})).unwrap(),
    )
    .unwrap();
    path
}

impl Operator {
    /// Starts `fhirlock run` with the admin kubeconfig (or `kubeconfig`), the emulator's
    /// environment and `extra` flags.
    pub fn start(
        emu: &Emulator,
        config: &Path,
        kubeconfig: Option<&Path>,
        extra: &[&str],
    ) -> Operator {
        Self::start_full(emu, config, kubeconfig, extra, &[])
    }

    /// As [`Operator::start`], with environment variables overridden (another Azure identity).
    pub fn start_with_env(
        emu: &Emulator,
        config: &Path,
        extra: &[&str],
        overrides: &[(&str, &str)],
    ) -> Operator {
        Self::start_full(emu, config, None, extra, overrides)
    }

    fn start_full(
        emu: &Emulator,
        config: &Path,
        kubeconfig: Option<&Path>,
        extra: &[&str],
        overrides: &[(&str, &str)],
    ) -> Operator {
        let plane = plane();
        let port = testenv::free_port().unwrap();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{port}"),
            "--log-format".into(),
            "text".into(),
        ];
        if !extra.contains(&"--resync-seconds") {
            args.extend(["--resync-seconds".into(), "3".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut env: Vec<(String, String)> = emu
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.push((
            "KUBECONFIG".into(),
            kubeconfig
                .map(Path::to_path_buf)
                .unwrap_or_else(|| plane.kubeconfig_path())
                .display()
                .to_string(),
        ));
        env.push(("RUST_LOG".into(), "info,fhirlock=debug".into()));
        for (k, v) in overrides {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut op = Operator {
            child: None,
            log: emu.dir().join(format!("operator-{port}.log")),
            metrics_port: port,
            args,
            env,
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin("fhirlock"));
        cmd.args(&self.args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl only; the operator dies with the test binary.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// SIGKILL: no chance to clean up or step down.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful shutdown.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// The HTTP status of `/readyz` (what the Deployment's readiness probe asks).
    pub fn readyz(&self) -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{}/readyz", self.metrics_port),
            ])
            .output()
            .unwrap();
        text(&out.stdout).trim().parse().unwrap_or(0)
    }
}

/// The endpoint as the apiserver has it.
pub fn get(ns: &str, name: &str) -> Value {
    serde_json::from_str(&kubectl_ok(&["get", "sfe", name, "-n", ns, "-o", "json"])).unwrap()
}

pub fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// Polls until `pred` holds on the endpoint, or panics with its status and the operator's log.
pub fn wait_for(
    op: &Operator,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let out = kubectl(&["get", "sfe", name, "-n", ns, "-o", "json"]);
        if out.status.success() {
            let obj: Value = serde_json::from_slice(&out.stdout).unwrap();
            if pred(&obj) {
                return obj;
            }
            if Instant::now() > deadline {
                let log = op.logs();
                if let Ok(keep) = std::env::var("FHIRLOCK_TEST_KEEP_LOG") {
                    let _ = std::fs::write(keep, &log);
                }
                let tail: Vec<_> = log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!(
                    "timed out waiting for {what}; status: {}\noperator log tail:\n{}",
                    serde_json::to_string_pretty(&obj["status"]).unwrap(),
                    tail.join("\n")
                );
            }
        } else if Instant::now() > deadline {
            panic!("timed out waiting for {what}: {}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
        && obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
}

/// A kubernetes.io/tls Secret with a fresh self-signed certificate for `host`.
pub fn tls_secret(ns: &str, name: &str, host: &str, dir: &Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let yaml = kubectl_ok(&[
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
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let file = dir.join(format!("{name}-secret.yaml"));
    std::fs::write(&file, yaml).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

/// `examples/fhir-endpoint.yaml` in `ns`, with edits, applied with kubectl.
pub fn apply_endpoint(ns: &str, dir: &Path, edits: &[(&str, Value)]) -> String {
    let mut obj: Value = serde_yaml::from_str(
        &std::fs::read_to_string(testenv::workspace_root().join("examples/fhir-endpoint.yaml"))
            .unwrap(),
    )
    .unwrap();
    obj["metadata"]["namespace"] = json!(ns);
    for (ptr, v) in edits {
        *obj.pointer_mut(ptr).unwrap_or_else(|| panic!("no {ptr}")) = v.clone();
    }
    let file = dir.join(format!("sfe-{ns}.yaml"));
    std::fs::write(&file, serde_yaml::to_string(&obj).unwrap()).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    obj["metadata"]["name"].as_str().unwrap().to_owned()
}
