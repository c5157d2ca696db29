//! The kustomize base: the chart's defaults, accepted by the apiserver, and the Flux overlay of
//! it.

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

    // The Flux example's overlay of the base renders and is accepted too.
    let overlay = root().join("examples/flux/overlay");
    let built = run(Command::new(testenv::kubectl().unwrap())
        .arg("kustomize")
        .arg(&overlay));
    server_dry_run("kubectl kustomize examples/flux/overlay", &built);
    let objs = docs(&built);
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
