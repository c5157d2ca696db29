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
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use fhirlock_arm::{ErrorClass, RequestEvent, RequestObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

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
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmDurationLabels {
    method: String,
    resource_type: String,
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
    findings: Family<FindingLabels, Gauge>,
    time_to_ready: Histogram,
    deferred_writes: Family<SubscriptionLabels, Counter>,
    arm_requests: Family<ArmRequestLabels, Counter>,
    arm_request_duration: HistogramFamily<ArmDurationLabels>,
    arm_budget_remaining: Family<BudgetLabels, Gauge>,
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
            "HTTP requests sent to ARM, by method, resource type and status \
             (HTTP code, \"dropped\" for no response, \"error\" when none could be sent)",
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

        Arc::new(Metrics {
            registry,
            reconciles,
            reconcile_duration,
            drifts_corrected,
            endpoint_ready,
            endpoint_reachable,
            findings,
            time_to_ready,
            deferred_writes,
            arm_requests,
            arm_request_duration,
            arm_budget_remaining,
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

    /// The endpoint is gone: remove all its series.
    pub fn forget_endpoint(&self, namespace: &str, name: &str) {
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

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if *state.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

fn router(metrics: Arc<Metrics>, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready })
}

/// Binds `addr`, logs the bound address and serves `GET /metrics`, `/healthz` (always 200 `ok`)
/// and `/readyz` (200 while `*ready` is true, else 503) until `shutdown` completes.
/// Errors only when binding fails or the server stops on an I/O error.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics and health listener on {addr}"))?;
    serve_on(listener, metrics, ready, shutdown).await
}

/// [`serve`] on a listener bound by the caller (e.g. to `127.0.0.1:0`, reading the port from
/// `listener.local_addr()` first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(metrics, ready))
        .with_graceful_shutdown(shutdown)
        .await
        .context("metrics and health server")
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
mod tests {
    use super::*;
    use fhirlock_arm::RateLimitHeaders;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The sample lines (not comments) of `text` that start with `family`.
    fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(family))
            .collect()
    }

    fn event<'a>(
        method: &'a str,
        resource_type: &'a str,
        subscription: Option<&'a str>,
        status: Option<u16>,
        class: Option<ErrorClass>,
        rate_limit: RateLimitHeaders,
    ) -> RequestEvent<'a> {
        RequestEvent {
            method,
            resource_type,
            subscription,
            status,
            duration: Duration::from_millis(40),
            class,
            rate_limit,
            retry_after: None,
            poll: false,
            attempt: 0,
        }
    }

    #[test]
    fn render_has_every_family_with_its_labels() {
        let m = Metrics::new();
        m.reconcile("ok", Duration::from_millis(300));
        m.reconcile("ok", Duration::from_millis(100));
        m.reconcile("error", Duration::from_secs(2));
        m.drift_corrected("Microsoft.Network/applicationGateways");
        m.set_endpoint(
            "fhir",
            "prod",
            true,
            &[("PublicNetworkAccessEnabled", "High", 1)],
        );
        m.time_to_ready(420.0);
        m.deferred_writes("sub-1");
        let text = m.render();

        assert!(
            text.contains("# TYPE fhirlock_reconciles counter"),
            "{text}"
        );
        assert!(text.contains("fhirlock_reconciles_total{result=\"ok\"} 2"));
        assert!(text.contains("fhirlock_reconciles_total{result=\"error\"} 1"));
        assert!(text.contains("# TYPE fhirlock_reconcile_duration_seconds histogram"));
        assert!(text.contains("fhirlock_reconcile_duration_seconds_count 3"));
        assert!(text.contains(
            "fhirlock_drifts_corrected_total{resource_type=\"Microsoft.Network/applicationGateways\"} 1"
        ));
        assert!(text.contains("fhirlock_endpoint_ready{namespace=\"fhir\",name=\"prod\"} 1"));
        assert!(text.contains(
            "fhirlock_findings{namespace=\"fhir\",name=\"prod\",code=\"PublicNetworkAccessEnabled\",severity=\"High\"} 1"
        ));
        assert!(text.contains("fhirlock_time_to_ready_seconds_bucket{le=\"600.0\"} 1"));
        assert!(text.contains("fhirlock_time_to_ready_seconds_bucket{le=\"300.0\"} 0"));
        assert!(text.contains("fhirlock_arm_deferred_writes_total{subscription=\"sub-1\"} 1"));
        assert!(text.trim_end().ends_with("# EOF"));

        m.set_endpoint(
            "fhir",
            "prod",
            false,
            &[("PublicNetworkAccessEnabled", "High", 1)],
        );
        assert!(
            m.render()
                .contains("fhirlock_endpoint_ready{namespace=\"fhir\",name=\"prod\"} 0")
        );
    }

    #[test]
    fn set_endpoint_removes_finding_codes_no_longer_reported() {
        let m = Metrics::new();
        m.set_endpoint("ns", "a", false, &[("A", "High", 2), ("B", "High", 1)]);
        m.set_endpoint("ns", "b", false, &[("A", "High", 5)]);
        m.set_endpoint("ns", "a", false, &[("B", "High", 3), ("C", "High", 1)]);
        let text = m.render();
        let findings = samples(&text, "fhirlock_findings{");
        assert_eq!(
            findings.len(),
            3,
            "a/A must be gone, b/A must stay: {findings:#?}"
        );
        assert!(text.contains(
            "fhirlock_findings{namespace=\"ns\",name=\"a\",code=\"B\",severity=\"High\"} 3"
        ));
        assert!(text.contains(
            "fhirlock_findings{namespace=\"ns\",name=\"a\",code=\"C\",severity=\"High\"} 1"
        ));
        assert!(text.contains(
            "fhirlock_findings{namespace=\"ns\",name=\"b\",code=\"A\",severity=\"High\"} 5"
        ));

        m.set_endpoint("ns", "a", true, &[]);
        let text = m.render();
        assert_eq!(samples(&text, "fhirlock_findings{").len(), 1, "{text}");
        assert!(text.contains("fhirlock_endpoint_ready{namespace=\"ns\",name=\"a\"} 1"));
    }

    #[test]
    fn forget_endpoint_removes_its_series_only() {
        let m = Metrics::new();
        m.set_endpoint("ns", "gone", true, &[("A", "High", 1), ("B", "High", 2)]);
        m.set_endpoint("ns", "kept", false, &[("A", "High", 1)]);
        m.forget_endpoint("ns", "gone");
        let text = m.render();
        assert!(!text.contains("name=\"gone\""), "{text}");
        assert_eq!(samples(&text, "fhirlock_endpoint_ready{").len(), 1);
        assert_eq!(samples(&text, "fhirlock_findings{").len(), 1);
        // Forgetting an unknown endpoint is harmless.
        m.forget_endpoint("ns", "never-seen");
    }

    #[test]
    fn forget_all_endpoints_leaves_no_per_endpoint_series_but_keeps_the_rest() {
        let m = Metrics::new();
        m.set_endpoint("ns", "a", true, &[("A", "High", 1)]);
        m.set_endpoint("other", "b", false, &[("B", "High", 2)]);
        m.reconcile("ok", std::time::Duration::from_millis(5));
        m.forget_all_endpoints();
        let text = m.render();
        assert!(
            samples(&text, "fhirlock_endpoint_ready{").is_empty(),
            "{text}"
        );
        assert!(samples(&text, "fhirlock_findings{").is_empty(), "{text}");
        assert!(text.contains("fhirlock_reconciles_total"), "{text}");
        // Series come back when this replica leads again.
        m.set_endpoint("ns", "a", false, &[("A", "High", 1)]);
        assert_eq!(samples(&m.render(), "fhirlock_findings{").len(), 1);
    }

    #[test]
    fn observer_counts_requests_and_tracks_budgets() {
        let m = Metrics::new();
        let subnets = "Microsoft.Network/virtualNetworks/subnets";
        let reads = RateLimitHeaders {
            reads: Some(11999),
            ..Default::default()
        };
        m.on_request(&event(
            "GET",
            subnets,
            Some("sub-1"),
            Some(200),
            None,
            reads,
        ));
        let reads = RateLimitHeaders {
            reads: Some(11998),
            ..Default::default()
        };
        m.on_request(&event(
            "GET",
            subnets,
            Some("sub-1"),
            Some(200),
            None,
            reads,
        ));
        let writes = RateLimitHeaders {
            writes: Some(1199),
            ..Default::default()
        };
        m.on_request(&event(
            "PUT",
            subnets,
            Some("sub-1"),
            Some(429),
            Some(ErrorClass::Throttled),
            writes,
        ));
        m.on_request(&event(
            "GET",
            subnets,
            Some("sub-1"),
            None,
            Some(ErrorClass::Transient),
            RateLimitHeaders::default(),
        ));
        m.on_request(&event(
            "GET",
            subnets,
            None,
            None,
            Some(ErrorClass::Auth),
            RateLimitHeaders::default(),
        ));
        let text = m.render();

        let req = |method: &str, status: &str, n: u32| {
            format!(
                "fhirlock_arm_requests_total{{method=\"{method}\",resource_type=\"{subnets}\",status=\"{status}\"}} {n}"
            )
        };
        for line in [
            req("GET", "200", 2),
            req("PUT", "429", 1),
            req("GET", "dropped", 1),
            req("GET", "error", 1),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(text.contains(&format!(
            "fhirlock_arm_request_duration_seconds_count{{method=\"GET\",resource_type=\"{subnets}\"}} 4"
        )));
        // The newest value wins; a response without a bucket's header leaves that bucket alone.
        assert!(text.contains(
            "fhirlock_arm_budget_remaining{subscription=\"sub-1\",kind=\"reads\"} 11998"
        ));
        assert!(text.contains(
            "fhirlock_arm_budget_remaining{subscription=\"sub-1\",kind=\"writes\"} 1199"
        ));
        assert_eq!(
            samples(&text, "fhirlock_arm_budget_remaining{").len(),
            2,
            "{text}"
        );
    }

    /// One HTTP/1.1 request over a fresh connection; returns (status, content-type, body).
    async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    }

    #[tokio::test]
    async fn serve_answers_metrics_health_and_readiness() {
        let m = Metrics::new();
        m.reconcile("ok", Duration::from_millis(5));
        let (ready_tx, ready_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_on(listener, m.clone(), ready_rx, async {
            let _ = stop_rx.await;
        }));

        let (status, content_type, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(
            body.contains("fhirlock_reconciles_total{result=\"ok\"} 1"),
            "{body}"
        );

        let (status, _, body) = http_get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        assert_eq!(http_get(addr, "/readyz").await.0, 503);
        ready_tx.send(true).unwrap();
        assert_eq!(http_get(addr, "/readyz").await.0, 200);

        assert_eq!(http_get(addr, "/nope").await.0, 404);

        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn serve_reports_a_bind_failure() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let (_tx, rx) = watch::channel(true);
        let err = serve(addr, Metrics::new(), rx, std::future::pending())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
