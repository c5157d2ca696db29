//! The admission rules, evaluated locally on the shared corpus. `tests/apiserver` runs the same
//! corpus through a real kube-apiserver; the two must agree.

use std::net::Ipv4Addr;

use fhirlock_api::{admission, fixtures};
use proptest::prelude::*;
use serde_json::{Value, json};

#[test]
fn every_example_is_admitted() {
    let examples = fixtures::examples();
    assert!(
        examples.len() >= 3,
        "expected the examples/ manifests, found {}",
        examples.len()
    );
    for (file, obj) in examples {
        let errors = admission::validate(&obj, None);
        assert!(
            errors.is_empty(),
            "{} rejected: {errors:#?}",
            file.display()
        );
        // And it deserializes into the Rust type the operator uses.
        serde_json::from_value::<fhirlock_api::SecuredFhirEndpoint>(obj).unwrap();
    }
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_message() {
    let corpus = fixtures::invalid();
    assert!(
        corpus.len() >= 25,
        "the corpus must hold at least 25 manifests, has {}",
        corpus.len()
    );
    for case in corpus {
        let errors = admission::validate(&case.object, None);
        assert!(
            errors.iter().any(|e| e.contains(&case.expect)),
            "{}: expected an error containing {:?}, got {errors:#?}",
            case.file.display(),
            case.expect
        );
    }
}

#[test]
fn immutable_fields_cannot_change() {
    let old = fixtures::base_example();
    let updates = fixtures::updates("immutable.yaml");
    assert!(updates.len() >= 5);
    for u in updates {
        let new = fixtures::with_field(&old, &u.field, u.value.clone());
        let expect = u.expect.expect("immutable rows name a message");
        let errors = admission::validate(&new, Some(&old));
        assert!(
            errors.iter().any(|e| e.contains(&expect)),
            "{}: expected {expect:?}, got {errors:#?}",
            u.field
        );
    }
}

#[test]
fn day_two_changes_are_allowed() {
    let old = fixtures::base_example();
    for u in fixtures::updates("mutable.yaml") {
        let new = fixtures::with_field(&old, &u.field, u.value.clone());
        let errors = admission::validate(&new, Some(&old));
        assert!(errors.is_empty(), "{} -> {}: {errors:#?}", u.field, u.value);
    }
}

#[test]
fn defaults_fill_an_omitted_sku_and_tls_policy() {
    // The audit example omits sku, sslPolicy, probePath, scmSite and deletionPolicy.
    let (_, obj) = fixtures::examples()
        .into_iter()
        .find(|(f, _)| f.ends_with("fhir-endpoint-audit.yaml"))
        .unwrap();
    let sfe: fhirlock_api::SecuredFhirEndpoint = serde_json::from_value(obj).unwrap();
    assert_eq!(sfe.spec.gateway.sku.max_capacity, 3);
    assert_eq!(
        sfe.spec.gateway.ssl_policy,
        fhirlock_api::v1alpha1::SslPolicy::AppGwSslPolicy20220101S
    );
    assert_eq!(sfe.spec.gateway.probe_path, "/metadata");
}

#[test]
fn every_rule_has_a_message() {
    fn walk(v: &Value, missing: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
                    for r in rules {
                        if r.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .is_empty()
                        {
                            missing.push(r["rule"].to_string());
                        }
                    }
                }
                m.values().for_each(|c| walk(c, missing));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(&admission::schema(), &mut missing);
    assert!(missing.is_empty(), "rules without a message: {missing:#?}");
}

#[test]
fn every_spec_field_has_a_description() {
    fn walk(v: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (k, child) in props {
                let p = format!("{path}.{k}");
                if child
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    missing.push(p.clone());
                }
                walk(child, &p, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(items, path, missing);
        }
    }
    let schema = admission::schema();
    let mut missing = Vec::new();
    walk(&schema["properties"]["spec"], "spec", &mut missing);
    walk(&schema["properties"]["status"], "status", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain shows nothing): {missing:#?}"
    );
}

#[test]
fn key_vault_identity_ids_are_judged_as_arm_judges_them() {
    // ARM IDs are case-insensitive; the name is 3-128 letters, digits, '-' or '_', starting with
    // a letter or digit. Azure would take an identity from another subscription of the tenant;
    // fhirlock ties every ID a spec names to spec.subscriptionId, as the tenancy scopes are.
    let with = |id: &str| {
        let mut obj = fixtures::base_example();
        obj["spec"]["gateway"]["tls"] = json!({
            "keyVaultSecretId": "https://fhir-vault.vault.azure.net/secrets/fhir-tls",
            "keyVaultIdentityId": id,
        });
        admission::validate(&obj, None)
    };
    let sub = "6f1c2a52-0000-4000-8000-000000000001";
    let other = "0b7d2f4e-1111-4222-8333-444455556666";
    for ok in [
        format!(
            "/subscriptions/{sub}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw-fhir"
        ),
        format!(
            "/subscriptions/{sub}/resourcegroups/fhir/providers/microsoft.managedidentity/userassignedidentities/id_agw"
        ),
    ] {
        let errors = with(&ok);
        assert!(errors.is_empty(), "{ok} rejected: {errors:#?}");
    }
    let elsewhere = format!(
        "/subscriptions/{other}/resourceGroups/shared-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agw"
    );
    assert_eq!(
        with(&elsewhere),
        vec![
            "spec: Invalid value: spec.gateway.tls.keyVaultIdentityId must be in spec.subscriptionId"
        ]
    );
    for bad in [
        "id-agw-fhir".to_owned(),
        format!(
            "/subscriptions/{sub}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ab"
        ),
        format!(
            "/subscriptions/{sub}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/-agw"
        ),
        format!(
            "/subscriptions/{sub}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw/extra"
        ),
        format!(
            "/subscriptions/{sub}/resourceGroups/fhir/providers/Microsoft.Web/sites/id-agw-fhir"
        ),
    ] {
        let errors = with(&bad);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("keyVaultIdentityId must be an ARM ID of the form")),
            "{bad} admitted: {errors:#?}"
        );
    }
}

