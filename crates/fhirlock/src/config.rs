//! The operator's configuration file (`fhirlock run --config`): which Azure scopes each namespace
//! may touch, and with which identity; and where Azure is. Documented in docs/operations.md.
//!
//! ```yaml
//! cloud:                                  # optional; default Azure public cloud
//!   armEndpoint: https://management.azure.com
//!   audience: https://management.azure.com
//!   authorityHost: https://login.microsoftonline.com/
//!   caBundle: /etc/fhirlock/ca.pem        # extra CA (TLS inspection proxies, the emulator)
//! tenants:
//!   - namespace: fhir
//!     scopes:                             # ARM scopes endpoints in this namespace may touch
//!       - /subscriptions/6f1c2a52-0000-4000-8000-000000000001/resourceGroups/fhir
//!       - /subscriptions/6f1c2a52-0000-4000-8000-000000000001/resourceGroups/hscn-net
//!     identity:                           # exactly one of:
//!       workloadIdentity: { tenantId: …, clientId: …, serviceAccount: fhir-azure }
//!       # clientSecret: { tenantId: …, clientId: …, secretName: fhir-azure }   # key clientSecret
//!       # managedIdentity: { clientId: … } # the pod's managed identity (IMDS); no clientId:
//!       #                                 # system-assigned. Any tenant so configured acts with
//!       #                                 # its roles: the platform team's choice, per tenant
//!       # operator: {}                    # the operator's own identity (AZURE_* environment)
//!     privateNetwork:                     # optional: the wording of status.nextSteps
//!       name: HSCN                        # default: HSCN, NHS England's IPAM and DNS teams
//!       addressing: the HSCN team of the trust's network supplier
//!       dns: NHS England's HSCN DNS team
//! ```

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorConfig {
    #[serde(default)]
    pub cloud: Option<CloudConfig>,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudConfig {
    pub arm_endpoint: Option<String>,
    pub audience: Option<String>,
    pub authority_host: Option<String>,
    pub ca_bundle: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub namespace: String,
    pub scopes: Vec<String>,
    pub identity: Identity,
    /// Whether endpoints of this namespace may name their own identity (`spec.identityRef`), and
    /// which. Absent: they may not, and an endpoint that does stalls with `IdentityRefNotAllowed`.
    /// Without this gate anyone who may create a Secret, or a ServiceAccount, in the namespace
    /// could make fhirlock act as any identity whose secret they hold, or mint tokens for any
    /// ServiceAccount of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_ref: Option<IdentityRefPolicy>,
    /// The private network this namespace's endpoints serve, and who runs it, for the wording of
    /// `status.nextSteps`. Absent: the HSCN, with NHS England's addressing and DNS teams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_network: Option<PrivateNetworkConfig>,
}

/// `tenants[].privateNetwork`: all three fields, so that no HSCN wording is left in the next steps
/// of an endpoint on another network.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateNetworkConfig {
    /// The network's name ("HSCN", "PSN", …).
    pub name: String,
    /// Who allocates the service's address on it and forwards it to the gateway's private IP.
    pub addressing: String,
    /// Who publishes the DNS record for the host name.
    pub dns: String,
}

impl Tenant {
    /// The wording of the next steps for this namespace's endpoints.
    pub fn private_network(&self) -> fhirlock_core::status::PrivateNetwork {
        match &self.private_network {
            Some(p) => fhirlock_core::status::PrivateNetwork {
                name: p.name.clone(),
                addressing: p.addressing.clone(),
                dns: p.dns.clone(),
            },
            None => Default::default(),
        }
    }
}

/// What `spec.identityRef` may name in one tenant namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityRefPolicy {
    /// An identity Secret holding a `clientSecret`.
    #[serde(default)]
    pub client_secrets: bool,
    /// The ServiceAccounts an identity Secret may name for workload identity (key
    /// `serviceAccount`, `default` when absent).
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

impl IdentityRefPolicy {
    /// `Err` says why `spec.identityRef`'s Secret may not be used: with a client secret
    /// (`service_account` `None`), or federated as `service_account`.
    pub fn check(&self, service_account: Option<&str>) -> Result<(), String> {
        match service_account {
            None if self.client_secrets => Ok(()),
            None => {
                Err("client secrets in spec.identityRef are not allowed for this namespace".into())
            }
            Some(sa) if self.service_accounts.iter().any(|x| x == sa) => Ok(()),
            Some(sa) => Err(format!(
                "ServiceAccount {sa} is not one spec.identityRef may use in this namespace (allowed: {})",
                if self.service_accounts.is_empty() {
                    "none".to_owned()
                } else {
                    self.service_accounts.join(", ")
                }
            )),
        }
    }
}

