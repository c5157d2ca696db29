//! The end-to-end suites end every test by holding the bodies fhirlock sent to Microsoft's models
//! (`Emulator::check_bodies`, on drop). This is the test of that check: a body Azure's models
//! refuse must fail it, and a good one must pass.

use fhirlock_testkit::{
    Binaries, Emulator, EmulatorOptions, OPERATOR_CLIENT, OPERATOR_SECRET, SUBSCRIPTION,
};
use serde_json::json;

fn emulator(check_bodies_on_drop: bool) -> Emulator {
    Emulator::start(EmulatorOptions {
        program: Binaries::debug().path("arm-emulator").unwrap(),
        config: testenv::workspace_root().join("examples/arm-emulator-estate.yaml"),
        time_scale: 0.01,
        dir: None,
        data_on_tmpfs: false,
        check_bodies_on_drop,
    })
    .unwrap()
}

fn cosmos() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos"
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_body_microsofts_models_refuse_fails_the_check_and_a_good_one_passes() {
    let emu = emulator(false);
    let arm = emu
        .ready
        .arm_client(OPERATOR_CLIENT, OPERATOR_SECRET, "fhirlock")
        .unwrap();
    let config = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server/config/web"
    );
    let good = json!({"properties": {"http20Enabled": true, "ftpsState": "Disabled"}});
    rt().block_on(arm.patch(&config, "2024-11-01", &good))
        .unwrap();
    emu.check_bodies().unwrap();
    // The emulator accepts and ignores this (a read-only field of the account, which a PATCH's
    // model does not have at all); the check must not.
    let bad = json!({"properties": {"ipRules": [], "provisioningState": "Succeeded"}});
    rt().block_on(arm.patch(&cosmos(), "2025-04-15", &bad))
        .unwrap();
    let e = emu.check_bodies().unwrap_err().to_string();
    assert!(
        e.contains("provisioningState") && e.contains("1 violation"),
        "{e}"
    );
}

#[test]
fn dropping_an_emulator_that_saw_a_bad_body_fails_the_test() {
    let emu = emulator(true);
    let arm = emu
        .ready
        .arm_client(OPERATOR_CLIENT, OPERATOR_SECRET, "fhirlock")
        .unwrap();
    let body = json!({"properties": {"ipRules": [], "documentEndpoint": "https://elsewhere/"}});
    rt().block_on(arm.patch(&cosmos(), "2025-04-15", &body))
        .unwrap();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(emu)));
    assert!(
        dropped.is_err(),
        "the drop check let a read-only field through"
    );
}
