//! **resolve**: may this namespace touch these Azure scopes, and as whom; the certificate; the
//! ARM client. Kubernetes I/O only, and anything wrong stalls with zero Azure calls. A namespace
//! never acts with another's identity: for workload identity fhirlock mints the federated token
//! for the namespace's *own* ServiceAccount through the TokenRequest API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_arm::{ArmClient, ArmConfig, AssertionSource, Cloud, CredentialConfig, Url};
use fhirlock_core::certificate::Expiry;
use fhirlock_core::{Certificate, Desired};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;

use super::{Context, Exit};
use crate::config::{self, OperatorConfig};
use crate::telemetry::Metrics;

/// The stage: the endpoint's desired state and an ARM client acting as its identity.
pub async fn stage(ctx: &Context, sfe: &SecuredFhirEndpoint) -> Result<Resolved, Exit> {
    ctx.identities.resolve(sfe).await.map_err(Exit::Stalled)
}

/// Why an endpoint cannot proceed, before any Azure call.
#[derive(Debug)]
pub struct Stall {
    pub reason: &'static str,
    pub message: String,
}

fn stall(reason: &'static str, message: impl Into<String>) -> Stall {
    Stall {
        reason,
        message: message.into(),
    }
}

pub struct Resolved {
    pub desired: Desired,
    pub arm: ArmClient,
    /// The listener certificate's expiry, when fhirlock has it (a Secret, not Key Vault).
    pub expiry: Option<Expiry>,
}

pub struct Identities {
    client: kube::Client,
    config: OperatorConfig,
    cloud: Cloud,
    ca_bundle: Option<PathBuf>,
    metrics: Arc<Metrics>,
    /// ARM clients by identity (and the Secret version they were built from).
    cache: Mutex<HashMap<String, ArmClient>>,
    /// The controller's cache of every endpoint, where the peers come from (none in tests that
    /// build no controller).
    endpoints: Option<Store<crate::controller::Endpoints>>,
}

impl Identities {
    pub fn new(
        client: kube::Client,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let c = config.cloud.clone().unwrap_or_default();
        let arm = c.arm_endpoint.or_else(|| env("FHIRLOCK_ARM_ENDPOINT"));
        let audience = c.audience.or_else(|| env("FHIRLOCK_ARM_AUDIENCE"));
        let authority = c.authority_host.or_else(|| env("AZURE_AUTHORITY_HOST"));
        let mut cloud = Cloud::azure_public();
        if let Some(a) = arm {
            cloud.arm_endpoint = Url::parse(&a)?;
            cloud.audience = cloud.arm_endpoint.origin().ascii_serialization();
        }
        if let Some(a) = audience {
            cloud.audience = a;
        }
        if let Some(a) = authority {
            cloud.authority_host = Url::parse(&a)?;
        }
        let ca_bundle = c
            .ca_bundle
            .or_else(|| env("FHIRLOCK_CA_BUNDLE"))
            .map(PathBuf::from);
        Ok(Identities {
            client,
            config,
            cloud,
            ca_bundle,
            metrics,
            cache: Mutex::new(HashMap::new()),
            endpoints: None,
        })
    }

    /// Resolves each endpoint's peers from the controller's cache of endpoints.
    pub fn with_peers(self, endpoints: Store<crate::controller::Endpoints>) -> Self {
        Identities {
            endpoints: Some(endpoints),
            ..self
        }
    }

    pub async fn resolve(&self, sfe: &SecuredFhirEndpoint) -> Result<Resolved, Stall> {
        let ns = sfe.namespace().unwrap_or_default();
        let tenant = self.config.tenant(&ns).ok_or_else(|| {
            stall("OutOfScope", format!("namespace {ns} has no entry in the operator's tenancy configuration: ask the platform team to add its Azure scopes and identity"))
        })?;
        let (certificate, expiry) = self.certificate(sfe, &ns).await?;
        let mut desired = Desired::from_spec(&ns, &sfe.name_any(), &sfe.spec, certificate);
        // The other endpoints as the cache holds them now (a local read, no request). Only those
        // in a tenant namespace: fhirlock never acts for any other, so they own nothing in Azure
        // and claim nothing (an endpoint in a namespace nobody onboarded cannot block a tenant's).
        if let Some(store) = &self.endpoints {
            let all = store.state();
            desired.peers = crate::controller::peers_of(
                sfe,
                all.iter().filter_map(|g| g.0.as_ref().ok()).filter(|e| {
                    self.config
                        .tenant(&e.namespace().unwrap_or_default())
                        .is_some()
                }),
            );
        }
        desired.private_network = tenant.private_network();
        desired.gateway.owned_waf_policy_recorded = sfe.status.as_ref().is_some_and(|s| {
            s.created_resources
                .iter()
                .any(|c| fhirlock_core::id::same(c, &desired.gateway.owned_waf_policy_id))
        });
        desired.recorded_site_certificates = sfe
            .status
            .as_ref()
            .map(|s| s.created_resources.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| desired.is_site_certificate_id(c))
            .collect();
        if let Some(outside) =
            config::outside_scopes(&config::resources_of(&desired), &tenant.scopes)
        {
            return Err(stall(
                "OutOfScope",
                format!(
                    "{outside} is outside the Azure scopes namespace {ns} may touch ({})",
                    tenant.scopes.join(", ")
                ),
            ));
        }
        let (cache_key, credential) = self.credential(sfe, &ns, tenant).await?;
        let arm = {
            let mut cache = self.cache.lock().unwrap();
            if let Some(c) = cache.get(&cache_key) {
                c.clone()
            } else {
                let cfg = ArmConfig {
                    cloud: self.cloud.clone(),
                    credential,
                    extra_ca_pem: self.ca_bundle.clone(),
                    user_agent: Some("fhirlock".into()),
                };
                let c = ArmClient::new(cfg)
                    .map_err(|e| {
                        stall(
                            "InvalidIdentity",
                            format!("cannot build the Azure client: {e}"),
                        )
                    })?
                    .with_observer(self.metrics.clone());
                evict_replaced(&mut cache, &cache_key);
                cache.insert(cache_key, c.clone());
                c
            }
        };
        Ok(Resolved {
            desired,
            arm,
            expiry,
        })
    }

