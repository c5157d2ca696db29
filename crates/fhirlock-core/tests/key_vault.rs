//! A Key Vault certificate: the gateway reads it as a user-assigned identity, so the gateway PUT
//! carries `identity` at the top level (ARM rejects `keyVaultSecretId` without one). Identities
//! others put on the gateway are kept, the view compares only the identity IDs (ARM fills in
//! principalId and clientId), and a PFX certificate leaves the identity alone.

mod common;

use common::*;
use fhirlock_core::plan::{self, StepKind};
use fhirlock_core::{Certificate, Desired, Observed, status};
use serde_json::{Value, json};

const SECRET: &str = "https://fhir-vault.vault.azure.net/secrets/fhir-tls";

fn identity(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

fn key_vault(identity_id: &str) -> Desired {
    let mut d = desired();
    d.gateway.certificate = Certificate::KeyVault {
        secret_id: SECRET.into(),
        identity_id: identity_id.into(),
    };
    d
}

/// The estate after fhirlock converged it with `d`.
fn converged(d: &Desired) -> Observed {
    let (end, _, _) = converge(d, &wide_open());
    assert!(plan::plan(d, &end).is_empty());
    end
}

fn gateway_steps(d: &Desired, o: &Observed) -> Vec<plan::Step> {
    plan::plan(d, o)
        .steps
        .into_iter()
        .filter(|s| s.kind == StepKind::Gateway)
        .collect()
}

/// The keys of the body's userAssignedIdentities, sorted.
fn identity_keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body["identity"]["userAssignedIdentities"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// ARM's read-back of a user-assigned identity entry.
fn arm_entry(n: u8) -> Value {
    json!({"principalId": format!("11111111-0000-4000-8000-0000000000{n:02}"), "clientId": format!("22222222-0000-4000-8000-0000000000{n:02}")})
}

#[test]
fn the_gateway_body_carries_the_identity_beside_properties() {
    let id = identity("id-agw-fhir");
    let d = key_vault(&id);
    let steps = gateway_steps(&d, &wide_open());
    assert_eq!(steps.len(), 1);
    let body = &steps[0].body;
    assert_eq!(
        body["identity"],
        json!({"type": "UserAssigned", "userAssignedIdentities": {id.clone(): {}}})
    );
    assert!(body["properties"].get("identity").is_none());
    assert_eq!(
        body["properties"]["sslCertificates"],
        json!([{"name": "fhir-tls", "properties": {"keyVaultSecretId": SECRET}}])
    );
    let marker = body["tags"]["fhirlock-tls"].as_str().unwrap();
    assert!(
        marker.starts_with(&format!("keyvault:{SECRET};identity:")),
        "{marker}"
    );
}

#[test]
fn identity_cases_on_a_converged_gateway() {
    let id = identity("id-agw-fhir");
    let other = identity("id-monitoring");
    let d = key_vault(&id);
    let end = converged(&d);
    // What simulate (as ARM) read back: principalId and clientId filled in.
    assert!(
        end.gateway.as_ref().unwrap()["identity"]["userAssignedIdentities"][&id]["principalId"]
            .is_string()
    );

    type Edit = fn(&mut Value, &str, &str);
    // (case, edit of the observed gateway, expected: None = no step, Some(changed path prefix))
    let cases: Vec<(&str, Edit, Option<&str>)> = vec![
        ("converged", |_, _, _| {}, None),
        (
            "ARM answers the ID and type in another case",
            |g, id, _| {
                let entry = g["identity"]["userAssignedIdentities"]
                    .as_object_mut()
                    .unwrap()
                    .remove(id)
                    .unwrap();
                g["identity"] = json!({"type": "userAssigned", "userAssignedIdentities": {id.to_ascii_lowercase(): entry}});
            },
            None,
        ),
        (
            "someone added another identity",
            |g, _, other| {
                g["identity"]["userAssignedIdentities"][other] = arm_entry(2);
            },
            None,
        ),
        (
            "someone removed the identity block",
            |g, _, _| {
                g.as_object_mut().unwrap().remove("identity");
            },
            Some("identity"),
        ),
        (
            "someone set the identity type to None",
            |g, _, _| {
                g["identity"] = json!({"type": "None"});
            },
            Some("identity"),
        ),
        (
            "someone swapped our identity for another",
            |g, _, other| {
                g["identity"]["userAssignedIdentities"] = json!({other: arm_entry(2)});
            },
            Some("identity.userAssignedIdentities"),
        ),
    ];
    for (case, edit, expect) in cases {
        let mut o = end.clone();
        edit(o.gateway.as_mut().unwrap(), &id, &other);
        let steps = gateway_steps(&d, &o);
        match expect {
            None => assert!(steps.is_empty(), "{case}: {steps:#?}"),
            Some(path) => {
                assert_eq!(steps.len(), 1, "{case}");
                let s = &steps[0];
                assert!(!s.creates && s.ready(), "{case}");
                assert!(
                    s.changes.iter().any(|c| c.path.starts_with(path)),
                    "{case}: {:?}",
                    s.changes
                );
                // The drift names the identity, and only it.
                assert!(
                    s.changes.iter().all(|c| c.path.starts_with("identity")),
                    "{case}: {:?}",
                    s.changes
                );
                // The PUT puts ours back and keeps everything else, without read-only fields.
                let keys = identity_keys(&s.body);
                assert!(keys.iter().any(|k| k.eq_ignore_ascii_case(&id)), "{case}");
                assert_eq!(s.body["identity"]["type"], "UserAssigned", "{case}");
                for v in s.body["identity"]["userAssignedIdentities"]
                    .as_object()
                    .unwrap()
                    .values()
                {
                    assert_eq!(v, &json!({}), "{case}");
                }
                // After it, nothing is left to do.
                let after = fhirlock_core::simulate::apply(&o, s);
                assert!(gateway_steps(&d, &after).is_empty(), "{case}");
            }
        }
    }
}

#[test]
fn an_identity_someone_else_attached_is_kept_when_ours_is_added() {
    let id = identity("id-agw-fhir");
    let other = identity("id-monitoring");
    let d = key_vault(&id);
    let mut o = converged(&d);
    o.gateway.as_mut().unwrap()["identity"] = json!({
        "type": "UserAssigned",
        "userAssignedIdentities": {other.clone(): arm_entry(2)},
        "x-unknown-identity-field": 7,
    });
    let steps = gateway_steps(&d, &o);
    assert_eq!(steps.len(), 1);
    let body = &steps[0].body;
    assert_eq!(
        body["identity"]["userAssignedIdentities"],
        json!({other: {}, id: {}})
    );
    assert_eq!(body["identity"]["x-unknown-identity-field"], 7);
}

#[test]
fn a_changed_identity_is_put_again_and_replaces_the_one_fhirlock_attached() {
    let old = identity("id-agw-old");
    let new = identity("id-agw-new");
    let other = identity("id-monitoring");
    let mut o = converged(&key_vault(&old));
    o.gateway.as_mut().unwrap()["identity"]["userAssignedIdentities"][&other] = arm_entry(2);
    let d = key_vault(&new);
    assert_ne!(
        d.gateway.certificate.marker(),
        key_vault(&old).gateway.certificate.marker(),
        "the marker names the identity"
    );
    let steps = plan::plan(&d, &o).steps;
    assert_eq!(steps.len(), 1, "{steps:#?}");
    assert_eq!(steps[0].kind, StepKind::Gateway);
    let paths: Vec<_> = steps[0].changes.iter().map(|c| c.path.as_str()).collect();
    assert!(
        paths.contains(&"identity.userAssignedIdentities"),
        "{paths:?}"
    );
    assert!(paths.contains(&"tags.fhirlock-tls"), "{paths:?}");
    // The old identity was fhirlock's (its tag says so) and goes; the other one stays.
    assert_eq!(identity_keys(&steps[0].body), vec![new, other]);
    let after = fhirlock_core::simulate::apply(&o, &steps[0]);
    assert!(plan::plan(&d, &after).is_empty());
    // The identity's case is not a change.
    let same = key_vault(&identity("id-agw-new").to_ascii_lowercase());
    assert!(plan::plan(&same, &after).is_empty());
}

#[test]
fn a_pfx_certificate_leaves_the_identity_alone() {
    let d = desired();
    let mut o = converged(&d);
    let attached = json!({"type": "UserAssigned", "userAssignedIdentities": {identity("id-monitoring"): arm_entry(2)}});
    o.gateway.as_mut().unwrap()["identity"] = attached.clone();
    assert!(plan::plan(&d, &o).is_empty(), "an identity is no drift");
    // A new certificate re-PUTs the gateway with the identity as ARM returned it, less what the
    // specification marks read-only (each entry's principalId and clientId).
    let mut renewed = d.clone();
    renewed.gateway.certificate = Certificate::Pfx {
        data_base64: "TkVX".into(),
        password: "pw2".into(),
        fingerprint: "def456".into(),
    };
    let steps = gateway_steps(&renewed, &o);
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].body["identity"],
        json!({"type": "UserAssigned", "userAssignedIdentities": {identity("id-monitoring"): {}}})
    );
    assert!(
        steps[0]
            .changes
            .iter()
            .all(|c| !c.path.starts_with("identity"))
    );
    // No identity on the gateway: none is added.
    let fresh = gateway_steps(&d, &wide_open());
    assert!(fresh[0].body.get("identity").is_none());
}

