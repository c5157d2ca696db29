//! Secrets at rest (issue #13): a gateway certificate's PFX and password are accepted on PUT, as
//! Azure accepts them, but Azure never returns them, so the emulator does not keep them: neither
//! `state.json` (written owner-only) nor `/_emulator/state` holds them. A Key Vault secret id is a
//! reference, and stays.

mod common;

use arm_emulator::config::Config;
use arm_emulator::engine::Request;
use arm_emulator::state::State;
use common::estate::{agw_subnet, gateway_body, key_vault_gateway, register_isolation, uai};
use common::*;
use serde_json::{Value, json};
use std::path::Path;

const PFX: &str = "TUlJS1BGWC1zZWNyZXQtcGt4LWJvZHk=";
const PASSWORD: &str = "pfx-password-5e1d";

/// The network of `H::new`, persisted to `path`, with the gateway subnet and isolation ready.
fn persisted(path: &Path) -> H {
    let mut h = H::with_state(Config::dev(), State::default(), Some(path.to_path_buf()));
    for name in ["fhir", "hscn-net"] {
        h.ok(
            "PUT",
            &rg(name),
            RG_API,
            Some(json!({"location": "uksouth"})),
        );
    }
    h.ok("PUT", &vnet_id("hscn-net", "hscn-vnet"), NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}})));
    h.settle();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    h
}

fn with_certificate() -> Value {
    let mut b = gateway_body(None);
    b["properties"]["sslCertificates"] =
        json!([{"name": "cert", "properties": {"data": PFX, "password": PASSWORD}}]);
    b
}

fn control_state(h: &mut H) -> String {
    let r = h.raw(Request::new("GET", "/_emulator/state"));
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn state_file_and_control_state_hold_no_certificate_pfx_or_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut h = persisted(&path);
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(with_certificate()));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    h.settle();
    // A write after the operation finished, so the file is the settled state.
    h.ok(
        "PATCH",
        &agw_id("agw-fhir"),
        NET,
        Some(json!({"tags": {"k": "v"}})),
    );

    let file = std::fs::read_to_string(&path).unwrap();
    assert!(file.contains("agw-fhir"), "the gateway is persisted");
    let served = control_state(&mut h);
    assert!(served.contains("agw-fhir"));
    for (what, text) in [("state.json", &file), ("/_emulator/state", &served)] {
        assert!(!text.contains(PFX), "{what} holds the PFX");
        assert!(!text.contains(PASSWORD), "{what} holds the password");
    }
    // What Azure answers is unchanged: no data or password, a publicCertData.
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    let cert = &g["properties"]["sslCertificates"][0]["properties"];
    assert!(cert["data"].is_null() && cert["password"].is_null());
    assert!(cert["publicCertData"].is_string());
    // A client's read-modify-write (the certificate sent back without its PFX) is accepted.
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(g.clone()));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[cfg(unix)]
#[test]
fn state_file_is_owner_only_even_over_a_readable_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // A state file and a left-over temporary file from before, both world-readable.
    for p in [&path, &dir.path().join("state.json.tmp")] {
        std::fs::write(p, serde_json::to_vec(&State::default()).unwrap()).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut h = persisted(&path);
    h.ok(
        "PUT",
        &rg("another"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "state.json mode {mode:o}");
}

#[test]
fn key_vault_secret_ids_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut h = persisted(&path);
    let body = key_vault_gateway(Some(json!({"type": "UserAssigned",
        "userAssignedIdentities": {uai("agw-kv"): {}}})));
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(body));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let secret_id = "https://fhir-vault.vault.azure.net/secrets/fhir-tls";
    assert!(std::fs::read_to_string(&path).unwrap().contains(secret_id));
    assert!(control_state(&mut h).contains(secret_id));
}

#[test]
fn a_state_file_written_with_secrets_loads_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut h = persisted(&path);
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    // As an emulator before this change wrote it.
    let mut old: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let key = agw_id("agw-fhir").to_ascii_lowercase();
    old["resources"][&key]["body"]["properties"]["sslCertificates"] =
        with_certificate()["properties"]["sslCertificates"].clone();
    std::fs::write(&path, old.to_string()).unwrap();
    let state = State::load(&path).unwrap().unwrap();
    let text = serde_json::to_string(&state).unwrap();
    assert!(text.contains("sslCertificates"), "the certificate stays");
    assert!(!text.contains(PFX) && !text.contains(PASSWORD));
}
