//! `/metrics` with `--metrics-secure` against a real kube-apiserver (RBAC authorization, as
//! `testenv` runs it): the operator's identity holds only `deploy/rbac/metrics-auth-role.yaml`,
//! the scrapers are ServiceAccounts with and without `deploy/rbac/metrics-reader-role.yaml`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fhirlock::metrics_auth::{Authorizer, tls_config};
use fhirlock::telemetry::{Metrics, Secure, Serving, serve_on};
use fhirlock::watch_health::WatchHealth;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn kubectl(plane: &testenv::ControlPlane, args: &[&str]) -> String {
    let out = plane.kubectl().unwrap().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn token(plane: &testenv::ControlPlane, ns: &str, sa: &str) -> String {
    kubectl(plane, &["create", "token", sa, "-n", ns, "--duration=1h"])
}

/// A client of the control plane that authenticates with `token` alone.
async fn client_as(plane: &testenv::ControlPlane, token: String) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    kube::Client::try_from(config).unwrap()
}

/// Serves `metrics` on a free port with --metrics-secure, asking the apiserver as `operator`.
async fn secure_server(
    operator: kube::Client,
    metrics: Arc<Metrics>,
) -> (SocketAddr, rustls::pki_types::CertificateDer<'static>) {
    let (tls, cert) = tls_config(None).unwrap();
    let (_, ready) = tokio::sync::watch::channel(true);
    let serving = Serving {
        metrics,
        ready,
        health: WatchHealth::new(Duration::from_secs(60)),
        secure: Some(Secure {
            tls,
            authorizer: Arc::new(Authorizer::new(operator)),
        }),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_on(listener, serving, std::future::pending()));
    (addr, cert)
}

/// `GET /metrics` over TLS (trusting only `cert`) with an optional bearer token: (status, body).
async fn scrape(
    addr: SocketAddr,
    cert: &rustls::pki_types::CertificateDer<'static>,
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
    let req =
        format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_bound_to_metrics_reader_reads_metrics() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let plane = tokio::task::spawn_blocking(testenv::shared).await.unwrap();
    let rbac = testenv::workspace_root().join("deploy/rbac");
    let file = |f: &str| rbac.join(f).display().to_string();
    kubectl(plane, &["create", "namespace", "fhirlock-system"]);
    kubectl(plane, &["create", "namespace", "monitoring"]);
    // The operator: its ServiceAccount with the metrics-auth ClusterRole and nothing else.
    for f in [
        "service-account.yaml",
        "metrics-auth-role.yaml",
        "metrics-auth-role-binding.yaml",
        "metrics-reader-role.yaml",
    ] {
        kubectl(plane, &["apply", "-n", "fhirlock-system", "-f", &file(f)]);
    }
    // Scrapers: one bound to fhirlock-metrics-reader, one with no role at all.
    for sa in ["prometheus", "nobody"] {
        kubectl(plane, &["create", "serviceaccount", sa, "-n", "monitoring"]);
    }
    kubectl(
        plane,
        &[
            "create",
            "clusterrolebinding",
            "prometheus-fhirlock-metrics",
            "--clusterrole=fhirlock-metrics-reader",
            "--serviceaccount=monitoring:prometheus",
        ],
    );
    let metrics = Metrics::new();
    metrics.reconcile("ok", Duration::from_millis(5));
    let operator = client_as(plane, token(plane, "fhirlock-system", "fhirlock")).await;
    let (addr, cert) = secure_server(operator, metrics.clone()).await;

    let prometheus = token(plane, "monitoring", "prometheus");
    let (status, body) = scrape(addr, &cert, Some(&prometheus)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("fhirlock_reconciles_total{result=\"ok\"} 1"),
        "{body}"
    );

    let nobody = token(plane, "monitoring", "nobody");
    let (status, body) = scrape(addr, &cert, Some(&nobody)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "Authorization denied for user system:serviceaccount:monitoring:nobody"
        )
    );
    assert_eq!(scrape(addr, &cert, None).await.0, 401, "no token");
    // A token the apiserver did not issue (prometheus' with its signature cut short).
    let forged = &prometheus[..prometheus.len() - 4];
    assert_eq!(
        scrape(addr, &cert, Some(forged)).await.0,
        401,
        "forged token"
    );

    // Without the metrics-auth role the operator cannot ask, and nobody gets in, prometheus
    // included.
    kubectl(
        plane,
        &["create", "serviceaccount", "bare", "-n", "fhirlock-system"],
    );
    let bare = client_as(plane, token(plane, "fhirlock-system", "bare")).await;
    let (addr, cert) = secure_server(bare, metrics).await;
    let (status, body) = scrape(addr, &cert, Some(&prometheus)).await;
    assert_eq!((status, body.as_str()), (500, "Authentication failed"));
}
