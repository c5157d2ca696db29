//! `/metrics` over HTTPS for callers Kubernetes authenticates and authorises (`fhirlock run
//! --metrics-secure`), as controller-runtime's `filters.WithAuthenticationAndAuthorization`
//! (sigs.k8s.io/controller-runtime pkg/metrics/filters/filters.go) does:
//!
//! - the bearer token is sent to the apiserver in a TokenReview (authentication.k8s.io/v1) with
//!   no audiences, so the apiserver's own apply; not authenticated is 401;
//! - the user it names, with its uid, groups and extra, is checked in a SubjectAccessReview
//!   (authorization.k8s.io/v1) for the non-resource URL (the request's path) and the verb (its
//!   method in lower case, `get`); not allowed is 403. RBAC grants it with a ClusterRole rule
//!   `nonResourceURLs: ["/metrics"], verbs: ["get"]`;
//! - an apiserver that cannot be asked is 500, never an open door;
//! - as there, answers are remembered: an allowed token for a minute, a denied one for 30 s.
//!
//! The certificate is `tls.crt`/`tls.key` from a directory (a mounted Secret, re-read when it
//! changes, as controller-runtime's certwatcher does), or, like controller-runtime without one, a
//! self-signed certificate for `localhost` made at start: Prometheus scrapes pods by IP and does
//! not verify it unless told a CA.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a decision is remembered: controller-runtime's CacheTTL (1 min) for an authenticated
/// and allowed token, its DenyCacheTTL (30 s) for a denied one.
const ALLOW_TTL: Duration = Duration::from_secs(60);
const DENY_TTL: Duration = Duration::from_secs(30);
/// A TLS handshake that takes longer is dropped, so that idle connections cannot hold the port.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request to `/metrics` gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No bearer token, or one the apiserver does not accept: 401.
    Unauthenticated,
    /// Authenticated as this user, who may not: 403.
    Forbidden(String),
}

/// The bearer token of an `Authorization` header value, as the apiserver's bearer-token
/// authenticator reads it: the scheme case-insensitive, one token, nothing after it.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// (SHA-256 of the token, verb, path).
type CacheKey = (Vec<u8>, String, String);

/// Asks the apiserver who a token is and whether it may read a path.
pub struct Authorizer {
    client: kube::Client,
    cache: Mutex<HashMap<CacheKey, (Instant, Decision)>>,
}

impl Authorizer {
    pub fn new(client: kube::Client) -> Authorizer {
        Authorizer {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The decision for a request with this `Authorization` header, `verb` (lower case) and
    /// `path`. Errs only when the apiserver could not be asked.
    pub async fn decide(
        &self,
        authorization: Option<&str>,
        verb: &str,
        path: &str,
    ) -> Result<Decision, kube::Error> {
        let Some(token) = bearer(authorization) else {
            return Ok(Decision::Unauthenticated);
        };
        let key = (sha256(token), verb.to_owned(), path.to_owned());
        if let Some(d) = self.remembered(&key) {
            return Ok(d);
        }
        let decision = self.ask(token, verb, path).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: expired entries go whenever a new one comes.
        cache.retain(|_, (at, d)| at.elapsed() < ttl(d));
        cache.insert(key, (Instant::now(), decision.clone()));
        Ok(decision)
    }

    fn remembered(&self, key: &CacheKey) -> Option<Decision> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, d) = cache.get(key)?;
        (at.elapsed() < ttl(d)).then(|| d.clone())
    }

    async fn ask(&self, token: &str, verb: &str, path: &str) -> Result<Decision, kube::Error> {
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..Default::default()
        };
        let status = reviews
            .create(&PostParams::default(), &review)
            .await?
            .status
            .unwrap_or_default();
        let user = status.user.unwrap_or_default();
        if status.authenticated != Some(true) || user.username.is_none() {
            return Ok(Decision::Unauthenticated);
        }
        let name = user.username.clone().unwrap_or_default();
        let access: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some(verb.to_owned()),
                }),
                resource_attributes: None,
            },
            ..Default::default()
        };
        let allowed = access
            .create(&PostParams::default(), &review)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        Ok(if allowed {
            Decision::Allow
        } else {
            Decision::Forbidden(name)
        })
    }
}

