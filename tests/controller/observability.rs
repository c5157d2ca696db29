//! What the operator tells about itself once deployed: the Grafana dashboard's queries on its
//! real `/metrics`, and `/healthz` when its watches die (RBAC revoked) and come back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::*;

/// Panels whose data needs an event a converging estate does not have: ARM answering 429.
const EVENT_ONLY: [&str; 1] = ["ARM 429s by subscription"];

/// `hack/alert-check dashboard` on the chart's dashboard and these scrapes: every query parses,
/// names only metrics the operator exports (on these scrapes, or, for a family that has had no
/// event yet and so is not on them, on a page of its `Metrics` with every family populated), and
/// returns data at the last scrape unless it names such a family or needs an event of
/// [`EVENT_ONLY`].
fn dashboard_queries_hold_on(pages: &[String], dir: &Path) {
    let root = testenv::workspace_root();
    let out = Command::new(root.join("hack/alert-check/build.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "hack/alert-check/build.sh failed");
    let tool = PathBuf::from(text(&out.stdout).lines().last().unwrap().trim()).join("alert-check");
    let files: Vec<PathBuf> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = dir.join(format!("scrape-{i}.txt"));
            std::fs::write(&f, p).unwrap();
            f
        })
        .collect();
    let catalogue = dir.join("every-family.txt");
    let every = fhirlock_tests::metrics::every_family(1);
    std::fs::write(&catalogue, &every[0]).unwrap();
    let out = Command::new(tool)
        .arg("dashboard")
        .arg(root.join("deploy/helm/fhirlock/dashboards/fhirlock.json"))
        .arg(format!("--names={}", catalogue.display()))
        .args(&files)
        .output()
        .unwrap();
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        out.status.success(),
        "the dashboard reads what the operator does not export:\n{lines:#?}\n{}",
        text(&out.stderr)
    );
    let queries: Vec<&Value> = lines.iter().filter(|l| l.get("expr").is_some()).collect();
    assert!(!queries.is_empty());
    let mut with_data = 0;
    for q in &queries {
        let last = q["samples"].as_array().unwrap().last().unwrap();
        let waits = !q["absent"].as_array().unwrap().is_empty()
            || EVENT_ONLY.contains(&q["panel"].as_str().unwrap());
        assert!(
            last.as_u64().unwrap() > 0 || waits,
            "no data on a real scrape: {q}\n{}",
            pages.last().unwrap()
        );
        with_data += usize::from(last.as_u64().unwrap() > 0);
    }
    assert!(with_data * 3 >= queries.len() * 2, "{queries:#?}");
}

/// The endpoint's namespace, and a kubeconfig holding the token of a ServiceAccount bound, by
/// the binding `name`, to the ClusterRole of deploy/rbac (and the tenant Role in `ns`).
fn least_privilege_kubeconfig(ns: &str, name: &str, dir: &Path) -> PathBuf {
    let op_ns = namespace(&format!("{name}-op"));
    let rbac = testenv::workspace_root().join("deploy/rbac");
    kubectl_ok(&[
        "apply",
        "-f",
        rbac.join("cluster-role.yaml").to_str().unwrap(),
    ]);
    let tenant_role = rbac.join("tenant/role.yaml");
    kubectl_ok(&["apply", "-n", ns, "-f", tenant_role.to_str().unwrap()]);
    kubectl_ok(&["create", "serviceaccount", "fhirlock", "-n", &op_ns]);
    let sa = format!("{op_ns}:fhirlock");
    kubectl_ok(&[
        "create",
        "rolebinding",
        name,
        "-n",
        ns,
        "--role=fhirlock-tenant",
        &format!("--serviceaccount={sa}"),
    ]);
    bind(name, &sa);
    let token = kubectl_ok(&["create", "token", "fhirlock", "-n", &op_ns, "--duration=1h"]);
    let admin = std::fs::read_to_string(plane().kubeconfig_path()).unwrap();
    let mut kc: Value = serde_yaml::from_str(&admin).unwrap();
    kc["users"] = json!([{"name": "fhirlock", "user": {"token": token.trim()}}]);
    kc["contexts"][0]["context"]["user"] = json!("fhirlock");
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}

/// The ClusterRoleBinding `name` of the ClusterRole fhirlock to the ServiceAccount `sa`.
fn bind(name: &str, sa: &str) {
    kubectl_ok(&[
        "create",
        "clusterrolebinding",
        name,
        "--clusterrole=fhirlock",
        &format!("--serviceaccount={sa}"),
    ]);
}

/// Polls `/healthz` until its status is `want` and its body says `says`; returns the body.
fn healthz_becomes(
    op: &Operator,
    want: u16,
    says: &[&str],
    timeout: Duration,
    what: &str,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((status, body)) = op.get("/healthz")
            && status == want
            && says.iter().all(|s| body.contains(s))
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz is not {want} ({what}) after {timeout:?}: {:?}\n{}",
            op.get("/healthz"),
            fhirlock_tests::operator::tail(&op.logs(), 30)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_dashboard_reads_real_metrics_and_healthz_fails_while_the_watches_are_forbidden() {
    let _s = serial();
    let ns = namespace("e2e-health");
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let kubeconfig = least_privilege_kubeconfig(&ns, "e2e-health", emu.dir());
    let op = operator(
        &emu,
        &tenancy(emu.dir(), &[&ns], None),
        Some(&kubeconfig),
        &["--watch-failure-seconds", "3"],
    );
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    wait_for(&op, &ns, &name, READY, "Reachable", |o| {
        condition(o, "Reachable").is_some_and(|c| c["status"] == "True")
    });
    assert_eq!(op.get("/healthz").unwrap(), (200, "ok".to_owned()));

    // Two scrapes of the converged operator, a resync apart, as Prometheus would take them.
    let first = op.metrics().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    dashboard_queries_hold_on(&[first, op.metrics().unwrap()], emu.dir());

    // The operator may no longer list endpoints. A running watch outlives its RBAC, so the
    // apiserver restarts (as when it rolls); the relists are then refused.
    kubectl_ok(&["delete", "clusterrolebinding", "e2e-health"]);
    plane().restart_apiserver().unwrap();
    // While it restarts every watch fails to connect; then the endpoints' are refused.
    let says = [
        "the watch of securedfhirendpoints has failed for",
        "orbidden",
    ];
    healthz_becomes(
        &op,
        503,
        &says,
        Duration::from_secs(90),
        "watches forbidden",
    );
    assert_eq!(op.readyz(), 200, "the cache it has stays synced");
    // Given back, the next retry (the watcher backs off up to 30 s) lists again.
    bind("e2e-health", "e2e-health-op:fhirlock");
    healthz_becomes(&op, 200, &["ok"], Duration::from_secs(90), "RBAC restored");
    kubectl_ok(&["delete", "clusterrolebinding", "e2e-health"]);
}
