//! Flux (kstatus) and Argo CD (health.lua) on real objects, and the examples that ship the
//! health rules.

use super::*;
use crate::states::Status;

/// What the apiserver returns, without what changes from run to run.
fn normalised(mut o: Value) -> Value {
    let md = o["metadata"].as_object_mut().unwrap();
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        md.remove(k);
    }
    if let Some(a) = md.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        if a.is_empty() {
            md.remove("annotations");
        }
    }
    o
}

fn tool_results(args: &[&str], files: &[PathBuf]) -> BTreeMap<String, (String, String)> {
    let out = run(Command::new(gitops_check()).args(args).args(files));
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let file = Path::new(v["file"].as_str().unwrap())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                file,
                (
                    v["status"].as_str().unwrap().to_owned(),
                    v["message"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn flux_kstatus_and_argocd_health_read_real_endpoints() {
    let ns = namespace("fhir");
    let states = states();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for s in &states {
        let name = format!("health-{}", s.name);
        let _ = kubectl(&[
            "delete",
            "sfe",
            "-n",
            &ns,
            &name,
            "--ignore-not-found",
            "--wait=true",
        ]);
        let mut obj = yaml_file(&root().join("examples").join(s.example)).remove(0);
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["namespace"] = json!(ns);
        let f = dir.path().join(format!("{name}.in.yaml"));
        std::fs::write(&f, serde_yaml::to_string(&obj).unwrap()).unwrap();
        kubectl_ok(&["create", "-f", f.to_str().unwrap()]);
        // The status as fhirlock writes it: the write-ahead by merge patch, a whole status by
        // server-side apply, both with field manager `fhirlock`.
        match &s.status {
            Status::Nothing => {}
            Status::WriteAhead(ids) => {
                let patch = json!({"status": {"createdResources": ids}}).to_string();
                kubectl_ok(&[
                    "patch",
                    "sfe",
                    "-n",
                    &ns,
                    &name,
                    "--subresource=status",
                    "--type=merge",
                    "--field-manager=fhirlock",
                    "-p",
                    &patch,
                ]);
            }
            Status::Apply(st) => {
                let applied = json!({
                    "apiVersion": "fhirlock.io/v1alpha1",
                    "kind": "SecuredFhirEndpoint",
                    "metadata": {"name": name, "namespace": ns},
                    "status": st,
                });
                let f = dir.path().join(format!("{name}.status.json"));
                std::fs::write(&f, applied.to_string()).unwrap();
                kubectl_ok(&[
                    "apply",
                    "--server-side",
                    "--subresource=status",
                    "--field-manager=fhirlock",
                    "--force-conflicts",
                    "-f",
                    f.to_str().unwrap(),
                ]);
            }
        }
        if s.bump_generation {
            let patch = r#"{"spec":{"gateway":{"sku":{"maxCapacity":4}}}}"#;
            kubectl_ok(&[
                "patch",
                "sfe",
                "-n",
                &ns,
                &name,
                "--type=merge",
                "-p",
                patch,
            ]);
        }
        let got: Value = serde_json::from_str(&kubectl_ok(&[
            "get",
            "sfe",
            "-n",
            &ns,
            &name,
            "-o",
            "json",
            "--show-managed-fields",
        ]))
        .unwrap();
        let expect_gen = if s.bump_generation { 2 } else { 1 };
        assert_eq!(got["metadata"]["generation"], expect_gen, "{}", s.name);
        match &s.status {
            // The CRD's default status, applied by the apiserver to an object that has none.
            Status::Nothing => assert_eq!(
                got["status"],
                json!({"observedGeneration": -1}),
                "{}: a new endpoint's status",
                s.name
            ),
            // The write-ahead keeps the default: fhirlock has not concluded a pass yet.
            Status::WriteAhead(_) => {
                assert_eq!(got["status"]["observedGeneration"], -1, "{}", s.name)
            }
            // fhirlock's own status write replaces the default with the generation it saw.
            Status::Apply(_) => {
                assert_eq!(got["status"]["observedGeneration"], 1, "{}", s.name);
                let owns = got["metadata"]["managedFields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| {
                        m["manager"] == "fhirlock"
                            && m["operation"] == "Apply"
                            && m["subresource"] == "status"
                            && !m["fieldsV1"]["f:status"]["f:observedGeneration"].is_null()
                    });
                assert!(
                    owns,
                    "{}: fhirlock does not own status.observedGeneration: {}",
                    s.name, got["metadata"]["managedFields"]
                );
            }
        }
        let file = dir.path().join(format!("{}.json", s.name));
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap()).unwrap();
        files.push(file);

        // The committed Argo CD fixtures are these objects, as the apiserver returned them.
        let fixture = root().join(format!("deploy/argocd/testdata/{}.yaml", s.name));
        let want = normalised(got);
        if std::env::var_os("FHIRLOCK_UPDATE_FIXTURES").is_some() {
            let body = format!(
                "# A SecuredFhirEndpoint as the apiserver returned it ({}), written by tests/deploy.rs.\n{}",
                s.name,
                serde_yaml::to_string(&want).unwrap()
            );
            std::fs::write(&fixture, body).unwrap();
        }
        let committed = yaml_file(&fixture)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{} is empty", fixture.display()));
        assert_eq!(
            committed,
            want,
            "{} is not what the apiserver returns; rerun with FHIRLOCK_UPDATE_FIXTURES=1",
            fixture.display()
        );
    }

    // Flux: kstatus (sigs.k8s.io/cli-utils, and Flux's fork, which must agree).
    let k = tool_results(&["kstatus"], &files);
    let script = root().join("deploy/argocd/health.lua");
    let a = tool_results(&["argo-health", script.to_str().unwrap()], &files);
    let mut wrong = Vec::new();
    for s in &states {
        let (ks, km) = &k[s.name];
        if ks != s.kstatus {
            wrong.push(format!(
                "{}: kstatus {ks} ({km}), want {}",
                s.name, s.kstatus
            ));
        }
        let (as_, am) = &a[s.name];
        if as_ != s.argo {
            wrong.push(format!("{}: Argo CD {as_} ({am}), want {}", s.name, s.argo));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The states a GitOps controller must tell apart; a new endpoint is not yet Current.
    assert_eq!(
        ["new", "ready", "reconciling", "stalled", "stale-generation"].map(|s| k[s].0.as_str()),
        [
            "InProgress",
            "Current",
            "InProgress",
            "Failed",
            "InProgress"
        ]
    );

    // Argo CD's fixture format (health_test.yaml), messages included, as `go test` in
    // hack/gitops-check also runs it.
    let out = run(Command::new(gitops_check())
        .arg("argo-health-test")
        .arg(root().join("deploy/argocd")));
    assert!(
        out.contains(&format!("{} fixtures match", states.len())),
        "{out}"
    );
}

#[test]
fn argocd_and_flux_examples_use_the_shipped_health_rules() {
    // The argocd-cm customization carries deploy/argocd/health.lua verbatim.
    let script = std::fs::read_to_string(root().join("deploy/argocd/health.lua")).unwrap();
    let cm = yaml_file(&root().join("examples/argocd/argocd-cm.yaml")).remove(0);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let key = "resource.customizations.health.fhirlock.io_SecuredFhirEndpoint";
    assert_eq!(
        cm["data"][key].as_str().unwrap_or_default(),
        script,
        "examples/argocd/argocd-cm.yaml must carry deploy/argocd/health.lua verbatim under {key}"
    );
    let apps = yaml_file(&root().join("examples/argocd/application.yaml"));
    assert!(
        apps.iter()
            .all(|a| a["apiVersion"] == "argoproj.io/v1alpha1" && a["kind"] == "Application")
    );

    // Flux: the endpoints' Kustomization waits for each endpoint in examples/ by name, after
    // the operator's.
    let flux = yaml_file(&root().join("examples/flux/kustomizations.yaml"));
    let endpoints = flux
        .iter()
        .find(|k| k["metadata"]["name"] == "fhir-endpoints")
        .expect("a Kustomization named fhir-endpoints");
    assert_eq!(endpoints["apiVersion"], "kustomize.toolkit.fluxcd.io/v1");
    assert_eq!(endpoints["spec"]["dependsOn"][0]["name"], "fhirlock");
    let checks = endpoints["spec"]["healthChecks"]
        .as_array()
        .expect("healthChecks");
    assert!(!checks.is_empty());
    for c in checks {
        assert_eq!(c["apiVersion"], "fhirlock.io/v1alpha1");
        assert_eq!(c["kind"], "SecuredFhirEndpoint");
    }
    let operator = flux
        .iter()
        .find(|k| k["kind"] == "Kustomization" && k["metadata"]["name"] == "fhirlock")
        .unwrap();
    assert_eq!(operator["spec"]["wait"], true);
}
