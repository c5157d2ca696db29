//! Metrics (Prometheus / OpenMetrics), the health endpoints and logging.
//!
//! Every family carries the `fhirlock_` prefix. Label values are bounded: result, resource type,
//! HTTP method and status, subscription, and the namespace/name of endpoints that exist (their
//! series are removed by [`Metrics::forget_endpoint`] when the object goes away).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fhirlock_arm::{ErrorClass, RequestEvent, RequestObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::metrics_auth::{Authorizer, Decision, TlsListener};
use crate::watch_health::WatchHealth;

/// The content type of `/metrics` (OpenMetrics text, as `prometheus-client` encodes it).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceTypeLabels {
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    namespace: String,
    name: String,
    code: String,
    /// High, Medium, Low or Advisory: alerts count all but Advisory.
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmRequestLabels {
    method: String,
    resource_type: String,
    status: String,
    /// Empty (no label) for requests outside a subscription, e.g. the token request.
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmDurationLabels {
    method: String,
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    subscription: String,
    kind: String,
}

/// `(namespace, name)` of an endpoint.
type Endpoint = (String, String);
/// A finding series' `code` and `severity` labels.
type CodeAndSeverity = (String, String);

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn arm_duration_histogram() -> Histogram {
    // 10 ms .. ~20 s: ARM reads are tens of ms, slow writes and throttled calls take seconds.
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

/// The operator's metrics. Share it as `Arc<Metrics>`: the controller records into it, the ARM
/// client reports through it (as a [`RequestObserver`]), and [`serve`] renders it.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    drifts_corrected: Family<ResourceTypeLabels, Counter>,
    endpoint_ready: Family<EndpointLabels, Gauge>,
    endpoint_reachable: Family<EndpointLabels, Gauge>,
    certificate_expiry: Family<EndpointLabels, Gauge>,
    findings: Family<FindingLabels, Gauge>,
    time_to_ready: Histogram,
    deferred_writes: Family<SubscriptionLabels, Counter>,
    arm_requests: Family<ArmRequestLabels, Counter>,
    arm_request_duration: HistogramFamily<ArmDurationLabels>,
    arm_budget_remaining: Family<BudgetLabels, Gauge>,
    released_without_cleanup: Family<ReasonLabels, Counter>,
    /// The finding codes last exported per endpoint, so codes that disappear can be removed.
    finding_codes: Mutex<HashMap<Endpoint, Vec<CodeAndSeverity>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("fhirlock");

        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of SecuredFhirEndpoint objects, by result (ok, error, stalled)",
            reconciles.clone(),
        );
        // 50 ms .. ~50 s: a reconcile is a handful of ARM calls; LROs are never awaited inside.
        let reconcile_duration = Histogram::new(exponential_buckets(0.05, 2.0, 11));
        registry.register_with_unit(
            "reconcile_duration",
            "Wall time of one reconcile",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let drifts_corrected = Family::<ResourceTypeLabels, Counter>::default();
        registry.register(
            "drifts_corrected",
            "Azure resources found drifted from the desired state and written back",
            drifts_corrected.clone(),
        );
        let endpoint_ready = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "endpoint_ready",
            "1 when the endpoint's Ready condition is True, else 0",
            endpoint_ready.clone(),
        );
        let endpoint_reachable = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "endpoint_reachable",
            "1 when the gateway's backend health says the FHIR server answers (Reachable True), 0 when it does not, -1 when unknown",
            endpoint_reachable.clone(),
        );
        let certificate_expiry = Family::<EndpointLabels, Gauge>::default();
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "When the endpoint's listener certificate (spec.gateway.tls.secretRef) expires, Unix time (its notAfter); absent for Key Vault certificates",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "findings",
            "Current audit findings of an endpoint, by finding code",
            findings.clone(),
        );
        // Application Gateway and private endpoint provisioning take minutes, not seconds.
        let time_to_ready = Histogram::new([
            30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0,
        ]);
        registry.register_with_unit(
            "time_to_ready",
            "Time an endpoint was not Ready before it became Ready: from its creation, or from the spec change or drift that made Ready False",
            Unit::Seconds,
            time_to_ready.clone(),
        );
        let deferred_writes = Family::<SubscriptionLabels, Counter>::default();
        registry.register(
            "arm_deferred_writes",
            "ARM writes held back because the subscription's write budget was low",
            deferred_writes.clone(),
        );
        let arm_requests = Family::<ArmRequestLabels, Counter>::default();
        registry.register(
            "arm_requests",
            "HTTP requests sent to ARM, by method, resource type, status \
             (HTTP code, \"dropped\" for no response, \"error\" when none could be sent) and subscription",
            arm_requests.clone(),
        );
        let arm_request_duration: HistogramFamily<ArmDurationLabels> =
            Family::new_with_constructor(arm_duration_histogram);
        registry.register_with_unit(
            "arm_request_duration",
            "Duration of one HTTP request to ARM",
            Unit::Seconds,
            arm_request_duration.clone(),
        );
        let arm_budget_remaining = Family::<BudgetLabels, Gauge>::default();
        registry.register(
            "arm_budget_remaining",
            "Remaining ARM requests per subscription and kind, from x-ms-ratelimit-remaining-subscription-*",
            arm_budget_remaining.clone(),
        );

        let released_without_cleanup = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "finalizers_released_without_cleanup",
            "Endpoints with deletionPolicy Delete let go without removing what fhirlock added in Azure, by reason (annotation, namespace_deleted)",
            released_without_cleanup.clone(),
        );
        // Each reason at 0 from the start: Prometheus' increase() needs a sample before the first
        // release, or the alert on it misses the first one after every restart.
        for reason in ["annotation", "namespace_deleted"] {
            drop(released_without_cleanup.get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            }));
        }

        Arc::new(Metrics {
            registry,
            reconciles,
            reconcile_duration,
            drifts_corrected,
            endpoint_ready,
            endpoint_reachable,
            certificate_expiry,
            findings,
            time_to_ready,
            deferred_writes,
            arm_requests,
            arm_request_duration,
            arm_budget_remaining,
            released_without_cleanup,
            finding_codes: Mutex::new(HashMap::new()),
        })
    }

    /// One finished reconcile; `result` is `ok`, `error` or `stalled`.
    pub fn reconcile(&self, result: &str, duration: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
    }

    /// An Azure resource of `resource_type` was written back to its desired state.
    pub fn drift_corrected(&self, resource_type: &str) {
        self.drifts_corrected
            .get_or_create(&ResourceTypeLabels {
                resource_type: resource_type.to_owned(),
            })
            .inc();
    }

    /// The endpoint's readiness and its current findings as `(code, severity, count)`. Codes
    /// exported before but absent now are removed (a cleared finding must not linger as a stale
    /// series).
    pub fn set_endpoint(
        &self,
        namespace: &str,
        name: &str,
        ready: bool,
        findings: &[(&str, &str, i64)],
    ) {
        self.set_ready(namespace, name, ready);
        let labels = |(code, severity): &(String, String)| FindingLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            code: code.clone(),
            severity: severity.clone(),
        };
        // Held across the family updates so two concurrent calls for one endpoint can't interleave
        // their removals and sets.
        let mut codes = self.finding_codes.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        let now: Vec<(String, String)> = findings
            .iter()
            .map(|(c, s, _)| (c.to_string(), s.to_string()))
            .collect();
        if let Some(before) = codes.get(&key) {
            for gone in before.iter().filter(|c| !now.contains(c)) {
                self.findings.remove(&labels(gone));
            }
        }
        for (series, (_, _, count)) in now.iter().zip(findings) {
            self.findings.get_or_create(&labels(series)).set(*count);
        }
        if now.is_empty() {
            codes.remove(&key);
        } else {
            codes.insert(key, now);
        }
    }

    /// The endpoint's readiness alone: a stall before fhirlock could look at Azure (identity,
    /// tenancy, a refusal) leaves its findings as last seen, but it is not Ready.
    pub fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        self.endpoint_ready
            .get_or_create(&EndpointLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// The Reachable condition: `Some(true)` 1, `Some(false)` 0, unknown -1.
    pub fn set_reachable(&self, namespace: &str, name: &str, reachable: Option<bool>) {
        self.endpoint_reachable
            .get_or_create(&EndpointLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(reachable.map_or(-1, i64::from));
    }

    /// The listener certificate's notAfter (Unix seconds); `None` removes the series (a Key
    /// Vault certificate, or none yet).
    pub fn set_certificate_expiry(&self, namespace: &str, name: &str, not_after: Option<i64>) {
        let labels = EndpointLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        match not_after {
            Some(t) => {
                self.certificate_expiry.get_or_create(&labels).set(t);
            }
            None => {
                self.certificate_expiry.remove(&labels);
            }
        }
    }

    /// The endpoint is gone: remove all its series.
    pub fn forget_endpoint(&self, namespace: &str, name: &str) {
        self.set_certificate_expiry(namespace, name, None);
        self.endpoint_ready.remove(&EndpointLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        self.endpoint_reachable.remove(&EndpointLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        let mut codes = self.finding_codes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = codes.remove(&(namespace.to_owned(), name.to_owned())) {
            for (code, severity) in before {
                self.findings.remove(&FindingLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    code,
                    severity,
                });
            }
        }
    }

    /// Drops every per-endpoint series: a replica that is not (or no longer) the leader must not
    /// keep exporting what it last saw, or alerts that sum or take the maximum across replicas
    /// would count stale values (a lost Lease leaves the old leader running).
    pub fn forget_all_endpoints(&self) {
        self.endpoint_ready.clear();
        self.endpoint_reachable.clear();
        self.certificate_expiry.clear();
        self.findings.clear();
        self.finding_codes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Seconds an endpoint took to become Ready.
    pub fn time_to_ready(&self, seconds: f64) {
        self.time_to_ready.observe(seconds);
    }

    /// An endpoint's finalizer was released without its cleanup, for `reason`.
    pub fn released_without_cleanup(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: reason.to_owned(),
        };
        self.released_without_cleanup.get_or_create(&labels).inc();
    }

    /// A write to `subscription` was held back by the ARM request budget.
    pub fn deferred_writes(&self, subscription: &str) {
        self.deferred_writes
            .get_or_create(&SubscriptionLabels {
                subscription: subscription.to_owned(),
            })
            .inc();
    }

    /// All families in the OpenMetrics text format (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The `status` label of one ARM request: the HTTP code when a response arrived; `dropped` when
/// the request was sent but no response came (connection dropped, timeout: a transient class);
/// `error` when it failed before any response for another reason (e.g. no access token).
fn status_label(event: &RequestEvent<'_>) -> String {
    match (event.status, event.class) {
        (Some(code), _) => code.to_string(),
        (None, Some(ErrorClass::Transient)) => "dropped".to_owned(),
        (None, _) => "error".to_owned(),
    }
}

impl RequestObserver for Metrics {
    fn on_request(&self, event: &RequestEvent<'_>) {
        self.arm_requests
            .get_or_create(&ArmRequestLabels {
                method: event.method.to_owned(),
                resource_type: event.resource_type.to_owned(),
                status: status_label(event),
                subscription: event.subscription.unwrap_or_default().to_owned(),
            })
            .inc();
        self.arm_request_duration
            .get_or_create(&ArmDurationLabels {
                method: event.method.to_owned(),
                resource_type: event.resource_type.to_owned(),
            })
            .observe(event.duration.as_secs_f64());
        let Some(subscription) = event.subscription else {
            return;
        };
        let rl = &event.rate_limit;
        for (kind, remaining) in [
            ("reads", rl.reads),
            ("writes", rl.writes),
            ("deletes", rl.deletes),
        ] {
            // A response only carries the buckets its method draws from; keep the others.
            if let Some(remaining) = remaining {
                self.arm_budget_remaining
                    .get_or_create(&BudgetLabels {
                        subscription: subscription.to_owned(),
                        kind: kind.to_owned(),
                    })
                    .set(i64::from(remaining));
            }
        }
    }
}

/// What the metrics and health server serves besides the metrics themselves.
pub struct Serving {
    pub metrics: Arc<Metrics>,
    /// `/readyz`: true once the endpoint cache is synced.
    pub ready: watch::Receiver<bool>,
    /// `/healthz`: whether the controller's watches work.
    pub health: WatchHealth,
    /// `Some`: HTTPS, and `/metrics` only for callers Kubernetes authorises
    /// ([`crate::metrics_auth`]). `/healthz` and `/readyz` stay open on the same port: the kubelet
    /// probes them with no token, and they say nothing an endpoint's status does not.
    pub secure: Option<Secure>,
}

pub struct Secure {
    pub tls: Arc<rustls::ServerConfig>,
    pub authorizer: Arc<Authorizer>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    health: WatchHealth,
    authorizer: Option<Arc<Authorizer>>,
}

async fn metrics_handler(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(authorizer) = &state.authorizer {
        let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let verb = method.as_str().to_ascii_lowercase();
        match authorizer.decide(authorization, &verb, uri.path()).await {
            Ok(Decision::Allow) => {}
            Ok(Decision::Unauthenticated) => {
                return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
            }
            Ok(Decision::Forbidden(user)) => {
                tracing::debug!(user, "a /metrics request was denied");
                let msg = format!("Authorization denied for user {user}");
                return (StatusCode::FORBIDDEN, msg).into_response();
            }
            Err(e) => {
                tracing::error!(error = %e, "authenticating a /metrics request failed");
                let msg = "Authentication failed";
                return (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response();
            }
        }
    }
    (
        [(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.health.check() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if *state.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds `addr`, logs the bound address and serves `GET /metrics`, `/healthz` (200 `ok` while
/// the watches work, else 503 with what failed) and `/readyz` (200 while `*ready` is true, else
/// 503) until `shutdown` completes. Errors only when binding fails or the server stops on an
/// I/O error.
pub async fn serve(
    addr: SocketAddr,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics and health listener on {addr}"))?;
    serve_on(listener, serving, shutdown).await
}

/// [`serve`] on a listener bound by the caller (e.g. to `127.0.0.1:0`, reading the port from
/// `listener.local_addr()` first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let (tls, authorizer) = match serving.secure {
        Some(s) => (Some(s.tls), Some(s.authorizer)),
        None => (None, None),
    };
    let app = router(AppState {
        metrics: serving.metrics,
        ready: serving.ready,
        health: serving.health,
        authorizer,
    });
    let served = match tls {
        Some(tls) => {
            tracing::info!(addr = %local, "serving /metrics (HTTPS, Kubernetes authentication and authorisation), /healthz and /readyz");
            let listener = TlsListener::new(listener, tls)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.context("metrics and health server")
}

/// Installs the global tracing subscriber: filter from `RUST_LOG` (default `info`), JSON lines when
/// `json`. Calling it again (or after another subscriber was set, as in tests) does nothing.
pub fn init_logging(json: bool) {
    let (filter, bad_filter) = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => (f, None),
        // Unset is the common case; only an invalid RUST_LOG is worth a warning.
        Err(e) => (
            tracing_subscriber::EnvFilter::new("info"),
            std::env::var("RUST_LOG").ok().map(|v| (v, e)),
        ),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if json {
        builder.json().flatten_event(true).try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    };
    if installed && let Some((value, e)) = bad_filter {
        tracing::warn!(rust_log = %value, error = %e, "ignoring an invalid RUST_LOG; logging at info");
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
