//! Whether an Application Gateway can fetch its Key Vault certificates: a pure function of the
//! estate and the gateway body. Key Vault itself is not emulated, so only the network path is
//! judged (not the vault's firewall, nor the identity's rights on the secret).
//!
//! Sources:
//! - Microsoft Learn, "Private Application Gateway deployment", Outbound Internet connectivity
//!   (`MicrosoftDocs/azure-docs` `articles/application-gateway/application-gateway-private-deployment.md`):
//!   a gateway with only a private frontend "not able to egress traffic destined to the
//!   Internet"; public IP usage is required for "communication to key vault without use of
//!   private endpoints or service endpoints"; Virtual Network NAT on the gateway's subnet gives
//!   it egress again.
//! - Microsoft Learn, "TLS termination with Key Vault certificates", Verify Firewall Permissions
//!   to Key Vault (`articles/application-gateway/key-vault-certs.md`): the `Microsoft.KeyVault`
//!   service endpoint on the gateway's subnet.
//! - The failure, [O]: the PUT's long-running operation ends `Failed` with
//!   `ApplicationGatewayKeyVaultSecretException` ("Problem occured while accessing and validating
//!   KeyVault Secrets associated with Application Gateway '…'. See details below:", Azure's
//!   spelling) and a detail `ApplicationGatewayKeyVaultSecretAccessDenied` (MicrosoftDocs/azure-docs#33157,
//!   mspnp/aks-baseline#392; the same detail text for a vault that allows "selected networks"
//!   only: Azure/application-gateway-kubernetes-ingress#872). [U] whether a vault with no route
//!   at all fails with the same detail.

use serde_json::{Value, json};

use crate::state::State;
use crate::validate::{has_service_endpoint, props};

/// The error the gateway's operation ends with when it cannot reach the vault of a
/// `keyVaultSecretId` certificate; `None` when it has no such certificate or has a path: a public
/// frontend, or every gateway subnet with NAT or a `Succeeded` `Microsoft.KeyVault` endpoint.
pub fn fetch_failure(state: &State, agw_id: &str, body: &Value) -> Option<Value> {
    let p = props(body);
    let secret = p["sslCertificates"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["properties"]["keyVaultSecretId"].as_str())?;
    let public = p["frontendIPConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f["properties"]["publicIPAddress"]["id"].is_string());
    let subnets: Vec<&str> = p["gatewayIPConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["properties"]["subnet"]["id"].as_str())
        .collect();
    let reaches = |id: &&str| {
        state.get(id).is_some_and(|s| {
            let sp = props(&s.body);
            sp["natGateway"]["id"].is_string()
                || (s.provisioning_state == "Succeeded"
                    && has_service_endpoint(sp, "Microsoft.KeyVault"))
        })
    };
    if public || (!subnets.is_empty() && subnets.iter().all(reaches)) {
        return None;
    }
    Some(json!({
        "code": "ApplicationGatewayKeyVaultSecretException",
        "message": format!("Problem occured while accessing and validating KeyVault Secrets associated with Application Gateway '{agw_id}'. See details below:"),
        "details": [{
            "code": "ApplicationGatewayKeyVaultSecretAccessDenied",
            "message": format!("Access denied for KeyVault Secret '{secret}' for Application Gateway '{agw_id}'. Make sure that Identity assigned to Application Gateway has access to the KeyVault associated with secret."),
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Resource;

    const SUBNET: &str = "/subscriptions/s/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/agw";
    const AGW: &str =
        "/subscriptions/s/resourceGroups/f/providers/Microsoft.Network/applicationGateways/agw";
    const SECRET: &str = "https://fhir-vault.vault.azure.net/secrets/fhir-tls";

    fn state_with(subnet: Option<(Value, &str)>) -> State {
        let mut st = State::default();
        if let Some((properties, provisioning)) = subnet {
            st.resources.insert(
                crate::ids::key(SUBNET),
                Resource {
                    id: SUBNET.into(),
                    rtype: crate::validate::NET_SUBNET.into(),
                    body: json!({"properties": properties}),
                    provisioning_state: provisioning.into(),
                    etag: String::new(),
                    pending_op: None,
                    firewall_history: vec![],
                },
            );
        }
        st
    }

    fn gateway(cert: Value, public: bool) -> Value {
        let mut fes = vec![json!({"name": "fe", "properties": {"privateIPAddress": "10.20.1.10"}})];
        if public {
            fes.push(json!({"name": "pub", "properties": {"publicIPAddress": {"id": "/subscriptions/s/resourceGroups/f/providers/Microsoft.Network/publicIPAddresses/p"}}}));
        }
        json!({"properties": {
            "gatewayIPConfigurations": [{"name": "gw", "properties": {"subnet": {"id": SUBNET}}}],
            "frontendIPConfigurations": fes,
            "sslCertificates": [{"name": "c", "properties": cert}],
        }})
    }

    #[test]
    fn a_key_vault_certificate_needs_a_path_to_the_vault() {
        let kv = json!({"keyVaultSecretId": SECRET});
        let pfx = json!({"data": "UEZY", "password": "pw"});
        let web = json!({"serviceEndpoints": [{"service": "Microsoft.Web"}]});
        let both = json!({"serviceEndpoints": [{"service": "Microsoft.Web"}, {"service": "microsoft.keyvault"}]});
        let nat = json!({"natGateway": {"id": "/subscriptions/s/resourceGroups/n/providers/Microsoft.Network/natGateways/nat"}});
        // (case, certificate, public frontend, gateway subnet (properties, provisioningState), fails)
        type Case<'a> = (&'a str, &'a Value, bool, Option<(Value, &'a str)>, bool);
        let cases: Vec<Case> = vec![
            (
                "PFX, no endpoint",
                &pfx,
                false,
                Some((web.clone(), "Succeeded")),
                false,
            ),
            (
                "Key Vault, Microsoft.Web only",
                &kv,
                false,
                Some((web.clone(), "Succeeded")),
                true,
            ),
            (
                "Key Vault, endpoint Succeeded",
                &kv,
                false,
                Some((both.clone(), "Succeeded")),
                false,
            ),
            (
                "Key Vault, endpoint still Updating",
                &kv,
                false,
                Some((both.clone(), "Updating")),
                true,
            ),
            (
                "Key Vault, a public frontend egresses",
                &kv,
                true,
                Some((web.clone(), "Succeeded")),
                false,
            ),
            (
                "Key Vault, NAT on the subnet egresses",
                &kv,
                false,
                Some((nat, "Succeeded")),
                false,
            ),
            ("Key Vault, subnet unknown", &kv, false, None, true),
        ];
        for (case, cert, public, subnet, fails) in cases {
            let st = state_with(subnet);
            let got = fetch_failure(&st, AGW, &gateway(cert.clone(), public));
            assert_eq!(got.is_some(), fails, "{case}: {got:?}");
            if let Some(e) = got {
                assert_eq!(e["code"], "ApplicationGatewayKeyVaultSecretException");
                assert!(e["message"].as_str().unwrap().contains(AGW), "{e}");
                assert_eq!(
                    e["details"][0]["code"],
                    "ApplicationGatewayKeyVaultSecretAccessDenied"
                );
                assert!(
                    e["details"][0]["message"]
                        .as_str()
                        .unwrap()
                        .contains(SECRET)
                );
            }
        }
    }
}
