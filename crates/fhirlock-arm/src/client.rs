//! The ARM client: an `azure_core` [`Pipeline`] with a bearer-token policy and no retry policy,
//! over a `reqwest` transport shared with the credential. Every public call sends one request
//! (plus at most one immediate re-send, see [`ArmClient::get`] and the token refresh below) and
//! returns; nothing here sleeps or loops until an operation ends.

use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions,
    Transport, Url, UserAgentOptions,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::budget::{Budget, RateLimitHeaders};
use crate::config::ArmConfig;
use crate::credential::RefreshableCredential;
use crate::error::{ArmError, ErrorClass, classify, error_envelope, wants_token_refresh};
use crate::headers::Headers;
use crate::ids::{resource_type, subscription_of};
use crate::lro::{
    Operation, OperationKind, OperationStatus, WriteOutcome, poll_outcome, write_outcome,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One ARM request as the metrics hook sees it. Carries no URL query, header or body.
#[derive(Clone, Debug)]
pub struct RequestEvent<'a> {
    /// `GET`, `PUT`, `PATCH`, `DELETE`, `POST`.
    pub method: &'a str,
    /// e.g. `Microsoft.Network/virtualNetworks/subnets`, or
    /// `Microsoft.Network/locations/operations` for a poll.
    pub resource_type: &'a str,
    pub subscription: Option<&'a str>,
    /// `None` when no response arrived (connection dropped, timeout, token exchange failed).
    pub status: Option<u16>,
    pub duration: Duration,
    /// The class of the error, when the response (or its absence) is one.
    pub class: Option<ErrorClass>,
    /// The rate-limit headers of this response.
    pub rate_limit: RateLimitHeaders,
    pub retry_after: Option<Duration>,
    /// Whether this request polled a long-running operation.
    pub poll: bool,
    /// 0 for the first send; 1 for the single re-send after a refreshed token or a dropped GET.
    pub attempt: u32,
}

/// Metrics hook, called once per HTTP request sent to ARM (synchronously; keep it cheap).
pub trait RequestObserver: Send + Sync {
    fn on_request(&self, event: &RequestEvent<'_>);
}

struct Inner {
    pipeline: Pipeline,
    credential: Arc<RefreshableCredential>,
    arm_endpoint: Url,
    budgets: Mutex<HashMap<String, Budget>>,
}

/// A cheap-to-clone ARM client.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("arm_endpoint", &self.inner.arm_endpoint.as_str())
            .field("credential", &self.inner.credential)
            .finish_non_exhaustive()
    }
}

/// A buffered response.
struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

/// The `reqwest` client shared by Entra and ARM: rustls (aws-lc-rs) with the system roots plus the
/// extra PEM bundle, no redirects, azure_core's default timeouts.
fn http_client(extra_ca_pem: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = extra_ca_pem {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading CA bundle {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("parsing CA bundle {}: {e}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("CA bundle {} holds no certificate", path.display());
        }
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))
}

/// Maps a failure without an ARM response (transport, token exchange) to an [`ArmError`].
fn transport_error(err: &azure_core::Error) -> ArmError {
    use azure_core::error::ErrorKind;
    // The message chain, for people; no request or response body is part of it.
    let mut message = err.to_string();
    let mut src = std::error::Error::source(err);
    let mut connection = matches!(err.kind(), ErrorKind::Connection | ErrorKind::Io);
    let mut upstream_unavailable = false;
    while let Some(s) = src {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        if let Some(ae) = s.downcast_ref::<azure_core::Error>() {
            match ae.kind() {
                ErrorKind::Connection | ErrorKind::Io => connection = true,
                ErrorKind::HttpResponse { status, .. } => {
                    let s = u16::from(*status);
                    if s == 429 || s >= 500 {
                        upstream_unavailable = true;
                    }
                }
                _ => {}
            }
        }
        if s.downcast_ref::<reqwest::Error>().is_some() {
            connection = true;
        }
        src = s.source();
    }
    // rustls' text for a server certificate that does not chain to a trusted root: a
    // configuration problem (missing CA bundle), not something a retry fixes.
    if message.contains("invalid peer certificate") {
        return ArmError::new(ErrorClass::Terminal, "TlsCertificateNotTrusted", message);
    }
    match err.kind() {
        ErrorKind::Credential if connection || upstream_unavailable => {
            ArmError::new(ErrorClass::Transient, "TokenEndpointUnavailable", message)
        }
        ErrorKind::Credential => {
            // Entra's error text ("AADSTS7000215: …") is in the message; keep its code first.
            let code = message
                .split(|c: char| !c.is_ascii_alphanumeric())
                .find(|w| w.starts_with("AADSTS"))
                .unwrap_or("CredentialUnavailable")
                .to_string();
            ArmError::auth(code, message)
        }
        _ if connection => ArmError::new(ErrorClass::Transient, "ConnectionError", message),
        _ => ArmError::new(ErrorClass::Terminal, "ClientError", message),
    }
}

