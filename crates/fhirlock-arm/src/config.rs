//! Where ARM is (the cloud) and who we are (the credential). Chosen explicitly: there is no
//! credential chain, and `Debug` never shows a secret.

use anyhow::{Context, bail};
use azure_core::http::Url;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The endpoints of one Azure cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cloud {
    /// ARM's base URL, e.g. `https://management.azure.com/`.
    pub arm_endpoint: Url,
    /// The token audience for ARM, e.g. `https://management.azure.com`; the scope requested is
    /// `<audience>/.default`.
    pub audience: String,
    /// Entra's authority host, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: Url,
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("static URL")
}

impl Cloud {
    pub fn azure_public() -> Self {
        Cloud {
            arm_endpoint: url("https://management.azure.com/"),
            audience: "https://management.azure.com".into(),
            authority_host: url("https://login.microsoftonline.com/"),
        }
    }

    pub fn azure_us_government() -> Self {
        Cloud {
            arm_endpoint: url("https://management.usgovcloudapi.net/"),
            audience: "https://management.usgovcloudapi.net".into(),
            authority_host: url("https://login.microsoftonline.us/"),
        }
    }

    pub fn azure_china() -> Self {
        Cloud {
            arm_endpoint: url("https://management.chinacloudapi.cn/"),
            audience: "https://management.chinacloudapi.cn".into(),
            authority_host: url("https://login.chinacloudapi.cn/"),
        }
    }

    /// Any other cloud (Azure Stack, the emulator, a proxy).
    pub fn custom(arm_endpoint: Url, authority_host: Url, audience: impl Into<String>) -> Self {
        Cloud {
            arm_endpoint,
            audience: audience.into(),
            authority_host,
        }
    }

    /// The OAuth scope for ARM: `<audience>/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.audience.trim_end_matches('/'))
    }
}

/// Supplies a client assertion (a JWT from another issuer, e.g. a Kubernetes service-account
/// token minted with the TokenRequest API) for each token exchange.
#[async_trait::async_trait]
pub trait AssertionSource: Send + Sync + fmt::Debug {
    /// Called for every token exchange; return a fresh (unexpired) assertion.
    async fn assertion(&self) -> anyhow::Result<String>;
}

/// Which identity to use. Picked explicitly: no chain of fallbacks.
#[derive(Clone)]
pub enum CredentialConfig {
    /// An app registration's client secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: String,
    },
    /// Azure Workload Identity: a federated service-account token in a file, re-read on every
    /// token exchange (the kubelet rotates it).
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// A federated credential whose assertion comes from code (per-namespace identities).
    ClientAssertion {
        tenant_id: String,
        client_id: String,
        source: Arc<dyn AssertionSource>,
    },
    /// The managed identity of the host (IMDS / App Service); `client_id` picks a user-assigned one.
    ManagedIdentity { client_id: Option<String> },
    /// The person logged in to the Azure CLI (`az login`): `azure_identity`'s
    /// `AzureCliCredential` runs `az account get-access-token -o json --scope <ARM>/.default
    /// [--tenant T]` for every token. For the one-shot commands, run by people.
    AzureCli { tenant_id: Option<String> },
    /// Any other `azure_core` credential (e.g. `DeveloperToolsCredential` for local work, or a
    /// test double). Never chosen by [`ArmConfig::from_env`]. On an expired-token 401 it is asked
    /// again (it owns its cache).
    Custom(Arc<dyn azure_core::credentials::TokenCredential>),
}

impl CredentialConfig {
    /// A short name for logs: `client-secret`, `workload-identity`, `client-assertion`,
    /// `managed-identity`, `azure-cli`.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialConfig::ClientSecret { .. } => "client-secret",
            CredentialConfig::WorkloadIdentity { .. } => "workload-identity",
            CredentialConfig::ClientAssertion { .. } => "client-assertion",
            CredentialConfig::ManagedIdentity { .. } => "managed-identity",
            CredentialConfig::AzureCli { .. } => "azure-cli",
            CredentialConfig::Custom(_) => "custom",
        }
    }
}

impl fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialConfig::ClientSecret {
                tenant_id,
                client_id,
                secret: _,
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
            CredentialConfig::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            CredentialConfig::ClientAssertion {
                tenant_id,
                client_id,
                source,
            } => f
                .debug_struct("ClientAssertion")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("source", source)
                .finish(),
            CredentialConfig::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            CredentialConfig::AzureCli { tenant_id } => f
                .debug_struct("AzureCli")
                .field("tenant_id", tenant_id)
                .finish(),
            CredentialConfig::Custom(c) => f.debug_tuple("Custom").field(c).finish(),
        }
    }
}

/// Everything [`crate::ArmClient::new`] needs.
#[derive(Clone, Debug)]
pub struct ArmConfig {
    pub cloud: Cloud,
    pub credential: CredentialConfig,
    /// Extra PEM roots to trust, on top of the system's, for both Entra and ARM (corporate TLS
    /// inspection, the emulator).
    pub extra_ca_pem: Option<PathBuf>,
    /// Application id for the `User-Agent` (at most 24 characters, azure_core's limit).
    pub user_agent: Option<String>,
}

