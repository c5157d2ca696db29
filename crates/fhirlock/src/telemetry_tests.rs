//! The metrics' tests (kept apart so telemetry.rs stays under 800 lines).

use super::*;
use crate::metrics_auth::Authorizer;
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
fn released_without_cleanup_is_exported_at_zero_before_any_release() {
    // The alert's increase() needs a sample before the first release to see it.
    let m = Metrics::new();
    let family = "fhirlock_finalizers_released_without_cleanup_total";
    // A family renders its label sets in no fixed order.
    let rendered = m.render();
    let mut zero = samples(&rendered, family);
    zero.sort_unstable();
    assert_eq!(
        zero,
        [
            "fhirlock_finalizers_released_without_cleanup_total{reason=\"annotation\"} 0",
            "fhirlock_finalizers_released_without_cleanup_total{reason=\"namespace_deleted\"} 0",
        ]
    );
    m.released_without_cleanup("namespace_deleted");
    assert!(samples(&m.render(), family).contains(
        &"fhirlock_finalizers_released_without_cleanup_total{reason=\"namespace_deleted\"} 1"
    ));
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
    assert!(
        text.contains(
            "fhirlock_findings{namespace=\"ns\",name=\"a\",code=\"B\",severity=\"High\"} 3"
        )
    );
    assert!(
        text.contains(
            "fhirlock_findings{namespace=\"ns\",name=\"a\",code=\"C\",severity=\"High\"} 1"
        )
    );
    assert!(
        text.contains(
            "fhirlock_findings{namespace=\"ns\",name=\"b\",code=\"A\",severity=\"High\"} 5"
        )
    );

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

    let req = |method: &str, status: &str, subscription: &str, n: u32| {
        format!(
            "fhirlock_arm_requests_total{{method=\"{method}\",resource_type=\"{subnets}\",status=\"{status}\",subscription=\"{subscription}\"}} {n}"
        )
    };
    for line in [
        req("GET", "200", "sub-1", 2),
        req("PUT", "429", "sub-1", 1),
        req("GET", "dropped", "sub-1", 1),
        // No subscription: an empty label, which Prometheus treats as none.
        req("GET", "error", "", 1),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    assert!(text.contains(&format!(
        "fhirlock_arm_request_duration_seconds_count{{method=\"GET\",resource_type=\"{subnets}\"}} 4"
    )));
    // The newest value wins; a response without a bucket's header leaves that bucket alone.
    assert!(
        text.contains("fhirlock_arm_budget_remaining{subscription=\"sub-1\",kind=\"reads\"} 11998")
    );
    assert!(
        text.contains("fhirlock_arm_budget_remaining{subscription=\"sub-1\",kind=\"writes\"} 1199")
    );
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

fn serving(m: &Arc<Metrics>, ready: watch::Receiver<bool>, health: &WatchHealth) -> Serving {
    Serving {
        metrics: m.clone(),
        ready,
        health: health.clone(),
        secure: None,
    }
}

#[tokio::test]
async fn serve_answers_metrics_health_and_readiness() {
    let m = Metrics::new();
    m.reconcile("ok", Duration::from_millis(5));
    let (ready_tx, ready_rx) = watch::channel(false);
    let health = WatchHealth::new(Duration::ZERO);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_on(listener, serving(&m, ready_rx, &health), async {
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
    // A watch failing past the threshold (zero here) fails /healthz, saying which and why; its
    // next event heals it.
    health.observe("securedfhirendpoints", &Err::<(), _>("403 Forbidden"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the watch of securedfhirendpoints has failed") && body.contains("403"),
        "{body}"
    );
    health.observe("securedfhirendpoints", &Ok::<(), &str>(()));
    assert_eq!(http_get(addr, "/healthz").await.0, 200);

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
    let health = WatchHealth::new(Duration::from_secs(1));
    let err = serve(
        addr,
        serving(&Metrics::new(), rx, &health),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
}

/// One HTTP/1.1 request over TLS, trusting only `cert`; returns (status, body).
async fn https_get(
    addr: SocketAddr,
    cert: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify once the answer is sent.
    let _ = conn.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn secure_serving_is_tls_and_never_serves_metrics_it_could_not_authorise() {
    let (tls, cert) = crate::metrics_auth::tls_config(None).unwrap();
    // An apiserver that is not there: a token cannot be checked, which must not let it in.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let apiserver = format!("https://{}", gone.local_addr().unwrap());
    drop(gone);
    let client = kube::Client::try_from(kube::Config::new(apiserver.parse().unwrap())).unwrap();
    let (_tx, rx) = watch::channel(true);
    let health = WatchHealth::new(Duration::from_secs(60));
    let mut s = serving(&Metrics::new(), rx, &health);
    s.secure = Some(Secure {
        tls,
        authorizer: Arc::new(Authorizer::new(client)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_on(listener, s, std::future::pending()));

    // Plain HTTP gets no answer from a TLS port.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("fhirlock_"),
        "served over plain HTTP"
    );

    // The probes need no token; /metrics does.
    assert_eq!(
        https_get(addr, &cert, "/healthz", None).await,
        (200, "ok".into())
    );
    assert_eq!(https_get(addr, &cert, "/readyz", None).await.0, 200);
    assert_eq!(https_get(addr, &cert, "/metrics", None).await.0, 401);
    assert_eq!(https_get(addr, &cert, "/metrics", Some("")).await.0, 401);
    let (status, body) = https_get(addr, &cert, "/metrics", Some("abc")).await;
    assert_eq!((status, body.as_str()), (500, "Authentication failed"));
    server.abort();
}

#[test]
fn reachable_is_one_zero_or_minus_one_and_goes_with_the_endpoint() {
    let m = Metrics::new();
    let table = [(Some(true), "1"), (Some(false), "0"), (None, "-1")];
    for (reachable, want) in table {
        m.set_reachable("ns", "a", reachable);
        let text = m.render();
        assert!(
            text.contains(&format!(
                "fhirlock_endpoint_reachable{{namespace=\"ns\",name=\"a\"}} {want}"
            )),
            "{text}"
        );
    }
    m.forget_endpoint("ns", "a");
    assert!(samples(&m.render(), "fhirlock_endpoint_reachable{").is_empty());
}

#[test]
fn the_certificate_expiry_is_a_unix_time_per_endpoint_and_goes_with_it() {
    let m = Metrics::new();
    m.set_certificate_expiry("ns", "a", Some(1_936_742_400));
    m.set_certificate_expiry("ns", "b", Some(1_900_000_000));
    let text = m.render();
    assert!(
        text.contains("# TYPE fhirlock_certificate_expiry_timestamp_seconds gauge")
            && text.contains(
                "fhirlock_certificate_expiry_timestamp_seconds{namespace=\"ns\",name=\"a\"} 1936742400"
            ),
        "{text}"
    );
    // A Key Vault certificate (not seen by fhirlock) has no series; nor has a deleted endpoint.
    m.set_certificate_expiry("ns", "b", None);
    m.forget_endpoint("ns", "a");
    assert!(
        samples(
            &m.render(),
            "fhirlock_certificate_expiry_timestamp_seconds{"
        )
        .is_empty()
    );
    m.set_certificate_expiry("ns", "c", Some(1));
    m.forget_all_endpoints();
    assert!(
        samples(
            &m.render(),
            "fhirlock_certificate_expiry_timestamp_seconds{"
        )
        .is_empty()
    );
}