/// The network rules, computed the plain way: is the IP inside the prefix and not one of the
/// four addresses Azure reserves at its start; do two prefixes overlap.
fn prefix(net: Ipv4Addr, len: u8) -> String {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    format!("{}/{len}", Ipv4Addr::from(u32::from(net) & mask))
}

fn contains(p: &str, ip: Ipv4Addr) -> bool {
    let (net, len) = p.split_once('/').unwrap();
    let (net, len): (Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net)
}

fn spec_with(gw: &str, int: &str, ip: Ipv4Addr) -> Value {
    let mut obj = fixtures::base_example();
    obj["spec"]["network"]["gatewaySubnet"]["addressPrefix"] = json!(gw);
    obj["spec"]["network"]["integrationSubnet"]["addressPrefix"] = json!(int);
    obj["spec"]["gateway"]["privateIPAddress"] = json!(ip.to_string());
    obj["spec"]["gateway"]["sku"]["maxCapacity"] = json!(2);
    obj
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cel_network_rules_agree_with_plain_arithmetic(
        gw_net in 0u32..=u32::MAX, gw_len in 20u8..=29,
        int_net in 0u32..=u32::MAX, int_len in 20u8..=28,
        offset in 0u32..64,
    ) {
        // Keep both inside 10.0.0.0/8 so the rules, not the address family, decide.
        let gw = prefix(Ipv4Addr::from(0x0a00_0000 | (gw_net & 0x00ff_ffff)), gw_len);
        let int = prefix(Ipv4Addr::from(0x0a00_0000 | (int_net & 0x00ff_ffff)), int_len);
        let gw_start: Ipv4Addr = gw.split_once('/').unwrap().0.parse().unwrap();
        let ip = Ipv4Addr::from(u32::from(gw_start).wrapping_add(offset));

        let overlap = contains(&gw, int.split_once('/').unwrap().0.parse().unwrap())
            || contains(&int, gw_start);
        let inside = contains(&gw, ip);
        let reserved = inside && offset < 4;

        let errors = admission::validate(&spec_with(&gw, &int, ip), None);
        let has = |s: &str| errors.iter().any(|e| e.contains(s));
        prop_assert_eq!(has("must not overlap"), overlap, "{} {} {:?}", gw, int, errors);
        prop_assert_eq!(has("must lie inside"), !inside, "{} {} {:?}", gw, ip, errors);
        prop_assert_eq!(has("first four addresses"), reserved, "{} {} {:?}", gw, ip, errors);
    }
}
