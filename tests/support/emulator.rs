//! `arm-emulator` with the tests' defaults, and `fhirlock` one-shot commands against it.

use std::path::PathBuf;
use std::process::Command;

use fhirlock_testkit::{Binaries, EmulatorOptions};
pub use fhirlock_testkit::{
    Emulator, OPERATOR_OBJECT, OUTSIDER_CLIENT, OUTSIDER_OBJECT, OUTSIDER_SECRET, SUBSCRIPTION,
    TENANT,
};

use crate::{must, text};

/// Resource group `name` of the example estate's subscription.
pub fn rg(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

/// The example estate's resources (`examples/arm-emulator-estate.yaml`).
pub fn vnet() -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/hscn-vnet",
        rg("hscn-net")
    )
}
pub fn site() -> String {
    format!("{}/providers/Microsoft.Web/sites/fhir-server", rg("fhir"))
}
pub fn cosmos() -> String {
    format!(
        "{}/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos",
        rg("fhir")
    )
}
/// The gateway of `examples/fhir-endpoint.yaml`.
pub fn gateway() -> String {
    format!(
        "{}/providers/Microsoft.Network/applicationGateways/agw-fhir",
        rg("fhir")
    )
}

/// A debug build of this workspace's binary `name` (`cargo test --workspace` builds them first).
pub fn bin(name: &str) -> PathBuf {
    must(Binaries::debug().path(name))
}

/// Starts the emulator with `config` (a file in `examples/`, or an absolute path) on a free
/// loopback port, in a temporary directory.
pub fn emulator(config: &str, time_scale: f64) -> Emulator {
    must(Emulator::start(EmulatorOptions {
        program: bin("arm-emulator"),
        config: testenv::workspace_root().join("examples").join(config),
        time_scale,
        dir: None,
        data_on_tmpfs: false,
        check_bodies_on_drop: true,
    }))
}

/// Runs `fhirlock <args>` against the emulator; returns (exit code, stdout, stderr).
pub fn fhirlock(emu: &Emulator, args: &[&str]) -> (i32, String, String) {
    outcome(&mut fhirlock_command(emu, args))
}

/// `fhirlock <args>` against the emulator, for a test that changes who runs it (another
/// identity, another PATH) before [`outcome`] runs it.
pub fn fhirlock_command(emu: &Emulator, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("fhirlock"));
    cmd.args(args)
        .envs(emu.env())
        .current_dir(testenv::workspace_root());
    cmd
}

/// Runs `cmd` to the end; returns (exit code, stdout, stderr).
pub fn outcome(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}
