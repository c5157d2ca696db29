//! ARM-wide rules every body fhirlock writes must meet, whatever the resource type. Azure refuses
//! a tag name with `< > % & \ ? /` (Microsoft Learn, "Use tags to organize your Azure resources",
//! Limitations), so a tag name such as `fhirlock.io/owner` would make every gateway PUT fail.

mod common;

use common::*;
use fhirlock_core::{Certificate, plan, tag_violations};
use serde_json::json;

#[test]
fn every_tag_fhirlock_writes_is_a_valid_azure_tag() {
    let pfx = desired();
    let mut key_vault = desired();
    key_vault.gateway.certificate = Certificate::KeyVault {
        secret_id: "https://fhir-vault.vault.azure.net/secrets/fhir-tls".into(),
        identity_id: format!(
            "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw-fhir"
        ),
    };
    for d in [pfx, key_vault] {
        let (_, steps, _) = converge(&d, &wide_open());
        assert!(!steps.is_empty());
        for (s, _, _) in &steps {
            if let Some(tags) = s.body.get("tags").and_then(|t| t.as_object()) {
                assert_eq!(tag_violations(tags), Vec::<String>::new(), "{:?}", s.kind);
            }
        }
        let gateway = plan::gateway_body(&d, &wide_open()).unwrap();
        let tags = gateway["tags"].as_object().unwrap();
        assert!(tags.contains_key(fhirlock_core::OWNER_TAG));
        assert!(tags.contains_key(fhirlock_core::TLS_TAG));
        assert_eq!(tag_violations(tags), Vec::<String>::new());
    }
}

#[test]
fn the_tag_rules_refuse_what_azure_refuses() {
    let long_name = "n".repeat(513);
    let long_value = "v".repeat(257);
    let table = [
        (json!({"fhirlock.io/owner": "ns/name"}), 1),
        (
            json!({"a<b": "", "a>b": "", "a%b": "", "a&b": "", "a\\b": "", "a?b": ""}),
            6,
        ),
        (json!({long_name: "x"}), 1),
        (json!({"ok": long_value}), 1),
        (
            json!({"fhirlock-owner": "ns/name", "cost-centre": "nhs-123"}),
            0,
        ),
    ];
    for (tags, want) in table {
        assert_eq!(
            tag_violations(tags.as_object().unwrap()).len(),
            want,
            "{tags}"
        );
    }
    let many: serde_json::Map<_, _> = (0..51).map(|i| (format!("t{i}"), json!("x"))).collect();
    assert_eq!(tag_violations(&many).len(), 1);
}