/// Whether a 404 with `code` on a GET of `id` means "`id` does not exist" (rather than "a parent
/// of `id` does not exist").
pub fn absent_on_404(id: &str, code: &str) -> bool {
    let is = |c: &str| code.eq_ignore_ascii_case(c);
    code.is_empty()
        || is("ResourceNotFound")
        || is("NotFound")
        || (is("ResourceGroupNotFound")
            && resource_type(id) == "Microsoft.Resources/resourceGroups")
        || (is("SubscriptionNotFound") && resource_type(id) == "Microsoft.Resources/subscriptions")
}

/// A write's HTTP precondition. ARM's resource provider checks it, not the front door (ARM RPC,
/// `Addendum.md`, "ETags for Resources"): a PUT, PATCH or DELETE whose `If-Match` names an etag
/// the resource no longer has, or a PUT with `If-None-Match: *` on a resource that exists, is
/// answered 412 `PreconditionFailed` (classified [`ErrorClass::Conflict`]: read again, then
/// decide again). Which resource types honour it is the caller's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: <etag>`, the etag exactly as ARM returned it (`W/"…"` included).
    IfMatch(String),
    /// `If-None-Match: *`: create only.
    IfNoneMatch,
}

impl Precondition {
    fn header(&self) -> (&'static str, &str) {
        match self {
            Precondition::IfMatch(etag) => ("if-match", etag),
            Precondition::IfNoneMatch => ("if-none-match", "*"),
        }
    }
}

/// One ARM request: JSON in and out, with the write's precondition header if it has one.
fn request(url: &Url, method: Method, body: Option<&[u8]>, pre: Option<&Precondition>) -> Request {
    let mut req = Request::new(url.clone(), method);
    req.insert_header("accept", "application/json");
    if let Some((name, value)) = pre.map(Precondition::header) {
        req.insert_header(name, value.to_owned());
    }
    if let Some(b) = body {
        req.insert_header("content-type", "application/json");
        req.set_body(b.to_vec());
    }
    req
}

fn invalid_request(message: String) -> ArmError {
    ArmError::new(ErrorClass::Terminal, "InvalidRequest", message)
}