/// Exactly one of the four ways to act in Azure.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Federated: fhirlock mints a token for this namespace's ServiceAccount through the
    /// TokenRequest API (audience api://AzureADTokenExchange) and exchanges it with Entra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
    /// A client secret kept in a Secret of this namespace (key `clientSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ClientSecret>,
    /// The managed identity of the node or pod fhirlock runs on (IMDS, or App Service's
    /// IDENTITY_ENDPOINT), without a secret. Every tenant given it acts with all of its roles,
    /// so only the operator's administrator grants it, per tenant; no namespace can ask for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<ManagedIdentity>,
    /// The operator's own identity, from its AZURE_* environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<serde_json::Value>,
}

/// `identity.managedIdentity`: a user-assigned identity by its client ID, or (empty) the
/// system-assigned one.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadIdentity {
    pub tenant_id: String,
    pub client_id: String,
    pub service_account: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSecret {
    pub tenant_id: String,
    pub client_id: String,
    pub secret_name: String,
}

impl OperatorConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let cfg: OperatorConfig =
            serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for t in &cfg.tenants {
            let set = [
                t.identity.workload_identity.is_some(),
                t.identity.client_secret.is_some(),
                t.identity.managed_identity.is_some(),
                t.identity.operator.is_some(),
            ];
            if set.iter().filter(|b| **b).count() != 1 {
                anyhow::bail!(
                    "{}: tenant {}: identity must set exactly one of workloadIdentity, clientSecret, managedIdentity, operator",
                    path.display(),
                    t.namespace
                );
            }
            if let Some(p) = &t.private_network {
                for (field, v) in [
                    ("name", &p.name),
                    ("addressing", &p.addressing),
                    ("dns", &p.dns),
                ] {
                    if v.trim().is_empty() {
                        anyhow::bail!(
                            "{}: tenant {}: privateNetwork.{field} must not be empty",
                            path.display(),
                            t.namespace
                        );
                    }
                }
            }
            for s in &t.scopes {
                if let Err(why) = check_scope(s) {
                    anyhow::bail!(
                        "{}: tenant {}: scope {s:?} {why}",
                        path.display(),
                        t.namespace
                    );
                }
            }
        }
        Ok(cfg)
    }

    pub fn tenant(&self, namespace: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.namespace == namespace)
    }
}

/// A tenant's scope must name a subscription by its ID, optionally narrowed to a resource group
/// and below: `/subscriptions/<guid>[/resourceGroups/<name>[/…]]`. Anything looser (`/`,
/// `/subscriptions/`, a wildcard) would match every resource fhirlock can reach.
pub fn check_scope(scope: &str) -> Result<(), &'static str> {
    let segments: Vec<&str> = scope.strip_prefix('/').unwrap_or("").split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("has an empty segment: write /subscriptions/<id>[/resourceGroups/<name>]");
    }
    match segments.as_slice() {
        [subs, sub, rest @ ..] if subs.eq_ignore_ascii_case("subscriptions") => {
            if !is_guid(sub) {
                return Err("must name a subscription by its ID (a GUID)");
            }
            match rest {
                [] => Ok(()),
                [rgs, rg, ..] if rgs.eq_ignore_ascii_case("resourceGroups") && is_rg_name(rg) => {
                    Ok(())
                }
                _ => Err("may narrow a subscription only to /resourceGroups/<name>[/…]"),
            }
        }
        _ => Err("must start /subscriptions/<subscription id>"),
    }
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Resource group names (Microsoft Learn, "Naming rules and restrictions for Azure resources",
/// Microsoft.Resources): 1–90 characters, alphanumerics, underscores, parentheses, hyphens and
/// periods, not ending in a period.
fn is_rg_name(s: &str) -> bool {
    (1..=90).contains(&s.chars().count())
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_alphanumeric() || "_()-.".contains(c))
}

/// Every ARM resource an endpoint names, for the scope check: the ones it reads or writes, and
/// the user-assigned identity it attaches to the gateway (attaching another team's identity
/// would hand this namespace that team's Key Vault certificates).
pub fn resources_of(d: &fhirlock_core::Desired) -> Vec<String> {
    let mut ids = vec![
        d.vnet_id.clone(),
        d.site_id.clone(),
        d.cosmos_id.clone(),
        d.gateway.id.clone(),
    ];
    if let fhirlock_core::Certificate::KeyVault { identity_id, .. } = &d.gateway.certificate {
        ids.push(identity_id.clone());
    }
    ids
}

