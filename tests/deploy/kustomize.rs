//! The kustomize base: the chart's defaults, accepted by the apiserver, and the Flux overlay of
//! it; the tenant unit: the chart's Role and RoleBinding in each tenant namespace.

use super::*;

/// Numbers as floats: kustomize writes `125.0` from the CRD as `125`.
fn numbers_as_floats(v: &mut Value) {
    match v {
        Value::Number(n) => *v = json!(n.as_f64().unwrap()),
        Value::Array(a) => a.iter_mut().for_each(numbers_as_floats),
        Value::Object(m) => m.values_mut().for_each(numbers_as_floats),
        _ => {}
    }
}

/// An object without what differs by tool: Helm's own labels and its config checksum.
fn comparable(mut o: Value) -> (String, Value) {
    numbers_as_floats(&mut o);
    let key = format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap(),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap()
    );
    for labels in [o["metadata"].get_mut("labels")].into_iter().flatten() {
        if let Some(m) = labels.as_object_mut() {
            m.retain(|k, _| k == "app.kubernetes.io/name" || k == "app.kubernetes.io/component");
        }
    }
    if let Some(t) = o.pointer_mut("/spec/template/metadata") {
        t.as_object_mut().unwrap().remove("annotations");
        if let Some(m) = t["labels"].as_object_mut() {
            m.remove("helm.sh/chart");
            m.remove("app.kubernetes.io/managed-by");
        }
    }
    (key, o)
}

/// The namespaces of the `fhirlock-tenant` objects of `kind`, sorted.
fn tenant_rbac<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a str> {
    let mut namespaces: Vec<&str> = objs
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == "fhirlock-tenant")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort();
    namespaces
}

/// `deploy/kustomize/tenant` included as its documentation says, once per tenant namespace, gives
/// the Role and RoleBinding the chart renders for the same tenancy, and nothing else.
#[test]
fn kustomize_tenant_unit_is_the_charts_tenant_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = ["fhir", "fhir-audit"];
    let unit = root().join("deploy/kustomize/tenant");
    let mut resources = Vec::new();
    for ns in tenants {
        let d = dir.path().join("tenants").join(ns);
        std::fs::create_dir_all(&d).unwrap();
        // kustomize takes only relative paths to other kustomizations.
        let up = "../".repeat(d.components().count() - 1);
        let rel = format!("{up}{}", unit.strip_prefix("/").unwrap().display());
        let k = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nresources: [{rel}]\n"
        );
        std::fs::write(d.join("kustomization.yaml"), k).unwrap();
        resources.push(format!("tenants/{ns}"));
    }
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\n",
            resources.join(", ")
        ),
    )
    .unwrap();
    let built = run(Command::new(testenv::kubectl().unwrap())
        .arg("kustomize")
        .arg(dir.path()));
    let from_kustomize: BTreeMap<String, Value> =
        docs(&built).into_iter().map(comparable).collect();
    let tenancy: Vec<Value> = tenants
        .iter()
        .map(|ns| json!({"namespace": ns, "scopes": [], "identity": {"operator": {}}}))
        .collect();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({ "tenants": tenancy })).unwrap(),
    )
    .unwrap();
    let from_helm: BTreeMap<String, Value> =
        docs(&helm_template(&["-f", values.to_str().unwrap()]))
            .into_iter()
            .filter(|o| o["metadata"]["name"] == "fhirlock-tenant")
            .map(comparable)
            .collect();
    assert_eq!(
        from_kustomize.keys().collect::<Vec<_>>(),
        [
            "Role/fhir-audit/fhirlock-tenant",
            "Role/fhir/fhirlock-tenant",
            "RoleBinding/fhir-audit/fhirlock-tenant",
            "RoleBinding/fhir/fhirlock-tenant",
        ]
    );
    assert_eq!(from_kustomize, from_helm);
}

#[test]
fn kustomize_base_is_the_charts_defaults_and_the_apiserver_accepts_it() {
    let base = root().join("deploy/kustomize/base");
    let kubectl_bin = testenv::kubectl().unwrap();
    let built = run(Command::new(kubectl_bin).arg("kustomize").arg(&base));
    server_dry_run("kubectl kustomize deploy/kustomize/base", &built);

    let raw = docs(&built);
    let ns = find(&raw, "Namespace", OPERATOR_NS);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let mut from_kustomize: BTreeMap<String, Value> = raw.into_iter().map(comparable).collect();
    let from_helm: BTreeMap<String, Value> = docs(&helm_template(&[]))
        .into_iter()
        .map(comparable)
        .collect();
    // The base also declares the namespace, which `helm install --create-namespace` makes.
    from_kustomize.remove("Namespace//fhirlock-system");
    assert_eq!(
        from_kustomize.keys().collect::<Vec<_>>(),
        from_helm.keys().collect::<Vec<_>>(),
        "the base and the chart render different objects"
    );
    for (k, h) in &from_helm {
        assert!(
            &from_kustomize[k] == h,
            "{k} differs between the kustomize base and the chart:\nkustomize: {}\nhelm: {}",
            serde_yaml::to_string(&from_kustomize[k]).unwrap(),
            serde_yaml::to_string(h).unwrap()
        );
    }

    // The Flux example's overlay of the base renders and is accepted too (its tenant namespace
    // exists: it puts fhirlock's Role there).
    let overlay = root().join("examples/flux/overlay");
    let built = run(Command::new(testenv::kubectl().unwrap())
        .arg("kustomize")
        .arg(&overlay));
    namespace("fhir");
    server_dry_run("kubectl kustomize examples/flux/overlay", &built);
    let objs = docs(&built);
    // fhirlock's Role and RoleBinding in each tenant namespace of its configuration, and in no
    // other namespace.
    let cfg: Value = serde_yaml::from_str(
        find(&objs, "ConfigMap", "fhirlock-config")["data"]["config.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let tenants: Vec<&str> = cfg["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(tenant_rbac(&objs, "Role"), tenants);
    assert_eq!(tenant_rbac(&objs, "RoleBinding"), tenants);
    let d = find(&objs, "Deployment", "fhirlock");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.org/platform/fhirlock:0.1.0"
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
}