/// Environment variables read by [`ArmConfig::from_env`].
pub mod env {
    /// `client-secret`, `workload-identity`, `managed-identity` or `azure-cli`. Required when the
    /// environment would allow more than one, and for managed identity and the Azure CLI.
    pub const CREDENTIAL: &str = "FHIRLOCK_ARM_CREDENTIAL";
    /// `public` (default), `usgovernment` or `china`: the preset the variables below refine.
    pub const CLOUD: &str = "FHIRLOCK_AZURE_CLOUD";
    pub const ARM_ENDPOINT: &str = "FHIRLOCK_ARM_ENDPOINT";
    pub const ARM_ENDPOINT_AZURE: &str = "AZURE_RESOURCE_MANAGER_ENDPOINT";
    /// Token audience for ARM; default: the ARM endpoint's origin (preset clouds: their audience).
    pub const ARM_AUDIENCE: &str = "FHIRLOCK_ARM_AUDIENCE";
    pub const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
    pub const CA_BUNDLE: &str = "FHIRLOCK_CA_BUNDLE";
    pub const TENANT_ID: &str = "AZURE_TENANT_ID";
    pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
    pub const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
    pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
}

impl ArmConfig {
    /// Reads the process environment; see [`ArmConfig::from_lookup`].
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds the configuration from variables (see [`env`]).
    ///
    /// The credential is chosen explicitly: `FHIRLOCK_ARM_CREDENTIAL` if set; otherwise workload
    /// identity when only `AZURE_FEDERATED_TOKEN_FILE` is set, client secret when only
    /// `AZURE_CLIENT_SECRET` is set. Both set, or neither (managed identity must be asked for),
    /// is an error rather than a guess.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut cloud = match get(env::CLOUD).as_deref().map(str::to_ascii_lowercase) {
            None => Cloud::azure_public(),
            Some(c) if c == "public" || c == "azurepubliccloud" => Cloud::azure_public(),
            Some(c) if c == "usgovernment" || c == "azureusgovernment" || c == "usgov" => {
                Cloud::azure_us_government()
            }
            Some(c) if c == "china" || c == "azurechinacloud" => Cloud::azure_china(),
            Some(c) => bail!(
                "{}: unknown cloud {c:?} (public, usgovernment, china)",
                env::CLOUD
            ),
        };
        if let Some(e) = get(env::ARM_ENDPOINT).or_else(|| get(env::ARM_ENDPOINT_AZURE)) {
            let u = Url::parse(&e).with_context(|| format!("ARM endpoint {e:?}"))?;
            cloud.audience = u.origin().ascii_serialization();
            cloud.arm_endpoint = u;
        }
        if let Some(a) = get(env::ARM_AUDIENCE) {
            cloud.audience = a;
        }
        if let Some(a) = get(env::AUTHORITY_HOST) {
            cloud.authority_host =
                Url::parse(&a).with_context(|| format!("{} {a:?}", env::AUTHORITY_HOST))?;
        }
        let tenant =
            || get(env::TENANT_ID).with_context(|| format!("{} is not set", env::TENANT_ID));
        let client =
            || get(env::CLIENT_ID).with_context(|| format!("{} is not set", env::CLIENT_ID));
        let kind = match get(env::CREDENTIAL) {
            Some(k) => k.to_ascii_lowercase(),
            None => match (
                get(env::FEDERATED_TOKEN_FILE).is_some(),
                get(env::CLIENT_SECRET).is_some(),
            ) {
                (true, false) => "workload-identity".into(),
                (false, true) => "client-secret".into(),
                (true, true) => bail!(
                    "both {} and {} are set: choose one with {}=workload-identity|client-secret",
                    env::FEDERATED_TOKEN_FILE,
                    env::CLIENT_SECRET,
                    env::CREDENTIAL
                ),
                (false, false) => bail!(
                    "no ARM credential configured: set {} (workload identity), {} (client secret), or {}=managed-identity",
                    env::FEDERATED_TOKEN_FILE,
                    env::CLIENT_SECRET,
                    env::CREDENTIAL
                ),
            },
        };
        let credential = match kind.as_str() {
            "client-secret" => CredentialConfig::ClientSecret {
                tenant_id: tenant()?,
                client_id: client()?,
                secret: get(env::CLIENT_SECRET)
                    .with_context(|| format!("{} is not set", env::CLIENT_SECRET))?,
            },
            "workload-identity" => CredentialConfig::WorkloadIdentity {
                tenant_id: tenant()?,
                client_id: client()?,
                token_file: get(env::FEDERATED_TOKEN_FILE)
                    .with_context(|| format!("{} is not set", env::FEDERATED_TOKEN_FILE))?
                    .into(),
            },
            "managed-identity" => CredentialConfig::ManagedIdentity {
                client_id: get(env::CLIENT_ID),
            },
            // AZURE_TENANT_ID, when set, picks the tenant among those the person is in.
            "azure-cli" => CredentialConfig::AzureCli {
                tenant_id: get(env::TENANT_ID),
            },
            other => bail!(
                "{}: unknown credential {other:?} (client-secret, workload-identity, managed-identity, azure-cli)",
                env::CREDENTIAL
            ),
        };
        Ok(ArmConfig {
            cloud,
            credential,
            extra_ca_pem: get(env::CA_BUNDLE).map(PathBuf::from),
            user_agent: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const T: (&str, &str) = ("AZURE_TENANT_ID", "t");
    const C: (&str, &str) = ("AZURE_CLIENT_ID", "c");

    #[test]
    fn debug_never_shows_the_secret() {
        let cfg = ArmConfig::from_lookup(lookup(&[T, C, ("AZURE_CLIENT_SECRET", "s3cr3t-Value")]))
            .unwrap();
        let dbg = format!("{cfg:?} {:#?}", cfg.credential);
        assert!(!dbg.contains("s3cr3t-Value"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert_eq!(cfg.credential.kind(), "client-secret");
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn credential_selection_table() {
        let cases: &[(&[(&str, &str)], Result<&str, &str>)] = &[
            (&[T, C, ("AZURE_CLIENT_SECRET", "s")], Ok("client-secret")),
            (
                &[T, C, ("AZURE_FEDERATED_TOKEN_FILE", "/f")],
                Ok("workload-identity"),
            ),
            (
                &[
                    T,
                    C,
                    ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
                    ("AZURE_CLIENT_SECRET", "s"),
                ],
                Err("both"),
            ),
            (
                &[
                    T,
                    C,
                    ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
                    ("AZURE_CLIENT_SECRET", "s"),
                    ("FHIRLOCK_ARM_CREDENTIAL", "client-secret"),
                ],
                Ok("client-secret"),
            ),
            (&[T, C], Err("no ARM credential")),
            (
                &[("FHIRLOCK_ARM_CREDENTIAL", "managed-identity")],
                Ok("managed-identity"),
            ),
            (&[C, ("AZURE_CLIENT_SECRET", "s")], Err("AZURE_TENANT_ID")),
            (
                &[("FHIRLOCK_ARM_CREDENTIAL", "cli")],
                Err("unknown credential"),
            ),
            (&[("FHIRLOCK_ARM_CREDENTIAL", "azure-cli")], Ok("azure-cli")),
            (
                &[
                    T,
                    C,
                    ("AZURE_CLIENT_SECRET", "s"),
                    ("FHIRLOCK_ARM_CREDENTIAL", "Azure-CLI"),
                ],
                Ok("azure-cli"),
            ),
        ];
        for (vars, want) in cases {
            let got = ArmConfig::from_lookup(lookup(vars));
            match (got, want) {
                (Ok(c), Ok(k)) => assert_eq!(c.credential.kind(), *k, "{vars:?}"),
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{vars:?}: {e}"),
                (got, want) => panic!("{vars:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cloud_from_env() {
        let c = ArmConfig::from_lookup(lookup(&[("FHIRLOCK_ARM_CREDENTIAL", "managed-identity")]))
            .unwrap();
        assert_eq!(c.cloud, Cloud::azure_public());
        assert_eq!(c.cloud.scope(), "https://management.azure.com/.default");
        if let CredentialConfig::ManagedIdentity { client_id } = &c.credential {
            assert_eq!(client_id, &None);
        }

        let c = ArmConfig::from_lookup(lookup(&[
            T,
            C,
            ("AZURE_CLIENT_SECRET", "s"),
            ("FHIRLOCK_ARM_ENDPOINT", "https://127.0.0.1:8443"),
            ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:8443/"),
            ("FHIRLOCK_ARM_AUDIENCE", "https://management.azure.com/"),
            ("FHIRLOCK_CA_BUNDLE", "/tmp/ca.pem"),
        ]))
        .unwrap();
        assert_eq!(c.cloud.arm_endpoint.as_str(), "https://127.0.0.1:8443/");
        assert_eq!(c.cloud.authority_host.as_str(), "https://127.0.0.1:8443/");
        assert_eq!(c.cloud.scope(), "https://management.azure.com/.default");
        assert_eq!(c.extra_ca_pem, Some(PathBuf::from("/tmp/ca.pem")));

        let c = ArmConfig::from_lookup(lookup(&[
            T,
            C,
            ("AZURE_CLIENT_SECRET", "s"),
            ("FHIRLOCK_AZURE_CLOUD", "usgovernment"),
        ]))
        .unwrap();
        assert_eq!(c.cloud, Cloud::azure_us_government());
        assert_eq!(
            c.cloud.scope(),
            "https://management.usgovcloudapi.net/.default"
        );

        let c = ArmConfig::from_lookup(lookup(&[
            T,
            C,
            ("AZURE_CLIENT_SECRET", "s"),
            (
                "AZURE_RESOURCE_MANAGER_ENDPOINT",
                "https://arm.example:9443/",
            ),
        ]))
        .unwrap();
        assert_eq!(c.cloud.audience, "https://arm.example:9443");
    }
}
