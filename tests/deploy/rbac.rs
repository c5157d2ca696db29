//! The RBAC in `deploy/rbac/`: exactly what fhirlock needs, and the same in the chart and the
//! kustomize base.

use super::*;

fn rules(objs: &[Value], kind: &str, name: &str) -> Value {
    find(objs, kind, name)["rules"].clone()
}

#[test]
fn rbac_is_least_privilege_and_the_same_everywhere() {
    let plain: Vec<Value> = ["cluster-role", "leader-election-role"]
        .iter()
        .flat_map(|f| yaml_file(&root().join(format!("deploy/rbac/{f}.yaml"))))
        .collect();
    let want_cluster = json!([
        {"apiGroups": ["fhirlock.io"], "resources": ["securedfhirendpoints"], "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["fhirlock.io"], "resources": ["securedfhirendpoints/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["fhirlock.io"], "resources": ["securedfhirendpoints/finalizers"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]);
    let want_leases = json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]},
    ]);
    assert_eq!(rules(&plain, "ClusterRole", "fhirlock"), want_cluster);
    assert_eq!(
        rules(&plain, "Role", "fhirlock-leader-election"),
        want_leases
    );

    // The chart and the kustomize base carry the same rules.
    let chart = docs(&helm_template(&[]));
    assert_eq!(rules(&chart, "ClusterRole", "fhirlock"), want_cluster);
    assert_eq!(
        rules(&chart, "Role", "fhirlock-leader-election"),
        want_leases
    );
    for f in [
        "service-account",
        "cluster-role",
        "cluster-role-binding",
        "leader-election-role",
        "leader-election-role-binding",
    ] {
        let a = std::fs::read(root().join(format!("deploy/rbac/{f}.yaml"))).unwrap();
        let b = std::fs::read(root().join(format!("deploy/kustomize/base/rbac/{f}.yaml"))).unwrap();
        assert!(
            a == b,
            "deploy/kustomize/base/rbac/{f}.yaml differs from deploy/rbac/{f}.yaml; copy it over"
        );
    }

    // Applied for real, the apiserver's authorizer grants exactly that to the ServiceAccount.
    prepared();
    let dir = root().join("deploy/rbac");
    kubectl_ok(&["apply", "-n", OPERATOR_NS, "-f", dir.to_str().unwrap()]);
    let tenant = namespace("deploy-rbac-tenant");
    let can = |args: &[&str]| -> bool {
        let mut a = vec!["auth", "can-i", "--as", SA];
        a.extend_from_slice(args);
        let out = kubectl(&a);
        let answer = text(&out.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl auth can-i {args:?}: {answer} {}",
            text(&out.stderr)
        );
        answer == "yes"
    };
    let sfe = "securedfhirendpoints.fhirlock.io";
    let allowed: Vec<Vec<&str>> = vec![
        vec!["get", sfe, "-n", &tenant],
        vec!["list", sfe, "-A"],
        vec!["watch", sfe, "-A"],
        vec!["patch", sfe, "-n", &tenant],
        vec!["update", sfe, "-n", &tenant],
        vec!["get", sfe, "--subresource=status", "-n", &tenant],
        vec!["patch", sfe, "--subresource=status", "-n", &tenant],
        vec!["update", sfe, "--subresource=finalizers", "-n", &tenant],
        vec!["get", "secrets", "-n", &tenant],
        vec!["list", "secrets", "-A"],
        vec!["watch", "secrets", "-A"],
        vec![
            "create",
            "serviceaccounts",
            "--subresource=token",
            "-n",
            &tenant,
        ],
        vec!["create", "events.events.k8s.io", "-n", &tenant],
        vec!["patch", "events.events.k8s.io", "-n", &tenant],
        vec!["get", "leases.coordination.k8s.io", "-n", OPERATOR_NS],
        vec!["create", "leases.coordination.k8s.io", "-n", OPERATOR_NS],
        vec!["update", "leases.coordination.k8s.io", "-n", OPERATOR_NS],
        vec!["patch", "leases.coordination.k8s.io", "-n", OPERATOR_NS],
    ];
    let denied: Vec<Vec<&str>> = vec![
        vec!["create", sfe, "-n", &tenant],
        vec!["delete", sfe, "-n", &tenant],
        vec!["patch", sfe, "--subresource=finalizers", "-n", &tenant],
        vec!["create", "secrets", "-n", &tenant],
        vec!["update", "secrets", "-n", &tenant],
        vec!["delete", "secrets", "-n", &tenant],
        vec!["get", "serviceaccounts", "-n", &tenant],
        vec!["create", "serviceaccounts", "-n", &tenant],
        vec!["get", "configmaps", "-n", &tenant],
        vec!["create", "pods", "-n", &tenant],
        vec!["create", "events", "-n", &tenant],
        vec!["delete", "events.events.k8s.io", "-n", &tenant],
        vec!["get", "leases.coordination.k8s.io", "-n", &tenant],
        vec!["create", "leases.coordination.k8s.io", "-n", "kube-system"],
        vec!["delete", "leases.coordination.k8s.io", "-n", OPERATOR_NS],
        vec!["list", "leases.coordination.k8s.io", "-n", OPERATOR_NS],
        vec!["create", "customresourcedefinitions.apiextensions.k8s.io"],
        vec!["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        vec!["list", "namespaces"],
    ];
    let mut wrong = Vec::new();
    for a in &allowed {
        if !can(a) {
            wrong.push(format!("denied but needed: {a:?}"));
        }
    }
    for a in &denied {
        if can(a) {
            wrong.push(format!("granted but not needed: {a:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "RBAC is not least privilege:\n{}",
        wrong.join("\n")
    );
}