#[test]
fn the_marker_fits_an_azure_tag_and_ignores_case() {
    // The longest secret ID admission lets through, and the longest identity name.
    let secret = format!(
        "https://{}.vault.usgovcloudapi.net/secrets/{}/{}/",
        "v".repeat(24),
        "s".repeat(127),
        "0".repeat(32)
    );
    let long_id = identity(&"i".repeat(128));
    let cert = |id: &str| Certificate::KeyVault {
        secret_id: secret.clone(),
        identity_id: id.into(),
    };
    let m = cert(&long_id).marker().unwrap();
    assert!(m.len() <= 256, "{} characters: {m}", m.len());
    assert_eq!(
        cert(&long_id.to_ascii_uppercase()).marker(),
        Some(m.clone())
    );
    assert_ne!(cert(&identity("other")).marker(), Some(m));
    let shown = format!("{:?}", cert(&long_id));
    assert!(
        shown.contains("KeyVault") && shown.contains(&long_id),
        "{shown}"
    );
}

#[test]
fn next_steps_ask_for_the_identity_role_assignment() {
    let id = identity("id-agw-fhir");
    let steps = status::next_steps(&key_vault(&id), None);
    assert!(
        steps
            .iter()
            .any(|s| s.contains(&id) && s.contains("Key Vault Secrets User")),
        "{steps:#?}"
    );
    let pfx = status::next_steps(&desired(), None);
    assert!(pfx.iter().all(|s| !s.contains("Key Vault")), "{pfx:#?}");
}

