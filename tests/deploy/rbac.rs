//! The RBAC in `deploy/rbac/`: exactly what fhirlock needs, where it needs it, the same in the
//! chart and the kustomize base. Cluster-wide it gets the endpoints and Events; Secrets and
//! ServiceAccount tokens only in the tenant namespaces (`deploy/rbac/tenant/`, one Role per
//! `tenants[].namespace`), never in kube-system, the operator's own namespace or any other.

use super::*;

fn rules(objs: &[Value], kind: &str, name: &str) -> Value {
    find(objs, kind, name)["rules"].clone()
}

fn want_cluster() -> Value {
    json!([
        {"apiGroups": ["fhirlock.io"], "resources": ["securedfhirendpoints"], "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["fhirlock.io"], "resources": ["securedfhirendpoints/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["fhirlock.io"], "resources": ["securedfhirendpoints/finalizers"], "verbs": ["update"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

fn want_tenant() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    ])
}

fn want_metrics_auth() -> Value {
    json!([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ])
}

fn want_metrics_reader() -> Value {
    json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
}

fn want_leases() -> Value {
    json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]},
    ])
}

/// The tenant namespaces of the authorizer test, and a namespace that is no tenant's.
const TENANTS: [&str; 2] = ["deploy-rbac-tenant-a", "deploy-rbac-tenant-b"];
const OTHER: &str = "deploy-rbac-other";

/// A values file whose tenancy is `namespaces`.
fn tenancy_values(dir: &Path, namespaces: &[&str]) -> PathBuf {
    let tenants: Vec<Value> = namespaces
        .iter()
        .map(|ns| json!({"namespace": ns, "scopes": [], "identity": {"operator": {}}}))
        .collect();
    let path = dir.join("tenancy-values.yaml");
    std::fs::write(
        &path,
        serde_yaml::to_string(&json!({ "tenants": tenants })).unwrap(),
    )
    .unwrap();
    path
}