    /// The certificate, and its expiry when it comes from a Secret. A Secret whose certificate
    /// does not cover spec.gateway.hostName stalls (`CertificateHostMismatch`) before any Azure
    /// call; fhirlock looks again when the Secret changes.
    async fn certificate(
        &self,
        sfe: &SecuredFhirEndpoint,
        ns: &str,
    ) -> Result<(Certificate, Option<Expiry>), Stall> {
        let tls = &sfe.spec.gateway.tls;
        if let Some(id) = &tls.key_vault_secret_id {
            // Admission requires keyVaultIdentityId with keyVaultSecretId; an object stored
            // before that rule existed stalls here instead of failing in Azure.
            let Some(identity) = &tls.key_vault_identity_id else {
                return Err(stall(
                    "InvalidSpec",
                    "spec.gateway.tls.keyVaultIdentityId is required with keyVaultSecretId: set it to the resource ID of a user-assigned identity that holds Key Vault Secrets User on the secret",
                ));
            };
            return Ok((
                Certificate::KeyVault {
                    secret_id: id.clone(),
                    identity_id: identity.clone(),
                },
                None,
            ));
        }
        let Some(r) = &tls.secret_ref else {
            let none = Certificate::Unresolved {
                reason: "no certificate source".into(),
            };
            return Ok((none, None));
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = match secrets.get_opt(&r.name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let missing = Certificate::Unresolved {
                    reason: format!("Secret {ns}/{} does not exist yet", r.name),
                };
                return Ok((missing, None));
            }
            Err(e) => {
                return Err(stall(
                    "SecretUnreadable",
                    format!("reading Secret {ns}/{}: {e}", r.name),
                ));
            }
        };
        let data = secret.data.unwrap_or_default();
        let (Some(crt), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
            return Err(stall(
                "InvalidCertificate",
                format!(
                    "Secret {ns}/{} must be a kubernetes.io/tls Secret with tls.crt and tls.key",
                    r.name
                ),
            ));
        };
        let host = &sfe.spec.gateway.host_name;
        crate::tls::listener(host, &crt.0, &key.0, crate::tls::unix_now())
            .map(|(c, e)| (c, Some(e)))
            .map_err(|s| stall(s.reason, format!("Secret {ns}/{}: {}", r.name, s.message)))
    }