/// The gateway subnet as the VNet read lists it: `endpoints` as (service, provisioningState).
fn with_gateway_subnet(endpoints: &[(&str, &str)]) -> Observed {
    let mut o = wide_open();
    let ses: Vec<Value> = endpoints
        .iter()
        .map(|(svc, st)| json!({"service": svc, "locations": ["*"], "provisioningState": st}))
        .collect();
    o.vnet.as_mut().unwrap()["properties"]["subnets"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "id": gw_subnet(), "name": "snet-fhir-agw", "etag": "W/\"1\"",
            "properties": {"addressPrefix": "10.20.1.0/26", "provisioningState": "Succeeded",
                "serviceEndpoints": ses,
                "delegations": [{"name": "Microsoft.Network.applicationGateways",
                    "properties": {"serviceName": "Microsoft.Network/applicationGateways", "provisioningState": "Succeeded"}}]}
        }));
    o
}

fn services(step: &plan::Step) -> Vec<String> {
    step.body["properties"]["serviceEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["service"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_key_vault_certificate_needs_the_key_vault_endpoint_on_the_gateway_subnet() {
    let kv = key_vault(&identity("id-agw-fhir"));
    let pfx = desired();
    let none: &[(&str, &str)] = &[];
    // (case, desired, the gateway subnet's endpoints (None: no subnet), the gateway subnet
    // step's endpoints (None: no step), the gateway step waits for the subnet, the finding raised)
    type Case<'a> = (
        &'a str,
        &'a Desired,
        Option<&'a [(&'a str, &'a str)]>,
        Option<&'a [&'a str]>,
        bool,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "Key Vault, no subnet yet",
            &kv,
            None,
            Some(&["Microsoft.Web", "Microsoft.KeyVault"]),
            false,
            true,
        ),
        (
            "Key Vault, an adopted subnet with someone else's endpoint (kept)",
            &kv,
            Some(&[("Microsoft.Storage", "Succeeded")]),
            Some(&["Microsoft.Storage", "Microsoft.Web", "Microsoft.KeyVault"]),
            false,
            true,
        ),
        (
            "Key Vault, Microsoft.Web only (a PFX endpoint switched to Key Vault)",
            &kv,
            Some(&[("Microsoft.Web", "Succeeded")]),
            Some(&["Microsoft.Web", "Microsoft.KeyVault"]),
            false,
            true,
        ),
        (
            "Key Vault, both endpoints, the Key Vault one still Updating",
            &kv,
            Some(&[
                ("Microsoft.Web", "Succeeded"),
                ("Microsoft.KeyVault", "Updating"),
            ]),
            None,
            false,
            false,
        ),
        (
            "Key Vault, both endpoints Succeeded (service names without case)",
            &kv,
            Some(&[
                ("microsoft.web", "Succeeded"),
                ("microsoft.keyvault", "Succeeded"),
            ]),
            None,
            true,
            false,
        ),
        (
            "PFX, no subnet yet",
            &pfx,
            None,
            Some(&["Microsoft.Web"]),
            false,
            false,
        ),
        (
            "PFX, Microsoft.Web Succeeded: no Key Vault endpoint wanted",
            &pfx,
            Some(&[("Microsoft.Web", "Succeeded")]),
            None,
            true,
            false,
        ),
        (
            "PFX, no endpoint at all",
            &pfx,
            Some(none),
            Some(&["Microsoft.Web"]),
            false,
            false,
        ),
    ];
    for (case, d, existing, want_step, subnet_ready, finding) in cases {
        let o = match existing {
            None => wide_open(),
            Some(e) => with_gateway_subnet(e),
        };
        let p = plan::plan(d, &o);
        let subnet = p.steps.iter().find(|s| s.kind == StepKind::GatewaySubnet);
        match want_step {
            None => assert!(subnet.is_none(), "{case}: {subnet:#?}"),
            Some(want) => {
                let s = subnet.unwrap_or_else(|| panic!("{case}: no GatewaySubnet step"));
                assert_eq!(services(s), *want, "{case}");
                assert_eq!(s.creates, existing.is_none(), "{case}");
                assert!(
                    s.reason.contains("Microsoft.KeyVault") == want.contains(&"Microsoft.KeyVault"),
                    "{case}: {}",
                    s.reason
                );
            }
        }
        // The gateway may wait for other things too; what counts here is the subnet.
        let gw = p
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Gateway)
            .unwrap();
        let waits = gw.waiting_for.as_deref().unwrap_or_default();
        assert_eq!(
            !waits.contains("subnet snet-fhir-agw delegated"),
            subnet_ready,
            "{case}: {waits}"
        );
        if matches!(d.gateway.certificate, Certificate::KeyVault { .. }) && !subnet_ready {
            assert!(
                waits.contains("Microsoft.Web and Microsoft.KeyVault endpoints"),
                "{case}: {waits}"
            );
        }
        let found = fhirlock_core::posture::findings(d, &o)
            .iter()
            .any(|f| f.code == fhirlock_core::posture::FindingCode::GatewayKeyVaultUnreachable);
        assert_eq!(found, finding, "{case}");
    }
}

#[test]
fn a_pfx_endpoint_switched_to_key_vault_adds_the_endpoint_before_the_gateway() {
    let kv = key_vault(&identity("id-agw-fhir"));
    let start = converged(&desired());
    let (end, history, _) = converge(&kv, &start);
    let kinds: Vec<StepKind> = history.iter().map(|(s, _, _)| s.kind).collect();
    assert_eq!(kinds, [StepKind::GatewaySubnet, StepKind::Gateway]);
    let subnet = end.subnet("snet-fhir-agw").unwrap();
    assert!(subnet.endpoint("Microsoft.KeyVault").is_some());
    assert!(subnet.endpoint("Microsoft.Web").is_some());
    assert!(
        fhirlock_core::posture::findings(&kv, &end)
            .iter()
            .all(|f| f.code != fhirlock_core::posture::FindingCode::GatewayKeyVaultUnreachable)
    );
}
