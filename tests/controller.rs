//! The operator end to end: a real kube-apiserver and etcd, the emulator, `fhirlock run` as a
//! separate process, and kubectl. Tests run one at a time: each has its own emulator and operator,
//! and an operator acts on every namespace it sees.

#[path = "controller/convergence.rs"]
mod convergence;
#[path = "controller/deployment.rs"]
mod deployment;
#[path = "controller/host_header.rs"]
mod host_header;
#[path = "controller/lifecycle.rs"]
mod lifecycle;
#[path = "controller/observability.rs"]
mod observability;
#[path = "controller/sharing.rs"]
mod sharing;
#[path = "controller/tenancy.rs"]
mod tenancy;

use std::sync::Mutex;
use std::time::Duration;

use fhirlock_testkit::Throttle;
use fhirlock_testkit::emulator::requests;
use fhirlock_tests::emulator::{
    Emulator, OPERATOR_OBJECT, OUTSIDER_CLIENT, OUTSIDER_OBJECT, OUTSIDER_SECRET, SUBSCRIPTION,
    TENANT, cosmos, emulator, gateway, site, vnet,
};
use fhirlock_tests::operator::{
    Operator, apply_endpoint, condition, is_ready, operator, operator_with_env, tenancy,
    tls_secret, wait_for,
};
use fhirlock_tests::{kubectl, kubectl_ok, namespace, plane, text};
use serde_json::{Value, json};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const NET: &str = "2025-01-01";
const WEB: &str = "2024-11-01";
const READY: Duration = Duration::from_secs(120);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One test's endpoint: its namespace, its own emulator with the wide-open estate, an operator
/// for that namespace, the TLS Secret, and `examples/fhir-endpoint.yaml` applied.
struct World {
    ns: String,
    emu: Emulator,
    op: Operator,
    name: String,
}

fn world(ns: &str, time_scale: f64, flags: &[&str], edits: &[(&str, Value)]) -> World {
    let ns = namespace(ns);
    let emu = emulator("arm-emulator-estate.yaml", time_scale);
    let op = operator(&emu, &tenancy(emu.dir(), &[&ns], None), None, flags);
    let name = endpoint_in(&emu, &ns, edits);
    World { ns, emu, op, name }
}

/// The TLS Secret and `examples/fhir-endpoint.yaml` (with `edits`) in `ns`; the endpoint's name.
fn endpoint_in(emu: &Emulator, ns: &str, edits: &[(&str, Value)]) -> String {
    tls_secret(ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    apply_endpoint(ns, emu.dir(), edits)
}

fn events(ns: &str) -> String {
    kubectl_ok(&[
        "get",
        "events",
        "-n",
        ns,
        "-o",
        "custom-columns=REASON:.reason,NOTE:.note,MESSAGE:.message",
        "--sort-by=.metadata.creationTimestamp",
    ])
}

/// Requests the emulator counted for `principal` that match `keep` (on the stats entry).
fn requests_by(emu: &Emulator, principal: &str, keep: impl Fn(&Value) -> bool) -> u64 {
    let stats = rt().block_on(emu.control.stats()).unwrap();
    requests(&stats, |e| e["principal"] == principal && keep(e))
}

fn operator_writes(emu: &Emulator) -> u64 {
    rt().block_on(emu.control.operator_requests()).unwrap().1
}

fn gateway_puts(emu: &Emulator, principal: &str) -> u64 {
    requests_by(emu, principal, |e| {
        e["method"] == "PUT" && e["resourceType"] == "Microsoft.Network/applicationGateways"
    })
}

fn writes_by(emu: &Emulator, principal: &str) -> u64 {
    requests_by(emu, principal, |e| e["method"] != "GET")
}