impl ArmClient {
    /// Builds the transport (with the extra CA), the credential and the pipeline. No network I/O.
    pub fn new(config: ArmConfig) -> anyhow::Result<Self> {
        let ArmConfig {
            cloud,
            credential,
            extra_ca_pem,
            user_agent,
        } = config;
        if cloud.arm_endpoint.scheme() != "https" {
            anyhow::bail!(
                "ARM endpoint {} is not https (bearer tokens are only sent over TLS)",
                cloud.arm_endpoint
            );
        }
        if let Some(ua) = &user_agent
            && (ua.is_empty() || ua.len() > 24 || ua.contains(char::is_whitespace))
        {
            anyhow::bail!("user agent {ua:?} must be 1-24 characters without spaces");
        }
        let http = http_client(extra_ca_pem.as_deref())?;
        let transport = Transport::new(Arc::new(http));
        let scope = cloud.scope();
        let arm_endpoint = cloud.arm_endpoint.clone();
        let kind = credential.kind();
        let credential = Arc::new(
            RefreshableCredential::new(credential, cloud, transport.clone())
                .map_err(|e| anyhow::anyhow!("{kind} credential: {e}"))?,
        );
        let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
            credential.clone(),
            [scope],
        ));
        let ua = UserAgentOptions {
            application_id: user_agent,
        };
        let options = ClientOptions {
            transport: Some(transport),
            // Never sleep through a Retry-After inside a worker: 429/5xx come back as errors.
            retry: RetryOptions::none(),
            user_agent: ua,
            ..Default::default()
        };
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        tracing::debug!(credential = kind, arm_endpoint = %arm_endpoint, "ARM client ready");
        Ok(ArmClient {
            inner: Arc::new(Inner {
                pipeline,
                credential,
                arm_endpoint,
                budgets: Mutex::new(HashMap::new()),
            }),
            observer: None,
        })
    }

    /// Adds a metrics hook, called once per request sent.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The ARM base URL.
    pub fn arm_endpoint(&self) -> &Url {
        &self.inner.arm_endpoint
    }

    /// `{arm_endpoint}{id}?api-version={api_version}`.
    pub fn url_for(&self, id: &str, api_version: &str) -> Result<Url, ArmError> {
        if !id.starts_with('/') || id.contains(['?', '#']) || id.split('/').any(|s| s == "..") {
            return Err(invalid_request(format!(
                "{id:?} is not an ARM resource path (must start with '/', without query or '..')"
            )));
        }
        if api_version.is_empty() {
            return Err(invalid_request(format!("no api-version for {id}")));
        }
        let base = &self.inner.arm_endpoint;
        let mut url = base.clone();
        url.set_path(&format!("{}{}", base.path().trim_end_matches('/'), id));
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    /// The budget ARM last reported for `subscription_id` (and this principal).
    pub fn budget(&self, subscription_id: &str) -> Option<Budget> {
        self.inner
            .budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&subscription_id.to_ascii_lowercase())
            .copied()
    }

    /// GET a resource. `Ok(None)` when it does not exist (404 `ResourceNotFound` / `NotFound`, or
    /// `ResourceGroupNotFound` for a resource group itself); other 404s (`ResourceGroupNotFound`
    /// under a group, `ParentResourceNotFound`, `SubscriptionNotFound`) are `Terminal` errors,
    /// since they mean the path itself is wrong. A dropped connection is
    /// re-sent once at once (GET is idempotent).
    pub async fn get(&self, id: &str, api_version: &str) -> Result<Option<Value>, ArmError> {
        let url = self.url_for(id, api_version)?;
        let r = self.send(Method::Get, url, None, None, false).await?;
        match r.status {
            200..=299 => Ok(Some(serde_json::from_slice(&r.body).unwrap_or(Value::Null))),
            404 => {
                let (code, _) = error_envelope(&r.body);
                if absent_on_404(id, &code) {
                    Ok(None)
                } else {
                    Err(classify(r.status, &r.headers, &r.body))
                }
            }
            s => Err(classify(s, &r.headers, &r.body)),
        }
    }

    /// GET the next page of a list by the `nextLink` ARM returned (`x-ms-pageable`): the link as it
    /// is, since it carries its own api-version and skip token. Like an operation's status URL it
    /// must be on the ARM endpoint, so a crafted link cannot send the bearer token elsewhere.
    pub async fn get_next_link(&self, next_link: &str) -> Result<Value, ArmError> {
        let url = Url::parse(next_link)
            .map_err(|e| invalid_request(format!("nextLink {next_link:?}: {e}")))?;
        if url.origin() != self.inner.arm_endpoint.origin() {
            return Err(invalid_request(format!(
                "nextLink {} is not on the ARM endpoint {}",
                url.origin().ascii_serialization(),
                self.inner.arm_endpoint.origin().ascii_serialization()
            )));
        }
        let r = self.send(Method::Get, url, None, None, false).await?;
        match r.status {
            200..=299 => Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null)),
            s => Err(classify(s, &r.headers, &r.body)),
        }
    }

    /// PUT (create or replace). `Accepted` when ARM runs it as a long-running operation.
    pub async fn put(
        &self,
        id: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<WriteOutcome, ArmError> {
        self.put_with(id, api_version, body, None).await
    }

    /// [`ArmClient::put`] with a precondition header.
    pub async fn put_with(
        &self,
        id: &str,
        api_version: &str,
        body: &Value,
        precondition: Option<&Precondition>,
    ) -> Result<WriteOutcome, ArmError> {
        self.write(Method::Put, id, api_version, Some(body), precondition)
            .await
    }

    /// PATCH (merge; tags only on some Network types).
    pub async fn patch(
        &self,
        id: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<WriteOutcome, ArmError> {
        self.patch_with(id, api_version, body, None).await
    }

    /// [`ArmClient::patch`] with a precondition header.
    pub async fn patch_with(
        &self,
        id: &str,
        api_version: &str,
        body: &Value,
        precondition: Option<&Precondition>,
    ) -> Result<WriteOutcome, ArmError> {
        self.write(Method::Patch, id, api_version, Some(body), precondition)
            .await
    }

    /// DELETE. A resource that is already gone (204, or 404) is `Done`.
    pub async fn delete(&self, id: &str, api_version: &str) -> Result<WriteOutcome, ArmError> {
        self.delete_with(id, api_version, None).await
    }

    /// [`ArmClient::delete`] with a precondition header.
    pub async fn delete_with(
        &self,
        id: &str,
        api_version: &str,
        precondition: Option<&Precondition>,
    ) -> Result<WriteOutcome, ArmError> {
        self.write(Method::Delete, id, api_version, None, precondition)
            .await
    }

    /// POST an action, e.g. `…/providers/Microsoft.Features/providers/{ns}/features/{f}/register`.
    pub async fn post(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<WriteOutcome, ArmError> {
        self.write(Method::Post, path, api_version, body, None)
            .await
    }

    async fn write(
        &self,
        method: Method,
        id: &str,
        api_version: &str,
        body: Option<&Value>,
        precondition: Option<&Precondition>,
    ) -> Result<WriteOutcome, ArmError> {
        let url = self.url_for(id, api_version)?;
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let is_delete = method == Method::Delete;
        let r = self
            .send(method, url.clone(), bytes, precondition, false)
            .await?;
        match r.status {
            200..=299 => Ok(write_outcome(
                id,
                method.as_ref(),
                api_version,
                &url,
                r.status,
                &r.headers,
                &r.body,
            )),
            404 if is_delete => Ok(WriteOutcome::Done {
                status: 404,
                body: None,
            }),
            s => Err(classify(s, &r.headers, &r.body)),
        }
    }

    /// Polls `op` with exactly one GET of its status URL and interprets the answer. Never loops
    /// and never sleeps: the caller requeues after `retry_after`. The status URL must be on the
    /// ARM endpoint (the handle may come from a custom resource's status; the bearer token is
    /// never sent anywhere else).
    pub async fn poll(&self, op: &Operation) -> Result<OperationStatus, ArmError> {
        self.poll_with_result(op).await.map(|(status, _)| status)
    }

    /// [`ArmClient::poll`], also returning the final answer's body when the operation succeeded
    /// and its status URL carried it: a `Location` operation's last poll answers with the result
    /// (e.g. `ApplicationGateways_BackendHealth`, `final-state-via: location`).
    pub async fn poll_with_result(
        &self,
        op: &Operation,
    ) -> Result<(OperationStatus, Option<Value>), ArmError> {
        let url = Url::parse(&op.status_url).map_err(|e| {
            invalid_request(format!("operation status URL {:?}: {e}", op.status_url))
        })?;
        if url.origin() != self.inner.arm_endpoint.origin() {
            return Err(invalid_request(format!(
                "operation status URL {} is not on the ARM endpoint {}",
                url.origin().ascii_serialization(),
                self.inner.arm_endpoint.origin().ascii_serialization()
            )));
        }
        let r = self.send(Method::Get, url, None, None, true).await?;
        let status = poll_outcome(op, r.status, &r.headers, &r.body)?;
        let body = (status == OperationStatus::Succeeded && op.kind == OperationKind::Location)
            .then(|| serde_json::from_slice(&r.body).ok())
            .flatten();
        Ok((status, body))
    }

    /// Sends one request; re-sends at most once: after a 401 that asks for a fresh token, or
    /// (GET only) after a connection that dropped without an answer. The re-send carries the same
    /// precondition: a 401 means the resource provider never saw the first.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        precondition: Option<&Precondition>,
        poll: bool,
    ) -> Result<Response, ArmError> {
        let rtype = resource_type(url.path());
        let subscription = subscription_of(url.path()).map(str::to_ascii_lowercase);
        let mut refreshed = false;
        let mut resent_after_drop = false;
        let mut attempt = 0u32;
        loop {
            let mut req = request(&url, method, body.as_deref(), precondition);
            let started = Instant::now();
            let sent = self
                .inner
                .pipeline
                .send(
                    &Context::new(),
                    &mut req,
                    Some(PipelineSendOptions {
                        skip_checks: true,
                        ..Default::default()
                    }),
                )
                .await;
            let duration = started.elapsed();
            let raw = match sent {
                Ok(raw) => raw,
                Err(e) => {
                    let err = transport_error(&e);
                    self.observe(RequestEvent {
                        method: method.as_ref(),
                        resource_type: &rtype,
                        subscription: subscription.as_deref(),
                        status: None,
                        duration,
                        class: Some(err.class),
                        rate_limit: RateLimitHeaders::default(),
                        retry_after: None,
                        poll,
                        attempt,
                    });
                    tracing::debug!(method = %method, resource_type = %rtype, class = %err.class, code = %err.code, "ARM request failed without a response");
                    if method == Method::Get
                        && err.class == ErrorClass::Transient
                        && err.code == "ConnectionError"
                        && !resent_after_drop
                    {
                        resent_after_drop = true;
                        attempt += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            let (status, headers, body_bytes) = raw.deconstruct();
            let status = u16::from(status);
            let headers: Headers = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.as_str().to_string()))
                .collect();
            let body_bytes: Vec<u8> = body_bytes.as_ref().to_vec();
            let rate_limit = RateLimitHeaders::parse(&headers);
            if let Some(sub) = &subscription
                && !rate_limit.is_empty()
            {
                let mut budgets = self.inner.budgets.lock().unwrap_or_else(|p| p.into_inner());
                let prev = budgets.get(sub).copied();
                budgets.insert(sub.clone(), Budget::merge(prev, rate_limit, Instant::now()));
            }
            let err = (status >= 400).then(|| classify(status, &headers, &body_bytes));
            self.observe(RequestEvent {
                method: method.as_ref(),
                resource_type: &rtype,
                subscription: subscription.as_deref(),
                status: Some(status),
                duration,
                class: err.as_ref().map(|e| e.class),
                rate_limit,
                retry_after: crate::headers::retry_after(&headers),
                poll,
                attempt,
            });
            tracing::debug!(
                method = %method,
                resource_type = %rtype,
                status,
                request_id = crate::headers::header(&headers, "x-ms-request-id").unwrap_or(""),
                "ARM request"
            );
            if let Some(e) = &err
                && wants_token_refresh(e)
                && !refreshed
            {
                refreshed = true;
                attempt += 1;
                tracing::info!(code = %e.code, "ARM rejected the access token; exchanging for a new one and retrying once");
                self.inner
                    .credential
                    .refresh()
                    .map_err(|e| transport_error(&e))?;
                continue;
            }
            return Ok(Response {
                status,
                headers,
                body: body_bytes,
            });
        }
    }

    fn observe(&self, event: RequestEvent<'_>) {
        if let Some(o) = &self.observer {
            o.on_request(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, user_agent: Option<&str>) -> ArmConfig {
        ArmConfig {
            cloud: crate::Cloud::custom(
                Url::parse(endpoint).unwrap(),
                Url::parse("https://login.example/").unwrap(),
                "https://management.azure.com",
            ),
            credential: crate::CredentialConfig::ClientSecret {
                tenant_id: "6f1c2a52-0000-4000-8000-00000000a001".into(),
                client_id: "c".into(),
                secret: "s".into(),
            },
            extra_ca_pem: None,
            user_agent: user_agent.map(str::to_string),
        }
    }

    #[test]
    fn construction_checks() {
        assert!(ArmClient::new(config("https://arm.example/", Some("fhirlock"))).is_ok());
        let e = ArmClient::new(config("http://arm.example/", None)).unwrap_err();
        assert!(e.to_string().contains("not https"), "{e}");
        assert!(
            ArmClient::new(config(
                "https://arm.example/",
                Some("a-user-agent-longer-than-24")
            ))
            .is_err()
        );
        let mut c = config("https://arm.example/", None);
        c.extra_ca_pem = Some("/nonexistent/ca.pem".into());
        assert!(
            ArmClient::new(c)
                .unwrap_err()
                .to_string()
                .contains("CA bundle")
        );
    }

    #[test]
    fn urls_keep_the_base_path_and_add_the_api_version() {
        let c = ArmClient::new(config("https://arm.example/base/", None)).unwrap();
        let u = c
            .url_for("/subscriptions/s/resourceGroups/my rg", "2021-04-01")
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://arm.example/base/subscriptions/s/resourceGroups/my%20rg?api-version=2021-04-01"
        );
        for bad in [
            "",
            "subscriptions/s",
            "/s?x=1",
            "/s#f",
            "/subscriptions/../x",
        ] {
            assert_eq!(
                c.url_for(bad, "v").unwrap_err().class,
                ErrorClass::Terminal,
                "{bad}"
            );
        }
    }

    #[test]
    fn absent_on_404_table() {
        let rg = "/subscriptions/s/resourceGroups/rg";
        let vnet =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v";
        let cases = [
            (vnet, "ResourceNotFound", true),
            (&format!("{vnet}/subnets/a") as &str, "NotFound", true),
            (vnet, "", true),
            (rg, "ResourceGroupNotFound", true),
            (vnet, "ResourceGroupNotFound", false),
            (vnet, "ParentResourceNotFound", false),
            (vnet, "SubscriptionNotFound", false),
            ("/subscriptions/s", "SubscriptionNotFound", true),
        ];
        for (id, code, want) in cases {
            assert_eq!(absent_on_404(id, code), want, "{id} {code}");
        }
    }
}
