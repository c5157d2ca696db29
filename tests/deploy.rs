//! Deployment and GitOps, against the real kube-apiserver:
//!
//! - the RBAC in `deploy/rbac/` grants exactly what fhirlock needs (asked of the apiserver's
//!   authorizer) and is the same in the Helm chart and the kustomize base;
//! - `helm lint` passes and `helm template` (default and full values) and `kubectl kustomize`
//!   pass `kubectl apply --dry-run=server`, with no Pod Security warning in a namespace held to
//!   "restricted"; the kustomize base is the chart's defaults;
//! - real SecuredFhirEndpoint objects, put by the apiserver into each state, are judged by kstatus
//!   (what Flux uses) and by the Argo CD health script under gopher-lua (what Argo CD uses);
//! - the Flux and Argo CD examples pass a server-side dry run against the controllers' real CRDs,
//!   and copies of them with a required field removed or a field misspelt do not;
//! - the chart's alerts, as rendered, fire and stay quiet as `deploy/helm/alerts_test.yaml` says,
//!   evaluated by Prometheus' PromQL engine (`hack/alert-check`), and read only series that the
//!   operator's own `Metrics` exports;
//! - the Grafana dashboard's queries return data from the operator's `Metrics`, and the chart
//!   ships it (off by default); secure metrics are the chart's default;
//! - `make release` builds static binaries for amd64 and arm64 (run, arm64 under qemu), their
//!   CycloneDX SBOMs (validated by the CycloneDX library), both images, the chart and SHA256SUMS.
//!
//! The Go tools (helm, gitops-check, alert-check, the Prometheus CRDs, the Flux and Argo CD CRDs)
//! are built or fetched once from their Go modules by `hack/*/build.sh` and cached, as
//! `hack/k8s-bins` is.
//! `FHIRLOCK_UPDATE_FIXTURES=1` rewrites `deploy/argocd/testdata/` from the apiserver's objects.

#[path = "deploy/alerts.rs"]
mod alerts;
#[path = "deploy/chart.rs"]
mod chart;
#[path = "deploy/dashboard.rs"]
mod dashboard;
#[path = "deploy/gitops.rs"]
mod gitops;
#[path = "deploy/health.rs"]
mod health;
#[path = "deploy/image.rs"]
mod image;
#[path = "deploy/kustomize.rs"]
mod kustomize;
#[path = "deploy/rbac.rs"]
mod rbac;
#[path = "deploy/release.rs"]
mod release;
#[path = "deploy/states.rs"]
mod states;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fhirlock_tests::{kubectl, kubectl_ok, namespace, plane, text, wait_established};
use serde_json::{Value, json};
use states::states;

const OPERATOR_NS: &str = "fhirlock-system";
const SA: &str = "system:serviceaccount:fhirlock-system:fhirlock";

fn root() -> PathBuf {
    testenv::workspace_root()
}

/// Runs a `hack/*/build.sh` (it builds once, then answers from its cache) and returns the
/// directory it prints.
fn built(script: &str) -> PathBuf {
    let path = root().join(script);
    let out = Command::new(&path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(out.status.success(), "{} failed", path.display());
    let dir = text(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    PathBuf::from(dir)
}

fn helm() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| built("hack/helm/build.sh").join("helm"))
}

fn gitops_check() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| built("hack/gitops-check/build.sh").join("gitops-check"))
}

/// The operator namespace (held to the "restricted" Pod Security Standard, as the kustomize base
/// declares it) and the ServiceMonitor and PrometheusRule CRDs generated from prometheus-operator's
/// Go API, so that the chart's optional objects are checked against their real schemas.
fn prepared() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        plane();
        let ns = root().join("deploy/kustomize/base/namespace.yaml");
        kubectl_ok(&["apply", "-f", ns.to_str().unwrap()]);
        let crds = built("hack/prometheus-crds/build.sh");
        kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
        for crd in [
            "servicemonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com",
        ] {
            wait_established(crd);
        }
        kubectl_ok(&["api-resources", "--api-group=monitoring.coreos.com"]);
    });
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn chart() -> PathBuf {
    root().join("deploy/helm/fhirlock")
}

fn helm_template(extra: &[&str]) -> String {
    let chart = chart();
    let mut cmd = Command::new(helm());
    cmd.args(["template", "fhirlock"])
        .arg(&chart)
        .args(["--namespace", OPERATOR_NS, "--include-crds"])
        .args(extra);
    run(&mut cmd)
}

/// The documents of a YAML stream (as helm and kustomize write them: `---` lines between).
fn docs(yaml: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in yaml.lines().chain(["---"]) {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            if !cur.trim().is_empty() {
                let v: Value = serde_yaml::from_str(&cur)
                    .unwrap_or_else(|e| panic!("invalid YAML document: {e}\n{cur}"));
                if !v.is_null() {
                    out.push(v);
                }
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    out
}

fn yaml_file(path: &Path) -> Vec<Value> {
    docs(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `kubectl apply --dry-run=server` of a rendered stream: the apiserver validates every object
/// against its real schema and admission (Pod Security included) and stores nothing.
fn server_dry_run(what: &str, yaml: &str) {
    prepared();
    let out = kubectl_dry_run(yaml);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{what}: server dry run failed:\n{stdout}{stderr}"
    );
    assert!(
        !stderr.contains("PodSecurity") && !stderr.to_lowercase().contains("warning"),
        "{what}: the apiserver warned:\n{stderr}"
    );
    let applied = stdout
        .lines()
        .filter(|l| l.contains("(server dry run)"))
        .count();
    assert_eq!(
        applied,
        docs(yaml).len(),
        "{what}: not every object was dry-run:\n{stdout}"
    );
}

/// `kubectl apply --dry-run=server --server-side` of `yaml`.
fn kubectl_dry_run(yaml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dry-run.yaml");
    std::fs::write(&file, yaml).unwrap();
    kubectl(&[
        "apply",
        "--dry-run=server",
        "--server-side",
        "--field-manager=fhirlock-deploy-test",
        "-f",
        file.to_str().unwrap(),
    ])
}