/// The first resource outside every scope, if any. Scopes match on whole path segments, without case.
pub fn outside_scopes(resources: &[String], scopes: &[String]) -> Option<String> {
    let within = |r: &str, s: &str| {
        let (r, s) = (
            r.to_ascii_lowercase(),
            s.trim_end_matches('/').to_ascii_lowercase(),
        );
        r == s || r.starts_with(&format!("{s}/"))
    };
    resources
        .iter()
        .find(|r| !scopes.iter().any(|s| within(r, s)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_tenancy_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tenancy.yaml");
        let cfg = OperatorConfig::load(&path).unwrap();
        assert!(cfg.tenant("default").unwrap().identity.operator.is_some());
    }

    #[test]
    fn scopes_match_whole_segments_without_case() {
        let scopes = vec!["/subscriptions/S/resourceGroups/fhir".to_owned()];
        let ok = |r: &str| outside_scopes(&[r.to_owned()], &scopes).is_none();
        assert!(ok(
            "/subscriptions/s/resourcegroups/FHIR/providers/Microsoft.Web/sites/a"
        ));
        assert!(!ok(
            "/subscriptions/S/resourceGroups/fhir-prod/providers/Microsoft.Web/sites/a"
        ));
        assert!(!ok(
            "/subscriptions/S/resourceGroups/other/providers/Microsoft.Web/sites/a"
        ));
    }

    #[test]
    fn a_scope_names_a_subscription_by_id_and_at_most_narrows_it() {
        let sub = "/subscriptions/6f1c2a52-0000-4000-8000-000000000001";
        let table = [
            (sub.to_owned(), true),
            (format!("{sub}/resourceGroups/fhir"), true),
            (format!("{sub}/resourcegroups/FHIR-prod.1"), true),
            (
                format!("{sub}/resourceGroups/fhir/providers/Microsoft.Web/sites/a"),
                true,
            ),
            ("/subscriptions/".to_owned(), false),
            ("/subscriptions".to_owned(), false),
            ("/".to_owned(), false),
            (String::new(), false),
            ("/subscriptions/*".to_owned(), false),
            ("/subscriptions/my-sub".to_owned(), false),
            (format!("{sub}/"), false),
            (format!("{sub}/resourceGroups"), false),
            (format!("{sub}/resourceGroups/"), false),
            (format!("{sub}/resourceGroups/bad."), false),
            (format!("{sub}/providers/Microsoft.Web"), false),
            (format!("{sub}//resourceGroups/fhir"), false),
        ];
        for (scope, ok) in table {
            assert_eq!(check_scope(&scope).is_ok(), ok, "{scope:?}");
        }
    }

    #[test]
    fn a_key_vault_identity_is_checked_against_the_scopes_too() {
        let sub = "/subscriptions/6f1c2a52-0000-4000-8000-000000000001";
        let mut d = fhirlock_core::Desired::from_spec(
            "fhir",
            "e",
            &serde_yaml::from_str::<fhirlock_api::SecuredFhirEndpoint>(include_str!(
                "../../../examples/fhir-endpoint.yaml"
            ))
            .unwrap()
            .spec,
            fhirlock_core::Certificate::Unresolved { reason: "t".into() },
        );
        let scopes = vec![
            format!("{sub}/resourceGroups/hscn-net"),
            format!("{sub}/resourceGroups/fhir"),
        ];
        assert_eq!(outside_scopes(&resources_of(&d), &scopes), None);
        let theirs = format!(
            "{sub}/resourceGroups/other-team/providers/Microsoft.ManagedIdentity/userAssignedIdentities/their-id"
        );
        d.gateway.certificate = fhirlock_core::Certificate::KeyVault {
            secret_id: "https://v.vault.azure.net/secrets/s".into(),
            identity_id: theirs.clone(),
        };
        assert_eq!(outside_scopes(&resources_of(&d), &scopes), Some(theirs));
    }

    #[test]
    fn identity_ref_is_opt_in_per_tenant_with_an_allowlist_of_service_accounts() {
        let cfg: OperatorConfig = serde_yaml::from_str(
            "tenants:\n- namespace: a\n  scopes: []\n  identity: {operator: {}}\n- namespace: b\n  scopes: []\n  identity: {operator: {}}\n  identityRef: {clientSecrets: true, serviceAccounts: [fhir-azure]}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.tenant("a").unwrap().identity_ref,
            None,
            "off unless opted in"
        );
        let b = cfg.tenant("b").unwrap().identity_ref.clone().unwrap();
        assert!(b.check(None).is_ok());
        assert!(b.check(Some("fhir-azure")).is_ok());
        assert!(
            b.check(Some("default"))
                .unwrap_err()
                .contains("allowed: fhir-azure")
        );
        let secrets_only = IdentityRefPolicy {
            client_secrets: true,
            service_accounts: vec![],
        };
        assert!(
            secrets_only
                .check(Some("default"))
                .unwrap_err()
                .contains("allowed: none")
        );
        let federated_only = IdentityRefPolicy {
            client_secrets: false,
            service_accounts: vec!["x".into()],
        };
        assert!(federated_only.check(None).is_err());
    }

    #[test]
    fn a_tenant_may_word_the_next_steps_for_its_own_private_network() {
        let dir = tempfile::tempdir().unwrap();
        let load = |yaml: &str| {
            let p = dir.path().join("tenancy.yaml");
            std::fs::write(&p, yaml).unwrap();
            OperatorConfig::load(&p)
        };
        let head = "tenants:\n- namespace: hscn\n  scopes: []\n  identity: {operator: {}}\n- namespace: council\n  scopes: []\n  identity: {operator: {}}\n  privateNetwork:\n";
        let cfg = load(&format!(
            "{head}    name: PSN\n    addressing: the PSN service desk\n    dns: the council's DNS team\n"
        ))
        .unwrap();
        assert_eq!(
            cfg.tenant("hscn").unwrap().private_network(),
            fhirlock_core::status::PrivateNetwork::default(),
            "absent: the HSCN and NHS England"
        );
        assert_eq!(
            cfg.tenant("council").unwrap().private_network(),
            fhirlock_core::status::PrivateNetwork {
                name: "PSN".into(),
                addressing: "the PSN service desk".into(),
                dns: "the council's DNS team".into(),
            }
        );
        // Half an override would leave HSCN wording behind; a misspelt key is not ignored.
        let partial = load(&format!("{head}    name: PSN\n")).unwrap_err();
        assert!(partial.to_string().contains("missing field"), "{partial}");
        let typo = load(&format!(
            "{head}    name: PSN\n    adressing: x\n    addressing: y\n    dns: z\n"
        ))
        .unwrap_err();
        assert!(typo.to_string().contains("unknown field"), "{typo}");
        let empty = load(&format!(
            "{head}    name: PSN\n    addressing: ' '\n    dns: z\n"
        ))
        .unwrap_err();
        assert!(
            empty
                .to_string()
                .contains("privateNetwork.addressing must not be empty"),
            "{empty}"
        );
    }

    #[test]
    fn a_tenant_may_be_given_the_pods_managed_identity_and_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let load = |identity: &str| {
            let p = dir.path().join("tenancy.yaml");
            std::fs::write(
                &p,
                format!("tenants:\n- namespace: fhir\n  scopes: []\n  identity: {identity}\n"),
            )
            .unwrap();
            OperatorConfig::load(&p)
        };
        let system = load("{managedIdentity: {}}").unwrap();
        assert_eq!(
            system.tenant("fhir").unwrap().identity.managed_identity,
            Some(ManagedIdentity { client_id: None })
        );
        let user =
            load("{managedIdentity: {clientId: 6f1c2a52-0000-4000-8000-00000000c009}}").unwrap();
        assert_eq!(
            user.tenant("fhir").unwrap().identity.managed_identity,
            Some(ManagedIdentity {
                client_id: Some("6f1c2a52-0000-4000-8000-00000000c009".into())
            })
        );
        let both = load("{managedIdentity: {}, operator: {}}").unwrap_err();
        assert!(both.to_string().contains("exactly one of"), "{both}");
        let typo = load("{managedIdentity: {clientID: x}}").unwrap_err();
        assert!(typo.to_string().contains("unknown field"), "{typo}");
        // `identity: managed` is not a shorthand: the map says which identity.
        assert!(load("managed").is_err());
    }

    #[test]
    fn the_config_format_parses_and_rejects_unknown_fields() {
        let cfg: OperatorConfig = serde_yaml::from_str(
            "tenants:\n- namespace: fhir\n  scopes: [/subscriptions/S/resourceGroups/fhir]\n  identity:\n    workloadIdentity: {tenantId: t, clientId: c, serviceAccount: fhir-azure}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.tenant("fhir").unwrap().identity.workload_identity,
            Some(WorkloadIdentity {
                tenant_id: "t".into(),
                client_id: "c".into(),
                service_account: "fhir-azure".into()
            })
        );
        assert!(serde_yaml::from_str::<OperatorConfig>("tenants: []\nextra: 1\n").is_err());
    }
}
