//! `make live-test` (issue 12): one end-to-end scenario for the emulator and for a real
//! subscription, through the same code, so the real-Azure path cannot rot. A throwaway resource
//! group with a unique name (tagged for the sweeper); a wide-open estate in it (VNet, App Service
//! plan and site, serverless Cosmos DB); a SecuredFhirEndpoint with `deletionPolicy: Delete`
//! made Ready by `fhirlock run`; three back doors planted by another principal and seen closed;
//! the endpoint deleted and nothing of fhirlock's left; the group deleted, also when the run
//! fails (a guard). docs/operations.md, "Running the live test against a real subscription".
//!
//! In `make test` the emulator variant runs; the Azure one says it is skipped unless
//! `FHIRLOCK_LIVE_AZURE=1` (`make live-test` sets it when `AZURE_SUBSCRIPTION_ID` is), and then
//! fails at once if an `AZURE_*` variable it needs is missing.

#[path = "live/estate.rs"]
mod estate;
#[path = "live/scenario.rs"]
mod scenario;
#[path = "live/target.rs"]
mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use estate::{Estate, HOST};
use fhirlock_arm::{ArmClient, ArmConfig, Cloud, CredentialConfig, OperationStatus, WriteOutcome};
use fhirlock_core::observed::api_version::{COSMOS, NETWORK as NET, WEB};
use fhirlock_testkit::operator::OperatorOptions;
use fhirlock_testkit::{Cluster, EmulatorOptions, PORTAL_CLIENT, PORTAL_OBJECT, PORTAL_SECRET};
use fhirlock_tests::emulator::{Emulator, SUBSCRIPTION, bin};
use fhirlock_tests::operator::{Operator, is_ready, tail, wait_for};
use fhirlock_tests::{kubectl_ok, must, namespace, plane, text};
use serde_json::{Value, json};
use target::{GroupGuard, RESOURCES_API, Target, read, sweep, unique_name, write};
use tokio::runtime::Runtime;

fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn live_scenario_on_the_emulator() {
    scenario::run(Target::emulator());
}

#[test]
fn live_scenario_on_azure() {
    if !target::azure_wanted() {
        eprintln!(
            "live_scenario_on_azure: skipped: FHIRLOCK_LIVE_AZURE=1 is not set (make live-test sets it when AZURE_SUBSCRIPTION_ID is)"
        );
        return;
    }
    scenario::run(Target::azure_from_env().unwrap_or_else(|why| panic!("live-test: {why}")));
}

/// The sweeper, on the emulator: a tagged group older than the cut-off goes; a younger one and
/// an untagged old one stay.
#[test]
fn live_sweep_deletes_only_old_run_groups_on_the_emulator() {
    let t = Target::emulator();
    let rt = rt();
    let hour = 3600;
    let groups = [
        ("old-run", Some(target::unix_now() - 7 * hour)),
        ("young-run", Some(target::unix_now() - hour)),
        ("not-a-run", None),
    ];
    for (name, started) in groups {
        let mut body = json!({"location": t.location});
        if let Some(s) = started {
            body["tags"] = json!({target::LIVE_TAG: s.to_string()});
        }
        write(
            &rt,
            &t.owner,
            "PUT",
            &t.group_id(name),
            RESOURCES_API,
            &body,
            t.timeouts.write,
        );
    }
    let swept = sweep(
        &rt,
        &t.owner,
        &t.subscription,
        Duration::from_secs(6 * hour),
    );
    assert_eq!(swept, ["old-run"]);
    let left: Vec<&str> = groups
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| read(&rt, &t.owner, &t.group_id(n), RESOURCES_API).is_some())
        .collect();
    // The DELETE was accepted; the emulator finishes it within its scaled 5 s.
    let deadline = Instant::now() + t.timeouts.group_gone;
    while read(&rt, &t.owner, &t.group_id("old-run"), RESOURCES_API).is_some() {
        assert!(Instant::now() < deadline, "old-run never went");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        left.contains(&"young-run") && left.contains(&"not-a-run"),
        "{left:?}"
    );
}

/// `make live-sweep`: the same sweeper against the subscription in `AZURE_*`, for groups older
/// than `FHIRLOCK_LIVE_SWEEP_HOURS` (default 6). Only with `FHIRLOCK_LIVE_SWEEP=1`.
#[test]
fn live_sweep_on_azure() {
    if std::env::var("FHIRLOCK_LIVE_SWEEP").as_deref() != Ok("1") || !target::azure_wanted() {
        eprintln!(
            "live_sweep_on_azure: skipped: FHIRLOCK_LIVE_SWEEP=1 is not set (make live-sweep)"
        );
        return;
    }
    let t = Target::azure_from_env().unwrap_or_else(|why| panic!("live-sweep: {why}"));
    let hours: u64 = std::env::var("FHIRLOCK_LIVE_SWEEP_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(6);
    let swept = sweep(
        &rt(),
        &t.owner,
        &t.subscription,
        Duration::from_secs(hours * 3600),
    );
    eprintln!("live-sweep: deleting {} group(s): {swept:?}", swept.len());
}
