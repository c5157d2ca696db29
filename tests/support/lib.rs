//! What the end-to-end tests share on top of the harness in `fhirlock-testkit`: the shared
//! control plane with the CRDs installed, kubectl helpers that panic with kubectl's output, and
//! the emulator and operator with the tests' defaults (debug builds).

pub mod emulator;
pub mod metrics;
pub mod operator;

use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use fhirlock_testkit::Cluster;
pub use fhirlock_testkit::text;

/// The shared control plane with the CRDs from `crds/` installed and Established.
pub fn plane() -> &'static testenv::ControlPlane {
    static READY: OnceLock<()> = OnceLock::new();
    let plane = testenv::shared();
    READY.get_or_init(|| must(Cluster::new(plane).install_crds()));
    plane
}

/// Unwraps a harness result, panicking with the whole error chain.
pub fn must<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

fn cluster() -> Cluster<'static> {
    Cluster::new(testenv::shared())
}

/// Waits until the CRD `name` is Established (see [`Cluster::wait_established`]).
pub fn wait_established(name: &str) {
    must(cluster().wait_established(name));
}

/// Runs the pinned kubectl against the shared control plane.
pub fn kubectl(args: &[&str]) -> Output {
    must(cluster().kubectl(args))
}

/// Runs kubectl and panics with its output unless it succeeds; returns stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    must(cluster().ok(args))
}

/// `kubectl apply -f <file with this object>`.
pub fn apply_object(object: &serde_json::Value, dir: &Path) -> Output {
    must(cluster().apply(object, dir))
}

/// Creates a namespace for one test (idempotent).
pub fn namespace(name: &str) -> String {
    must(Cluster::new(plane()).namespace(name))
}
