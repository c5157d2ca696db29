//! The harness shared by the end-to-end tests (`tests/`), the benchmarks (`bench/`) and the ARM
//! client's tests: `arm-emulator` and `fhirlock run` as separate processes, the emulator's control
//! API and request counts, and kubectl against a [`testenv`] control plane.
//!
//! A crate of its own, not part of `testenv`: it needs the ARM client (`fhirlock-arm`, and with it
//! azure_core) and reqwest, which the control plane and the demo's `testenv` binary do not. Every
//! child process is still spawned through testenv's guardian thread ([`testenv::process`]), so
//! none outlives the test or benchmark that started it.
//!
//! Errors are returned, not panicked on: a benchmark that fails is reported as not measured while
//! the others run; tests unwrap.

pub mod cluster;
pub mod emulator;
pub mod operator;
mod rng;

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::{Value, json};

pub use cluster::Cluster;
pub use emulator::{Control, Counts, Emulator, EmulatorOptions, Ready, Throttle};
pub use operator::{Operator, Reconciles};
pub use rng::Rng;

/// The principals of `examples/arm-emulator-estate.yaml`, the estate every test and benchmark
/// starts from.
pub const SUBSCRIPTION: &str = "6f1c2a52-0000-4000-8000-000000000001";
pub const TENANT: &str = "6f1c2a52-0000-4000-8000-00000000a001";
/// fhirlock's own identity.
pub const OPERATOR_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c001";
pub const OPERATOR_OBJECT: &str = "6f1c2a52-0000-4000-8000-00000000b001";
pub const OPERATOR_SECRET: &str = "fhirlock-dev-secret";
/// A person in the portal, changing things out of band.
pub const PORTAL_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c002";
pub const PORTAL_OBJECT: &str = "6f1c2a52-0000-4000-8000-00000000b002";
pub const PORTAL_SECRET: &str = "portal-dev-secret";
/// A principal with no role until a test gives it one.
pub const OUTSIDER_CLIENT: &str = "6f1c2a52-0000-4000-8000-00000000c003";
pub const OUTSIDER_OBJECT: &str = "6f1c2a52-0000-4000-8000-00000000b003";
pub const OUTSIDER_SECRET: &str = "outsider-dev-secret";

/// Where the workspace's binaries are, and what to say when one is missing.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
    hint: &'static str,
}

impl Binaries {
    /// The debug builds the tests run (`cargo test --workspace` builds them first).
    pub fn debug() -> Binaries {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| testenv::workspace_root().join("target"));
        Binaries {
            dir: target.join("debug"),
            hint: "run the tests with `cargo test --workspace` (or `make test`)",
        }
    }

    /// The release builds the benchmarks measure (`make bench` builds them first), or those in
    /// `FHIRLOCK_BENCH_BIN_DIR` (only to try the harness out).
    pub fn release() -> Binaries {
        let dir = std::env::var_os("FHIRLOCK_BENCH_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| testenv::workspace_root().join("target/release"));
        Binaries {
            dir,
            hint: "run `make bench` (it builds the release binaries)",
        }
    }

    pub fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        if !path.is_file() {
            bail!("{} is missing: {}", path.display(), self.hint);
        }
        Ok(path)
    }
}

/// A tenancy file (`fhirlock run --config`) allowing `namespaces` the estate's two resource
/// groups, as the operator's own identity unless `identity` is given.
pub fn tenancy(
    dir: &Path,
    namespaces: &[&str],
    identity: Option<Value>,
) -> anyhow::Result<PathBuf> {
    let scopes = json!([
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir"),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/hscn-net"),
    ]);
    let identity = identity.unwrap_or(json!({"operator": {}}));
    let tenants: Vec<Value> = namespaces
        .iter()
        .map(|ns| json!({"namespace": ns, "scopes": scopes, "identity": identity}))
        .collect();
    let path = dir.join("tenancy.yaml");
    std::fs::write(&path, serde_yaml::to_string(&json!({"tenants": tenants}))?)?;
    Ok(path)
}

/// `examples/<name>` parsed (the first document).
pub fn example(name: &str) -> anyhow::Result<Value> {
    let path = testenv::workspace_root().join("examples").join(name);
    Ok(serde_yaml::from_str(&std::fs::read_to_string(path)?)?)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