fn ttl(d: &Decision) -> Duration {
    match d {
        Decision::Allow => ALLOW_TTL,
        Decision::Unauthenticated | Decision::Forbidden(_) => DENY_TTL,
    }
}

fn sha256(s: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS configuration of the metrics port: the certificate in `cert_dir` (`tls.crt`,
/// `tls.key`, re-read when `tls.crt` changes), or a self-signed one for `localhost` and
/// 127.0.0.1. HTTP/1.1 only. Also returns the certificate served first (DER), for a client that
/// wants to trust exactly it.
pub fn tls_config(
    cert_dir: Option<&Path>,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, CertificateDer<'static>)> {
    let provider = provider();
    let (resolver, first): (Arc<dyn ResolvesServerCert>, _) = match cert_dir {
        Some(dir) => {
            let files = CertFiles::load(dir, provider.clone())?;
            let first = files.serving().cert[0].clone();
            (Arc::new(files), first)
        }
        None => {
            let certified = self_signed(&provider)?;
            let first = certified.cert[0].clone();
            (Arc::new(SingleCertAndKey::from(certified)), first)
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), first))
}

fn self_signed(provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
        .self_signed(&key)?;
    let key = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("the generated key: {e}"))?;
    Ok(CertifiedKey::from_der(
        vec![cert.der().clone()],
        key,
        provider,
    )?)
}

/// `tls.crt` and `tls.key` of a directory, re-read when `tls.crt`'s modification time changes
/// (a Secret volume swaps both at once when cert-manager renews it).
#[derive(Debug)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl CertFiles {
    fn load(dir: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<CertFiles> {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let (mtime, certified) = read_pair(&cert, &key, &provider)?;
        Ok(CertFiles {
            cert,
            key,
            provider,
            current: Mutex::new((mtime, Arc::new(certified))),
        })
    }
}

fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<(Option<SystemTime>, CertifiedKey)> {
    let mtime = std::fs::metadata(cert).and_then(|m| m.modified()).ok();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let certified = CertifiedKey::from_der(chain, der, provider)
        .with_context(|| format!("{} and {}", cert.display(), key.display()))?;
    Ok((mtime, certified))
}

impl CertFiles {
    /// The pair to serve: the files' current one, unless they changed into something unusable.
    fn serving(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mtime = std::fs::metadata(&self.cert)
            .and_then(|m| m.modified())
            .ok();
        if mtime != current.0 {
            // Mid-rotation the pair may not match yet: keep serving the old one until it does.
            match read_pair(&self.cert, &self.key, &self.provider) {
                Ok((mtime, certified)) => {
                    tracing::info!(cert = %self.cert.display(), "serving the renewed metrics certificate");
                    *current = (mtime, Arc::new(certified));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "keeping the metrics certificate")
                }
            }
        }
        current.1.clone()
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.serving())
    }
}

/// A TCP listener that hands axum connections once their TLS handshake is done. Handshakes run
/// side by side (each bounded by [`HANDSHAKE_TIMEOUT`]), so one slow client cannot stall the
/// kubelet's probes on the same port.
pub struct TlsListener {
    accepted: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(16);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (conn, peer) = tokio::select! {
                    a = tcp.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: pause, as axum's own loop does.
                            tracing::debug!(error = %e, "accepting a metrics connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            accepted,
            local,
            task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept task ended (it only does when this listener goes): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_as_the_apiserver_reads_it() {
        let cases = [
            (None, None),
            (Some(""), None),
            (Some("Bearer abc.def"), Some("abc.def")),
            (Some("bearer abc"), Some("abc")),
            (Some("BEARER  abc "), Some("abc")),
            (Some("Basic dXNlcjpwdw=="), None),
            (Some("Bearer"), None),
            (Some("Bearer "), None),
            (Some("Bearer a b"), None),
            (Some("abc"), None),
        ];
        for (header, want) in cases {
            assert_eq!(bearer(header), want, "{header:?}");
        }
    }

    #[test]
    fn allowed_is_remembered_longer_than_denied() {
        assert_eq!(ttl(&Decision::Allow), Duration::from_secs(60));
        assert_eq!(ttl(&Decision::Unauthenticated), Duration::from_secs(30));
        assert_eq!(
            ttl(&Decision::Forbidden("x".into())),
            Duration::from_secs(30)
        );
    }
}
