//! Resilience: the operator under the emulator's fault matrix, random SIGKILLs, and restarts of
//! kube-apiserver, etcd and the emulator. Every scenario must end converged, with no duplicate
//! Azure resource, no lost out-of-band field and a bounded request rate.
//!
//! The quick version runs in `make test`; `FHIRLOCK_SOAK=1` (`make soak`) runs the long one: every
//! fault kind in every phase, more trials, more endpoints, more kills, and each restart on its own.
//! Figures are printed as `resilience:` lines (`cargo test --test resilience -- --nocapture`).
//!
//! Tests run one at a time (an operator acts on every namespace it sees); each has its own
//! emulator and namespace. The restart test has its own control plane, so restarting it disturbs
//! no other test.

#[path = "resilience/estate.rs"]
mod estate;
#[path = "resilience/faults.rs"]
mod faults;
#[path = "resilience/kills.rs"]
mod kills;
#[path = "resilience/matrix.rs"]
mod matrix;
#[path = "resilience/portal.rs"]
mod portal;
#[path = "resilience/restarts.rs"]
mod restarts;
#[path = "resilience/scenario.rs"]
mod scenario;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use estate::{Ep, estate_config};
use faults::{KINDS, Kind, Phase};
use fhirlock_arm::{ArmClient, ArmError, OperationStatus, WriteOutcome};
use fhirlock_testkit::emulator::requests;
use fhirlock_testkit::{Cluster, PORTAL_OBJECT, Rng};
use fhirlock_tests::emulator::{Emulator, emulator, rg, vnet};
use fhirlock_tests::operator::{Operator, operator, tail, tenancy};
use fhirlock_tests::plane;
use portal::Portal;
use scenario::Scenario;
use serde_json::{Value, json};
use testenv::ControlPlane;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn soak() -> bool {
    std::env::var("FHIRLOCK_SOAK").is_ok_and(|v| v == "1")
}

const NET: &str = "2025-01-01";
const WEB: &str = "2024-11-01";
const COSMOS: &str = "2024-11-15";
/// A hot loop breaks this; a healthy operator (7 reads per resync of 3 s, polls at the
/// operation's Retry-After, backoff on errors) stays well under it.
const MAX_PER_MINUTE_PER_ENDPOINT: f64 = 600.0;

/// The worst requests-per-minute-per-endpoint seen in this process, for the report.
static WORST_RPM: Mutex<f64> = Mutex::new(0.0);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Ready for the current generation, with no operation left in flight.
fn is_ready(obj: &Value) -> bool {
    fhirlock_tests::operator::is_ready(obj)
        && obj["status"]["pendingOperations"]
            .as_array()
            .is_none_or(|p| p.is_empty())
}
