//! Helpers shared by the tests against the real control plane and the emulator.

pub mod emulator;
pub mod operator;

use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

/// The shared control plane with the CRDs from `crds/` installed and Established.
pub fn plane() -> &'static testenv::ControlPlane {
    static READY: OnceLock<()> = OnceLock::new();
    let plane = testenv::shared();
    READY.get_or_init(|| {
        let crds = testenv::workspace_root().join("crds");
        kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
        wait_established("securedfhirendpoints.fhirlock.io");
        // Refresh kubectl's discovery cache, which predates the CRD (as a user's would).
        kubectl_ok(&["api-resources", "--api-group=fhirlock.io"]);
    });
    plane
}

/// Waits until the CRD `name` is Established. `kubectl wait` fails at once, rather than waiting,
/// while a new CRD has no status conditions yet ("<nil> is of the type <nil>"), which a busy
/// apiserver shows for a moment: so it is retried for up to a minute.
pub fn wait_established(name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let args = [
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{name}"),
    ];
    loop {
        let out = kubectl(&args);
        if out.status.success() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl {args:?} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Runs the pinned kubectl against the shared control plane.
pub fn kubectl(args: &[&str]) -> Output {
    let mut cmd = testenv::shared().kubectl().expect("kubectl");
    cmd.args(args).output().expect("kubectl runs")
}

/// Runs kubectl and panics with its output unless it succeeds; returns stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `kubectl apply -f <file with this object>`.
pub fn apply_object(object: &serde_json::Value, dir: &Path) -> Output {
    let file = dir.join(format!(
        "{}.yaml",
        object["metadata"]["name"].as_str().unwrap_or("object")
    ));
    std::fs::write(&file, serde_yaml::to_string(object).unwrap()).unwrap();
    kubectl(&["apply", "-f", file.to_str().unwrap()])
}

/// Creates a namespace for one test (idempotent).
pub fn namespace(name: &str) -> String {
    let _ = plane();
    let out = kubectl(&["create", "namespace", name]);
    let err = text(&out.stderr);
    assert!(
        out.status.success() || err.contains("AlreadyExists"),
        "creating namespace {name}: {err}"
    );
    name.to_owned()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
