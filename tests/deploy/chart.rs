//! The Helm chart: it lints, renders objects the apiserver accepts, and documents and types
//! every value.

use super::*;

#[test]
fn helm_chart_lints_and_renders_objects_the_apiserver_accepts() {
    let chart = chart();
    let full = chart.join("ci/full-values.yaml");
    run(Command::new(helm()).args(["lint", "--strict"]).arg(&chart));
    run(Command::new(helm())
        .args(["lint", "--strict"])
        .arg(&chart)
        .arg("-f")
        .arg(&full));

    // The chart's CRD is the generated one.
    let generated =
        std::fs::read_to_string(root().join("crds/securedfhirendpoints.fhirlock.io.yaml")).unwrap();
    for copy in [
        "deploy/helm/fhirlock/crds/securedfhirendpoints.fhirlock.io.yaml",
        "deploy/kustomize/base/crds/securedfhirendpoints.fhirlock.io.yaml",
    ] {
        let c = std::fs::read_to_string(root().join(copy)).unwrap();
        assert!(c == generated, "{copy} is stale: run `make deploy-crds`");
    }

    let default = helm_template(&[]);
    server_dry_run("helm template (default values)", &default);
    let objs = docs(&default);
    let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for k in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Service",
    ] {
        assert!(kinds.contains(&k), "default render lacks a {k}: {kinds:?}");
    }
    assert!(!kinds.contains(&"ServiceMonitor") && !kinds.contains(&"PrometheusRule"));

    // The Deployment: two replicas with leader election, hardened, probed, with resources.
    let d = find(&objs, "Deployment", "fhirlock");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    for a in [
        "--config=/etc/fhirlock/config/config.yaml",
        "--metrics-addr=0.0.0.0:8080",
        "--leader-election",
        "--resync-seconds=300",
        "--concurrency=4",
        "--log-format=json",
    ] {
        assert!(args.contains(&a), "missing {a} in {args:?}");
    }
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        find(&objs, "PodDisruptionBudget", "fhirlock")["spec"]["minAvailable"],
        1
    );
    let cm = find(&objs, "ConfigMap", "fhirlock-config");
    assert_eq!(cm["data"]["config.yaml"], "tenants: []\n");

    // Every optional feature on. The tenant namespaces must exist: the chart puts a Role in each.
    let full_render = helm_template(&["-f", full.to_str().unwrap()]);
    let tenants = ["fhir", "fhir-audit", "platform"];
    for ns in tenants {
        namespace(ns);
    }
    server_dry_run("helm template (full values)", &full_render);
    let objs = docs(&full_render);
    for kind in ["Role", "RoleBinding"] {
        let namespaces: Vec<&str> = objs
            .iter()
            .filter(|o| o["kind"] == kind && o["metadata"]["name"] == "fhirlock-tenant")
            .map(|o| o["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, tenants, "a {kind} fhirlock-tenant per tenant");
    }
    let sa = find(&objs, "ServiceAccount", "fhirlock");
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "11111111-2222-4333-8444-555555555555"
    );
    assert_eq!(
        sa["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let d = find(&objs, "Deployment", "fhirlock");
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let rule = find(&objs, "PrometheusRule", "fhirlock");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        alerts,
        [
            "FhirlockEndpointNotReady",
            "FhirlockFindingsPresent",
            "FhirlockArmThrottled",
            "FhirlockReconcileErrors",
            "FhirlockCertificateExpiresSoon",
            "FhirlockFinalizerReleasedWithoutCleanup"
        ]
    );
    let exprs = rule["spec"]["groups"][0]["rules"].to_string();
    for metric in [
        "fhirlock_endpoint_ready",
        "fhirlock_findings",
        "fhirlock_arm_requests_total{status=\\\"429\\\"}",
        "fhirlock_reconciles_total{result=\\\"error\\\"}",
        "fhirlock_finalizers_released_without_cleanup_total",
    ] {
        assert!(exprs.contains(metric), "no alert reads {metric}");
    }
    find(&objs, "ServiceMonitor", "fhirlock");
    // The tenancy configuration is what `fhirlock run --config` reads.
    let cfg: Value = serde_yaml::from_str(
        find(&objs, "ConfigMap", "fhirlock-config")["data"]["config.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["tenants"].as_array().unwrap().len(), 3);
    assert_eq!(
        cfg["tenants"][0]["identity"]["workloadIdentity"]["serviceAccount"],
        "fhir-azure"
    );
    assert_eq!(cfg["tenants"][2]["identity"]["operator"], json!({}));
    assert_eq!(cfg["cloud"]["caBundle"], "/etc/fhirlock/ca/ca.pem");
    // ... and loads there, a tenant's own wording of the next steps included.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let loaded = fhirlock::config::OperatorConfig::load(&file).unwrap();
    assert_eq!(
        loaded.tenant("platform").unwrap().private_network().name,
        "PSN"
    );
    assert_eq!(
        loaded.tenant("fhir").unwrap().private_network(),
        Default::default()
    );

    // values.schema.json rejects what the chart does not know, and the templates refuse unsafe
    // combinations.
    for (set, why) in [
        ("bogus=1", "additional properties"),
        ("operator.logFormat=xml", "logFormat"),
        ("leaderElection.enabled=false", "leaderElection"),
    ] {
        let out = Command::new(helm())
            .args(["template", "fhirlock"])
            .arg(&chart)
            .args(["--set", set])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            text(&out.stderr).contains(why),
            "--set {set}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn every_chart_value_is_documented_and_typed() {
    let values = std::fs::read_to_string(chart().join("values.yaml")).unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    // Every key of values.yaml has a comment right above it, except section headers (a key
    // whose children are themselves documented). Keys inside a free-form value (resources,
    // security contexts: no inner schema) are part of that documented value.
    let lines: Vec<&str> = values.lines().collect();
    let mut undocumented = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('-') || !t.contains(':') {
            continue;
        }
        let indent = l.len() - t.len();
        let key = t.split(':').next().unwrap().to_owned();
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let path: Vec<String> = stack
            .iter()
            .map(|(_, k)| k.clone())
            .chain([key.clone()])
            .collect();
        let header = t.trim_end().ends_with(':');
        stack.push((indent, key));
        // Find the schema node; stop inside free-form values.
        let mut node = &schema;
        let mut free_form = false;
        for (depth, k) in path.iter().enumerate() {
            match node.get("properties") {
                Some(props) => {
                    node = props.get(k).unwrap_or_else(|| {
                        panic!("values.schema.json does not know {}", path.join("."))
                    })
                }
                None => {
                    free_form = depth > 0;
                    break;
                }
            }
        }
        if free_form {
            continue;
        }
        let documented = i > 0 && lines[i - 1].trim_start().starts_with('#');
        let is_section = header && node.get("properties").is_some();
        if !documented && !is_section {
            undocumented.push(path.join("."));
        }
    }
    assert!(
        undocumented.is_empty(),
        "undocumented values: {undocumented:?}"
    );
    // And the schema forbids unknown keys at every level it describes.
    fn closed(s: &Value, at: &str, open: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            if s.get("additionalProperties") != Some(&json!(false)) {
                open.push(at.to_owned());
            }
            for (k, v) in props {
                closed(v, &format!("{at}.{k}"), open);
            }
        }
        if let Some(items) = s.get("items") {
            closed(items, &format!("{at}[]"), open);
        }
    }
    let mut open = Vec::new();
    closed(&schema, "", &mut open);
    assert!(
        open.is_empty(),
        "schema objects that accept unknown keys: {open:?}"
    );
}
