//! Builds the `azure_identity` credential for a [`CredentialConfig`], on the same HTTP transport
//! (and so the same extra CA roots) as the ARM pipeline, and wraps it so that a token ARM rejects
//! as expired can be thrown away and re-minted.

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertion, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::config::{AssertionSource, Cloud, CredentialConfig};

/// Client options for a credential's own pipeline: our transport, the cloud's authority, and no
/// in-pipeline retries (a failed exchange is reported; the caller requeues).
fn credential_client_options(cloud: &Cloud, transport: &Transport) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = cloud.authority_host.to_string();
    ClientOptions {
        transport: Some(transport.clone()),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    }
}

/// Reads the federated token file on every exchange (the kubelet rotates it about hourly;
/// `azure_identity`'s own `WorkloadIdentityCredential` keeps it for ten minutes and needs the file
/// to exist when it is constructed).
#[derive(Debug)]
struct FileAssertion {
    path: PathBuf,
}

#[async_trait::async_trait]
impl ClientAssertion for FileAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("reading federated token file {}: {e}", self.path.display()),
            )
        })?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("federated token file {} is empty", self.path.display()),
            ));
        }
        Ok(token)
    }
}

/// Adapts an [`AssertionSource`] to `azure_identity`'s [`ClientAssertion`].
#[derive(Debug)]
struct SourceAssertion(Arc<dyn AssertionSource>);

#[async_trait::async_trait]
impl ClientAssertion for SourceAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.0.assertion().await.map_err(|e| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("client assertion source failed: {e:#}"),
            )
        })
    }
}

/// Builds a fresh credential (with an empty token cache).
pub(crate) fn build(
    cfg: &CredentialConfig,
    cloud: &Cloud,
    transport: &Transport,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let client_options = credential_client_options(cloud, transport);
    Ok(match cfg {
        CredentialConfig::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            Secret::new(secret.clone()),
            Some(ClientSecretCredentialOptions { client_options }),
        )?,
        CredentialConfig::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        } => ClientAssertionCredential::new(
            tenant_id.clone(),
            client_id.clone(),
            FileAssertion {
                path: token_file.clone(),
            },
            Some(ClientAssertionCredentialOptions { client_options }),
        )?,
        CredentialConfig::ClientAssertion {
            tenant_id,
            client_id,
            source,
        } => ClientAssertionCredential::new(
            tenant_id.clone(),
            client_id.clone(),
            SourceAssertion(source.clone()),
            Some(ClientAssertionCredentialOptions { client_options }),
        )?,
        CredentialConfig::Custom(c) => c.clone(),
        // The CLI talks to Entra itself (its own cloud and CA settings: `az cloud`,
        // REQUESTS_CA_BUNDLE); fhirlock only reads its answer.
        CredentialConfig::AzureCli { tenant_id } => {
            AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            }))?
        }
        CredentialConfig::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            }))?
        }
    })
}

/// A credential whose token cache can be dropped: `azure_identity` credentials cache tokens
/// until five minutes before their stated expiry and offer no way to bypass the cache, so when
/// ARM says a token has expired (clock skew, revocation) the only way to get a new one is a new
/// credential. [`RefreshableCredential::refresh`] builds one.
pub(crate) struct RefreshableCredential {
    config: CredentialConfig,
    cloud: Cloud,
    transport: Transport,
    current: RwLock<Arc<dyn TokenCredential>>,
}

impl RefreshableCredential {
    pub(crate) fn new(
        config: CredentialConfig,
        cloud: Cloud,
        transport: Transport,
    ) -> azure_core::Result<Self> {
        let current = build(&config, &cloud, &transport)?;
        Ok(RefreshableCredential {
            config,
            cloud,
            transport,
            current: RwLock::new(current),
        })
    }

    /// Drops the cached token: the next request exchanges again.
    pub(crate) fn refresh(&self) -> azure_core::Result<()> {
        let fresh = build(&self.config, &self.cloud, &self.transport)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

impl fmt::Debug for RefreshableCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshableCredential")
            .field("kind", &self.config.kind())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for RefreshableCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let cred = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        cred.get_token(scopes, options).await
    }
}