#[test]
fn rbac_is_least_privilege_and_the_same_everywhere() {
    let plain: Vec<Value> = [
        "cluster-role",
        "metrics-auth-role",
        "metrics-auth-role-binding",
        "metrics-reader-role",
        "leader-election-role",
        "tenant/role",
        "tenant/role-binding",
    ]
    .iter()
    .flat_map(|f| yaml_file(&root().join(format!("deploy/rbac/{f}.yaml"))))
    .collect();
    assert_eq!(rules(&plain, "ClusterRole", "fhirlock"), want_cluster());
    assert_eq!(
        rules(&plain, "Role", "fhirlock-leader-election"),
        want_leases()
    );
    assert_eq!(rules(&plain, "Role", "fhirlock-tenant"), want_tenant());
    assert_eq!(
        rules(&plain, "ClusterRole", "fhirlock-metrics-auth"),
        want_metrics_auth()
    );
    assert_eq!(
        rules(&plain, "ClusterRole", "fhirlock-metrics-reader"),
        want_metrics_reader()
    );
    assert_eq!(
        find(&plain, "ClusterRoleBinding", "fhirlock-metrics-auth")["subjects"],
        json!([{"kind": "ServiceAccount", "name": "fhirlock", "namespace": OPERATOR_NS}])
    );
    let binding = find(&plain, "RoleBinding", "fhirlock-tenant");
    assert_eq!(binding["roleRef"]["name"], "fhirlock-tenant");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "fhirlock", "namespace": OPERATOR_NS}])
    );

    // The chart carries the same rules. Without tenants it grants no Secret anywhere; with them,
    // one Role and RoleBinding in each tenant namespace (once, however often it is listed).
    let chart = docs(&helm_template(&[]));
    assert_eq!(rules(&chart, "ClusterRole", "fhirlock"), want_cluster());
    // Secure metrics, the default: the two review creates for the operator, and the reader role.
    assert_eq!(
        rules(&chart, "ClusterRole", "fhirlock-metrics-auth"),
        want_metrics_auth()
    );
    assert_eq!(
        rules(&chart, "ClusterRole", "fhirlock-metrics-reader"),
        want_metrics_reader()
    );
    let plain_metrics = docs(&helm_template(&["--set", "metrics.secure=false"]));
    assert!(
        !plain_metrics.iter().any(|o| o["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .contains("metrics-")),
        "metrics.secure=false needs no review rights"
    );
    assert_eq!(
        rules(&chart, "Role", "fhirlock-leader-election"),
        want_leases()
    );
    let roles = |objs: &[Value], kind: &str| -> Vec<String> {
        objs.iter()
            .filter(|o| o["kind"] == kind && o["metadata"]["name"] == "fhirlock-tenant")
            .map(|o| o["metadata"]["namespace"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(roles(&chart, "Role").is_empty() && roles(&chart, "RoleBinding").is_empty());
    let dir = tempfile::tempdir().unwrap();
    let values = tenancy_values(dir.path(), &["fhir", "fhir-audit", "fhir"]);
    let chart = docs(&helm_template(&["-f", values.to_str().unwrap()]));
    for kind in ["Role", "RoleBinding"] {
        assert_eq!(roles(&chart, kind), ["fhir", "fhir-audit"], "{kind}s");
    }
    for o in chart
        .iter()
        .filter(|o| o["metadata"]["name"] == "fhirlock-tenant")
    {
        let plain = find(&plain, o["kind"].as_str().unwrap(), "fhirlock-tenant");
        for field in ["rules", "roleRef", "subjects"] {
            assert_eq!(o[field], plain[field], "{} {field}", o["kind"]);
        }
    }

    // The kustomize base and tenant unit are byte-for-byte copies of deploy/rbac/.
    for (from, to) in [
        ("service-account", "base/rbac/service-account"),
        ("cluster-role", "base/rbac/cluster-role"),
        ("cluster-role-binding", "base/rbac/cluster-role-binding"),
        ("metrics-auth-role", "base/rbac/metrics-auth-role"),
        (
            "metrics-auth-role-binding",
            "base/rbac/metrics-auth-role-binding",
        ),
        ("metrics-reader-role", "base/rbac/metrics-reader-role"),
        ("leader-election-role", "base/rbac/leader-election-role"),
        (
            "leader-election-role-binding",
            "base/rbac/leader-election-role-binding",
        ),
        ("tenant/role", "tenant/role"),
        ("tenant/role-binding", "tenant/role-binding"),
    ] {
        let a = std::fs::read(root().join(format!("deploy/rbac/{from}.yaml"))).unwrap();
        let b = std::fs::read(root().join(format!("deploy/kustomize/{to}.yaml"))).unwrap();
        assert!(
            a == b,
            "deploy/kustomize/{to}.yaml differs from deploy/rbac/{from}.yaml; copy it over"
        );
    }
}

/// Where a question is asked of the authorizer.
#[derive(Clone, Copy, Debug)]
enum At {
    /// `TENANTS[i]`.
    Tenant(usize),
    /// A namespace that is no tenant's.
    Other,
    KubeSystem,
    /// The operator's own namespace, which is no tenant's either.
    Operator,
    /// Every namespace at once (`-A`): a cluster-wide get, list or watch.
    AllNamespaces,
    /// A cluster-scoped resource.
    Cluster,
}

/// (verb, resource[/subresource], where, allowed): what fhirlock must be able to do, and what it
/// must not. The Secret and token rows are the point: allowed in both tenant namespaces, denied in
/// every other namespace, kube-system included, and across all namespaces at once.
fn table() -> Vec<(&'static str, &'static str, At, bool)> {
    use At::*;
    let sfe = "securedfhirendpoints.fhirlock.io";
    let status = "securedfhirendpoints.fhirlock.io/status";
    let finalizers = "securedfhirendpoints.fhirlock.io/finalizers";
    let token = "serviceaccounts/token";
    let events = "events.events.k8s.io";
    let leases = "leases.coordination.k8s.io";
    let mut t = vec![
        // Secrets: the tenant namespaces, nowhere else.
        ("get", "secrets", Tenant(0), true),
        ("list", "secrets", Tenant(0), true),
        ("watch", "secrets", Tenant(0), true),
        ("get", "secrets", Tenant(1), true),
        ("list", "secrets", Tenant(1), true),
        ("watch", "secrets", Tenant(1), true),
        ("create", token, Tenant(0), true),
        ("create", token, Tenant(1), true),
    ];
    for at in [Other, KubeSystem, Operator, AllNamespaces] {
        for verb in ["get", "list", "watch"] {
            t.push((verb, "secrets", at, false));
        }
        t.push(("create", token, at, false));
    }
    t.extend([
        // Nor any write to a Secret or a ServiceAccount, even in a tenant namespace.
        ("create", "secrets", Tenant(0), false),
        ("update", "secrets", Tenant(0), false),
        ("patch", "secrets", Tenant(0), false),
        ("delete", "secrets", Tenant(0), false),
        ("deletecollection", "secrets", Tenant(0), false),
        ("get", "serviceaccounts", Tenant(0), false),
        ("create", "serviceaccounts", Tenant(0), false),
        ("impersonate", "serviceaccounts", Tenant(0), false),
        (
            "create",
            "roles.rbac.authorization.k8s.io",
            Tenant(0),
            false,
        ),
        (
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            Tenant(0),
            false,
        ),
        ("get", "configmaps", Tenant(0), false),
        ("create", "pods", Tenant(0), false),
        // The endpoints and their Events: every namespace (one outside the tenancy gets its
        // Stalled/OutOfScope status too).
        ("get", sfe, Tenant(0), true),
        ("list", sfe, AllNamespaces, true),
        ("watch", sfe, AllNamespaces, true),
        ("patch", sfe, Tenant(0), true),
        ("update", sfe, Other, true),
        ("get", status, Tenant(0), true),
        ("patch", status, Other, true),
        ("update", status, Tenant(1), true),
        ("update", finalizers, Tenant(0), true),
        ("create", events, Tenant(0), true),
        ("patch", events, Other, true),
        ("create", sfe, Tenant(0), false),
        ("delete", sfe, Tenant(0), false),
        ("patch", finalizers, Tenant(0), false),
        ("create", "events", Tenant(0), false),
        ("delete", events, Tenant(0), false),
        // Leases: the operator's namespace only.
        ("get", leases, Operator, true),
        ("create", leases, Operator, true),
        ("update", leases, Operator, true),
        ("patch", leases, Operator, true),
        ("delete", leases, Operator, false),
        ("list", leases, Operator, false),
        ("get", leases, Tenant(0), false),
        ("create", leases, KubeSystem, false),
        // Nothing cluster-scoped.
        ("list", "namespaces", Cluster, false),
        ("get", "namespaces", Cluster, false),
        (
            "create",
            "customresourcedefinitions.apiextensions.k8s.io",
            Cluster,
            false,
        ),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            Cluster,
            false,
        ),
        ("impersonate", "serviceaccounts", AllNamespaces, false),
        // Secure metrics: asking the apiserver about a /metrics caller, nothing more.
        (
            "create",
            "tokenreviews.authentication.k8s.io",
            Cluster,
            true,
        ),
        (
            "create",
            "subjectaccessreviews.authorization.k8s.io",
            Cluster,
            true,
        ),
        ("get", "tokenreviews.authentication.k8s.io", Cluster, false),
        (
            "create",
            "localsubjectaccessreviews.authorization.k8s.io",
            Tenant(0),
            false,
        ),
    ]);
    t
}

/// The rows of [`table`] the authorizer answers otherwise for `sa`, whose namespace is
/// `operator_ns`.
fn authorizer_disagrees(sa: &str, operator_ns: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for (verb, row, at, allowed) in table() {
        let (resource, sub) = match row.split_once('/') {
            Some((r, s)) => (r, Some(format!("--subresource={s}"))),
            None => (row, None),
        };
        let mut args = vec!["auth", "can-i", "--as", sa, verb, resource];
        args.extend(sub.as_deref());
        match at {
            At::Tenant(i) => args.extend(["-n", TENANTS[i]]),
            At::Other => args.extend(["-n", OTHER]),
            At::KubeSystem => args.extend(["-n", "kube-system"]),
            At::Operator => args.extend(["-n", operator_ns]),
            At::AllNamespaces => args.push("-A"),
            At::Cluster => {}
        }
        let out = kubectl(&args);
        let answer = text(&out.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl {args:?}: {answer} {}",
            text(&out.stderr)
        );
        if (answer == "yes") != allowed {
            let what = if allowed {
                "denied but needed"
            } else {
                "GRANTED but must be denied"
            };
            wrong.push(format!("{what}: {verb} {row} at {at:?}"));
        }
    }
    wrong
}

fn namespaces() {
    prepared();
    for ns in TENANTS.iter().chain([&OTHER]) {
        namespace(ns);
    }
}

#[test]
fn the_authorizer_lets_the_raw_rbac_read_secrets_and_mint_tokens_in_tenant_namespaces_only() {
    namespaces();
    let dir = root().join("deploy/rbac");
    kubectl_ok(&["apply", "-n", OPERATOR_NS, "-f", dir.to_str().unwrap()]);
    let tenant = dir.join("tenant");
    for ns in TENANTS {
        kubectl_ok(&["apply", "-n", ns, "-f", tenant.to_str().unwrap()]);
    }
    let wrong = authorizer_disagrees(SA, OPERATOR_NS);
    assert!(
        wrong.is_empty(),
        "deploy/rbac/ is not least privilege:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_authorizer_lets_the_charts_rbac_read_secrets_and_mint_tokens_in_tenant_namespaces_only() {
    namespaces();
    // Another release and namespace than the raw manifests' (fhirlock, fhirlock-system), so
    // that what is asked is what the chart alone grants.
    let ns = namespace("deploy-rbac-chart");
    let dir = tempfile::tempdir().unwrap();
    let values = tenancy_values(dir.path(), &TENANTS);
    let mut cmd = Command::new(helm());
    cmd.args(["template", "fhirlock-chart"]).arg(chart()).args([
        "--namespace",
        &ns,
        "-f",
        values.to_str().unwrap(),
    ]);
    let rbac: Vec<String> = docs(&run(&mut cmd))
        .into_iter()
        .filter(|o| {
            let kinds = [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ];
            kinds.iter().any(|k| o["kind"] == *k)
        })
        .map(|o| serde_yaml::to_string(&o).unwrap())
        .collect();
    let file = dir.path().join("rbac.yaml");
    std::fs::write(&file, rbac.join("---\n")).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let wrong = authorizer_disagrees(&format!("system:serviceaccount:{ns}:fhirlock-chart"), &ns);
    assert!(
        wrong.is_empty(),
        "the chart's RBAC is not least privilege:\n{}",
        wrong.join("\n")
    );
}
