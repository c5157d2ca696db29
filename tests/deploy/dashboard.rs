//! The chart's Grafana dashboard and secure metrics as rendered. The dashboard's queries are
//! evaluated by Prometheus' engine (`hack/alert-check dashboard`) on a page of the operator's own
//! `Metrics` with every family populated, where each must return data; the end-to-end test in
//! tests/controller/convergence.rs evaluates them on a real scrape.

use super::*;

fn dashboard_path() -> PathBuf {
    chart().join("dashboards/fhirlock.json")
}

fn alert_check() -> PathBuf {
    built("hack/alert-check/build.sh").join("alert-check")
}

/// `alert-check dashboard DASHBOARD PAGES...`: its JSON lines, and whether it passed.
fn check(dashboard: &Path, pages: &[PathBuf]) -> (Vec<Value>, bool) {
    let out = Command::new(alert_check())
        .arg("dashboard")
        .arg(dashboard)
        .args(pages)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "alert-check: {}",
        text(&out.stderr)
    );
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, out.status.success())
}

/// Two pages of the operator's `Metrics`, a scrape interval apart, every family populated.
fn populated_pages(dir: &Path) -> Vec<PathBuf> {
    fhirlock_tests::metrics::every_family(2)
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let p = dir.join(format!("metrics-{i}.txt"));
            std::fs::write(&p, page).unwrap();
            p
        })
        .collect()
}

#[test]
fn every_dashboard_query_returns_data_from_metrics_fhirlock_exports_and_the_chart_ships_it() {
    let dir = tempfile::tempdir().unwrap();
    let pages = populated_pages(dir.path());
    let (lines, ok) = check(&dashboard_path(), &pages);
    assert!(ok, "{lines:#?}");
    let queries: Vec<&Value> = lines.iter().filter(|l| l.get("expr").is_some()).collect();
    assert!(queries.len() >= 15, "{queries:#?}");
    for q in &queries {
        assert!(q["samples"][1].as_u64().unwrap_or(0) > 0, "no data: {q}");
    }
    let panels: BTreeMap<&str, ()> = queries
        .iter()
        .map(|q| (q["panel"].as_str().unwrap(), ()))
        .collect();
    for title in [
        "Endpoints by condition",
        "Findings by code and severity",
        "Drift corrections",
        "ARM requests by subscription",
        "ARM 429s by subscription",
        "ARM budget remaining",
        "Writes deferred for the budget",
        "Reconcile latency",
        "Listener certificate expiry",
    ] {
        assert!(panels.contains_key(title), "no panel {title}: {panels:?}");
    }
    let var = lines.iter().find(|l| l["variable"] == "namespace").unwrap();
    assert_eq!(var["ok"], true, "{var}");

    // The check can fail: a metric fhirlock does not export is named as such.
    let misspelt = std::fs::read_to_string(dashboard_path()).unwrap().replacen(
        "fhirlock_drifts_corrected_total",
        "fhirlock_drift_corrected_total",
        1,
    );
    let misspelt_path = dir.path().join("misspelt.json");
    std::fs::write(&misspelt_path, misspelt).unwrap();
    let (lines, ok) = check(&misspelt_path, &pages);
    let bad: Vec<&Value> = lines.iter().filter(|l| l["ok"] != true).collect();
    assert!(!ok && bad.len() == 1, "{bad:#?}");
    assert_eq!(bad[0]["unknown"], json!(["fhirlock_drift_corrected_total"]));

    // Off by default; on, one ConfigMap for the Grafana sidecar carrying the file as it is.
    let default = docs(&helm_template(&[]));
    assert!(
        !default
            .iter()
            .any(|o| o["metadata"]["name"] == "fhirlock-dashboard"),
        "rendered by default"
    );
    let on = helm_template(&[
        "--set",
        "dashboards.enabled=true",
        "--set",
        "dashboards.namespace=monitoring",
    ]);
    let objs = docs(&on);
    let cm = find(&objs, "ConfigMap", "fhirlock-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    let shipped: Value =
        serde_json::from_str(cm["data"]["fhirlock.json"].as_str().unwrap()).unwrap();
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    assert_eq!(shipped, file);
    namespace("monitoring");
    let cm_yaml = serde_yaml::to_string(cm).unwrap();
    server_dry_run("the dashboard ConfigMap", &cm_yaml);
}

#[test]
fn secure_metrics_are_the_default_with_https_probes_and_scrapes() {
    let full = chart().join("ci/full-values.yaml");
    let objs = docs(&helm_template(&["-f", full.to_str().unwrap()]));
    let d = find(&objs, "Deployment", "fhirlock");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"].to_string();
    assert!(args.contains("\"--metrics-secure\""), "{args}");
    assert!(
        args.contains("\"--metrics-cert-dir=/etc/fhirlock/metrics-tls\""),
        "{args}"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let vols = d["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(vols.contains("fhirlock-metrics-tls"), "{vols}");
    let ep = &find(&objs, "ServiceMonitor", "fhirlock")["spec"]["endpoints"][0];
    assert_eq!(ep["scheme"], "https");
    assert_eq!(
        ep["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    assert_eq!(ep["tlsConfig"]["insecureSkipVerify"], true);

    // Turned off: plain HTTP everywhere, and no review rights.
    let plain = docs(&helm_template(&[
        "-f",
        full.to_str().unwrap(),
        "--set",
        "metrics.secure=false",
    ]));
    let d = find(&plain, "Deployment", "fhirlock");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"].to_string();
    assert!(
        !args.contains("--metrics-secure") && !args.contains("--metrics-cert-dir"),
        "{args}"
    );
    assert!(c["livenessProbe"]["httpGet"].get("scheme").is_none());
    let ep = &find(&plain, "ServiceMonitor", "fhirlock")["spec"]["endpoints"][0];
    assert!(ep.get("scheme").is_none() && ep.get("bearerTokenFile").is_none());
}
