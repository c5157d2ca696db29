//! `fhirlock run` with the tests' defaults against the shared control plane, and waiting on
//! what it writes into a SecuredFhirEndpoint's status.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fhirlock_testkit::Cluster;
use fhirlock_testkit::operator::OperatorOptions;
pub use fhirlock_testkit::{Emulator, Operator};
use serde_json::{Value, json};

use crate::emulator::bin;
use crate::{kubectl, kubectl_ok, must, plane, text};

/// A tenancy file allowing `namespaces` the estate's two resource groups, as the operator's own
/// identity (unless `identity` is given).
pub fn tenancy(dir: &Path, namespaces: &[&str], identity: Option<Value>) -> PathBuf {
    must(fhirlock_testkit::tenancy(dir, namespaces, identity))
}

/// Starts `fhirlock run` with the admin kubeconfig (or `kubeconfig`), the emulator's
/// environment and `extra` flags.
pub fn operator(
    emu: &Emulator,
    config: &Path,
    kubeconfig: Option<&Path>,
    extra: &[&str],
) -> Operator {
    start(emu, config, kubeconfig, extra, &[])
}

/// As [`operator`], with environment variables overridden (another Azure identity).
pub fn operator_with_env(
    emu: &Emulator,
    config: &Path,
    extra: &[&str],
    overrides: &[(&str, &str)],
) -> Operator {
    start(emu, config, None, extra, overrides)
}

/// Text logs with fhirlock's debug lines, and a resync of 3 s unless `extra` sets one, so that
/// tests see drift corrected quickly.
fn start(
    emu: &Emulator,
    config: &Path,
    kubeconfig: Option<&Path>,
    extra: &[&str],
    overrides: &[(&str, &str)],
) -> Operator {
    let admin = plane().kubeconfig_path();
    let mut args: Vec<String> = vec!["--log-format".into(), "text".into()];
    if !extra.contains(&"--resync-seconds") {
        args.extend(["--resync-seconds".into(), "3".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut env = vec![("RUST_LOG".to_owned(), "info,fhirlock=debug".to_owned())];
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    must(Operator::start(
        emu,
        OperatorOptions {
            program: bin("fhirlock"),
            config,
            kubeconfig: kubeconfig.unwrap_or(&admin),
            args,
            env,
        },
    ))
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
                panic!(
                    "timed out waiting for {what}; status: {}\noperator log tail:\n{}",
                    serde_json::to_string_pretty(&obj["status"]).unwrap(),
                    tail(&log, 40)
                );
            }
        } else if Instant::now() > deadline {
            panic!("timed out waiting for {what}: {}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

pub fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
        && obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
}

/// A kubernetes.io/tls Secret with a fresh self-signed certificate for `host`.
pub fn tls_secret(ns: &str, name: &str, host: &str, dir: &Path) {
    must(Cluster::new(plane()).tls_secret(ns, name, host, dir));
}

/// `examples/fhir-endpoint.yaml` in `ns`, with edits, applied with kubectl.
pub fn apply_endpoint(ns: &str, dir: &Path, edits: &[(&str, Value)]) -> String {
    let mut obj = must(fhirlock_testkit::example("fhir-endpoint.yaml"));
    obj["metadata"]["namespace"] = json!(ns);
    for (ptr, v) in edits {
        *obj.pointer_mut(ptr).unwrap_or_else(|| panic!("no {ptr}")) = v.clone();
    }
    let file = dir.join(format!("sfe-{ns}.yaml"));
    std::fs::write(&file, serde_yaml::to_string(&obj).unwrap()).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    obj["metadata"]["name"].as_str().unwrap().to_owned()
}
