//! App Service certificates and host-name bindings (`engine/host_names.rs`): a certificate a
//! binding uses cannot be deleted nor its PFX replaced (Azure's 409), and the site's read-back lists the bound host
//! names and their TLS state (Web 2024-11-01 `Site`: `hostNames`, `enabledHostNames`,
//! `hostNameSslStates`).

mod common;

use arm_emulator::engine::Request;
use base64::Engine as _;
use common::estate::site_and_cosmos;
use common::*;
use p12_keystore::{KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use serde_json::{Value, json};

const HOST: &str = "fhir.trust.nhs.uk";
const PASSWORD: &str = "pfx-password";

/// A PFX (base64) for `host`, self-signed.
fn pfx(host: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let chain = vec![p12_keystore::Certificate::from_der(cert.der()).unwrap()];
    let key = PrivateKey::from_der(&key.serialize_der()).unwrap();
    let mut store = KeyStore::new();
    store.add_entry(
        "tls",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(vec![1], key, chain)),
    );
    let der = store.writer(PASSWORD).write().unwrap();
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn certificate_id(name: &str) -> String {
    format!("{}/providers/Microsoft.Web/certificates/{name}", rg("fhir"))
}

fn binding_id(host: &str) -> String {
    format!("{}/hostNameBindings/{host}", site_id("fhir-server"))
}

/// The site with a certificate for `HOST`, its TXT record published and the host bound with SNI;
/// the certificate's thumbprint.
fn bound(h: &mut H) -> String {
    site_and_cosmos(h);
    let cert = h.ok(
        "PUT",
        &certificate_id("fhir-cert"),
        WEB,
        Some(json!({"location": "uksouth", "properties": {
            "pfxBlob": pfx(HOST), "password": PASSWORD, "serverFarmId": plan_id("plan")}})),
    );
    let thumb = cert["properties"]["thumbprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let site = h.ok("GET", &site_id("fhir-server"), WEB, None);
    let record = json!({"name": format!("asuid.{HOST}"), "type": "TXT",
        "value": site["properties"]["customDomainVerificationId"]});
    let r = h.raw(Request::new("POST", "/_emulator/dns").with_json(&record));
    assert_eq!(r.status, 200);
    h.ok(
        "PUT",
        &binding_id(HOST),
        WEB,
        Some(
            json!({"properties": {"hostNameType": "Verified", "customHostNameDnsRecordType": "A",
            "sslState": "SniEnabled", "thumbprint": thumb}}),
        ),
    );
    thumb
}

#[test]
fn a_certificate_a_binding_uses_cannot_be_deleted_until_the_binding_is_gone() {
    let mut h = H::new();
    let thumb = bound(&mut h);
    let e = h.fails(
        "DELETE",
        &certificate_id("fhir-cert"),
        WEB,
        None,
        409,
        "Conflict",
    );
    assert_eq!(
        e["error"]["message"],
        format!(
            "Cannot remove certificate with thumbprint {thumb} because it is used for hostname {HOST}."
        )
    );
    assert_eq!(
        h.call("GET", &certificate_id("fhir-cert"), WEB, None)
            .status,
        200,
        "still there"
    );
    h.ok("DELETE", &binding_id(HOST), WEB, None);
    h.ok("DELETE", &certificate_id("fhir-cert"), WEB, None);
    assert_eq!(
        h.call("GET", &certificate_id("fhir-cert"), WEB, None)
            .status,
        404
    );
}

#[test]
fn a_bound_certificate_is_renewed_by_a_new_certificate_not_by_replacing_its_pfx() {
    let mut h = H::new();
    let thumb = bound(&mut h);
    let put = |pfx: String| {
        Some(json!({"location": "uksouth", "properties": {
            "pfxBlob": pfx, "password": PASSWORD, "serverFarmId": plan_id("plan")}}))
    };
    let renewed = pfx(HOST);
    // Another PFX under the bound certificate's name: refused, the certificate unchanged.
    let e = h.fails(
        "PUT",
        &certificate_id("fhir-cert"),
        WEB,
        put(renewed.clone()),
        409,
        "Conflict",
    );
    assert_eq!(
        e["error"]["message"],
        format!(
            "Cannot remove certificate with thumbprint {thumb} because it is used for hostname {HOST}."
        )
    );
    let kept = h.ok("GET", &certificate_id("fhir-cert"), WEB, None);
    assert_eq!(kept["properties"]["thumbprint"], json!(thumb));
    // Learn's order: the new certificate beside it, the binding moved, the old one deleted.
    let new = h.ok("PUT", &certificate_id("fhir-cert-2"), WEB, put(renewed));
    let new_thumb = new["properties"]["thumbprint"].as_str().unwrap().to_owned();
    assert_ne!(new_thumb, thumb);
    h.ok(
        "PUT",
        &binding_id(HOST),
        WEB,
        Some(json!({"properties": {"sslState": "SniEnabled", "thumbprint": new_thumb}})),
    );
    h.ok("DELETE", &certificate_id("fhir-cert"), WEB, None);
    // An unbound certificate takes another PFX.
    h.ok("PUT", &certificate_id("fhir-cert"), WEB, put(pfx(HOST)));
}

#[test]
fn the_site_lists_its_bound_host_names_and_their_tls_state() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let names = |v: &Value, k: &str| -> Vec<String> {
        v["properties"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    let site = h.ok("GET", &site_id("fhir-server"), WEB, None);
    let default = "fhir-server.azurewebsites.net";
    let scm = "fhir-server.scm.azurewebsites.net";
    assert_eq!(names(&site, "hostNames"), [default]);
    assert_eq!(names(&site, "enabledHostNames"), [default, scm]);
    assert_eq!(
        site["properties"]["hostNameSslStates"],
        json!([
            {"name": default, "sslState": "Disabled", "hostType": "Standard"},
            {"name": scm, "sslState": "Disabled", "hostType": "Repository"},
        ])
    );
    let thumb = bound(&mut h);
    let site = h.ok("GET", &site_id("fhir-server"), WEB, None);
    assert_eq!(names(&site, "hostNames"), [default, HOST]);
    assert_eq!(names(&site, "enabledHostNames"), [default, HOST, scm]);
    assert_eq!(
        site["properties"]["hostNameSslStates"][1],
        json!({"name": HOST, "sslState": "SniEnabled", "thumbprint": thumb, "hostType": "Standard"})
    );
    // Unbound, the name is gone again; the default names stay.
    h.ok("DELETE", &binding_id(HOST), WEB, None);
    let site = h.ok("GET", &site_id("fhir-server"), WEB, None);
    assert_eq!(names(&site, "hostNames"), [default]);
    assert_eq!(
        site["properties"]["hostNameSslStates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_binding_outside_the_models_enums_is_refused_before_anything_else() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    // Refused on the body alone: no TXT record, no certificate needed to get this answer.
    for (field, value) in [
        ("sslState", "Sni"),
        ("hostNameType", "Unverified"),
        ("customHostNameDnsRecordType", "AAAA"),
        ("azureResourceType", "FrontDoor"),
    ] {
        let e = h.fails(
            "PUT",
            &binding_id(HOST),
            WEB,
            Some(json!({"properties": {field: value}})),
            400,
            "BadRequest",
        );
        let m = e["error"]["message"].as_str().unwrap();
        assert!(m.contains(&format!("properties.{field}")), "{m}");
    }
}

#[test]
fn a_certificates_read_only_fields_sent_on_put_are_dropped_for_what_the_pfx_says() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let c = h.ok(
        "PUT",
        &certificate_id("fhir-cert"),
        WEB,
        Some(json!({"location": "uksouth", "properties": {
            "pfxBlob": pfx(HOST), "password": PASSWORD, "serverFarmId": plan_id("plan"),
            "thumbprint": "FAKE", "issuer": "CN=someone", "expirationDate": "2099-01-01T00:00:00Z"}})),
    );
    let p = &c["properties"];
    assert_eq!(p["thumbprint"].as_str().unwrap().len(), 40, "{p}");
    assert!(
        p["issuer"].is_null() && p["expirationDate"].is_null(),
        "{p}"
    );
    assert!(p["pfxBlob"].is_null() && p["password"].is_null(), "{p}");
}