    async fn credential(
        &self,
        sfe: &SecuredFhirEndpoint,
        ns: &str,
        tenant: &config::Tenant,
    ) -> Result<(String, CredentialConfig), Stall> {
        let identity = &tenant.identity;
        // identityRef in the spec names a Secret of this namespace, where the tenancy allows it;
        // otherwise the tenant's identity.
        if let Some(r) = &sfe.spec.identity_ref {
            let Some(policy) = &tenant.identity_ref else {
                return Err(stall(
                    "IdentityRefNotAllowed",
                    format!(
                        "namespace {ns} may not name its own identity (spec.identityRef): remove it to use the namespace's identity, or ask the platform team to allow it in the tenancy configuration"
                    ),
                ));
            };
            let (version, get) = self.identity_secret(ns, &r.name, "identity Secret").await?;
            let (Some(tenant_id), Some(client_id)) = (get("tenantId"), get("clientId")) else {
                return Err(stall(
                    "InvalidIdentity",
                    format!(
                        "identity Secret {ns}/{} needs tenantId and clientId",
                        r.name
                    ),
                ));
            };
            let secret = get("clientSecret");
            let sa = get("serviceAccount").unwrap_or_else(|| "default".into());
            policy
                .check(secret.is_none().then_some(sa.as_str()))
                .map_err(|why| {
                    stall(
                        "IdentityRefNotAllowed",
                        format!("identity Secret {ns}/{}: {why}", r.name),
                    )
                })?;
            return Ok(match secret {
                Some(secret) => (
                    format!("secret:{tenant_id}/{client_id}/{ns}/{}@{version}", r.name),
                    CredentialConfig::ClientSecret {
                        tenant_id,
                        client_id,
                        secret,
                    },
                ),
                None => (
                    format!("wi:{ns}/{sa}/{client_id}"),
                    self.federated(ns, &sa, tenant_id, client_id),
                ),
            });
        }
        if let Some(w) = &identity.workload_identity {
            return Ok((
                format!("wi:{ns}/{}/{}", w.service_account, w.client_id),
                self.federated(
                    ns,
                    &w.service_account,
                    w.tenant_id.clone(),
                    w.client_id.clone(),
                ),
            ));
        }
        if let Some(m) = &identity.managed_identity {
            // The tenancy said so; the endpoint cannot (identityRef names Secrets only).
            let key = format!("mi:{}", m.client_id.as_deref().unwrap_or("system"));
            let client_id = m.client_id.clone();
            return Ok((key, CredentialConfig::ManagedIdentity { client_id }));
        }
        if let Some(c) = &identity.client_secret {
            let (version, get) = self.identity_secret(ns, &c.secret_name, "Secret").await?;
            let secret = get("clientSecret").ok_or_else(|| {
                stall(
                    "InvalidIdentity",
                    format!("Secret {ns}/{} has no clientSecret key", c.secret_name),
                )
            })?;
            return Ok((
                format!(
                    "secret:{}/{}/{ns}/{}@{version}",
                    c.tenant_id, c.client_id, c.secret_name
                ),
                CredentialConfig::ClientSecret {
                    tenant_id: c.tenant_id.clone(),
                    client_id: c.client_id.clone(),
                    secret,
                },
            ));
        }
        let operator = ArmConfig::from_env().map_err(|e| {
            stall(
                "InvalidIdentity",
                format!("the operator's own identity: {e}"),
            )
        })?;
        Ok(("operator".into(), operator.credential))
    }

    /// A Secret holding credentials: its resourceVersion (a changed Secret builds a new client),
    /// and a reader of its keys as trimmed text. Missing or unreadable is a stall, named as `what`.
    async fn identity_secret(
        &self,
        ns: &str,
        name: &str,
        what: &str,
    ) -> Result<(String, impl Fn(&str) -> Option<String>), Stall> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = secrets
            .get_opt(name)
            .await
            .map_err(|e| {
                stall(
                    "SecretUnreadable",
                    format!("reading {what} {ns}/{name}: {e}"),
                )
            })?
            .ok_or_else(|| {
                stall(
                    "IdentityNotFound",
                    format!("{what} {ns}/{name} does not exist"),
                )
            })?;
        let version = s.resource_version().unwrap_or_default();
        let data = s.data.unwrap_or_default();
        Ok((version, move |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
        }))
    }

    fn federated(
        &self,
        ns: &str,
        service_account: &str,
        tenant_id: String,
        client_id: String,
    ) -> CredentialConfig {
        CredentialConfig::ClientAssertion {
            tenant_id,
            client_id,
            source: Arc::new(ServiceAccountToken {
                client: self.client.clone(),
                namespace: ns.to_owned(),
                name: service_account.to_owned(),
            }),
        }
    }
}

/// Drops the clients built from earlier versions of the Secret `key` comes from (`…@<version>`):
/// a rotated client secret must not stay in memory, nor the cache grow with every rotation.
fn evict_replaced<V>(cache: &mut HashMap<String, V>, key: &str) {
    if let Some((source, _)) = key.rsplit_once('@') {
        cache.retain(|k, _| k.rsplit_once('@').is_none_or(|(s, _)| s != source));
    }
}

/// A federated credential: a token for this namespace's ServiceAccount, audience
/// `api://AzureADTokenExchange`, minted by the apiserver on every exchange.
pub struct ServiceAccountToken {
    client: kube::Client,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for ServiceAccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccountToken({}/{})", self.namespace, self.name)
    }
}

#[async_trait]
impl AssertionSource for ServiceAccountToken {
    async fn assertion(&self) -> anyhow::Result<String> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["api://AzureADTokenExchange".into()],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let resp = sas
            .create_token_request(&self.name, &PostParams::default(), &req)
            .await?;
        resp.status.map(|s| s.token).ok_or_else(|| {
            anyhow::anyhow!(
                "TokenRequest for {}/{} returned no token",
                self.namespace,
                self.name
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_secret_replaces_its_client_and_nothing_else() {
        let mut cache: HashMap<String, u8> = [
            ("secret:t1/c1/ns/s@1".to_owned(), 1),
            ("secret:t2/c1/ns/s@1".to_owned(), 2),
            ("secret:t1/c1/other/s@1".to_owned(), 3),
            ("wi:ns/sa/c1".to_owned(), 4),
            ("operator".to_owned(), 5),
        ]
        .into();
        evict_replaced(&mut cache, "secret:t1/c1/ns/s@2");
        let mut left: Vec<_> = cache.values().copied().collect();
        left.sort();
        assert_eq!(
            left,
            [2, 3, 4, 5],
            "another tenant's client with the same Secret name stays"
        );
    }
}
