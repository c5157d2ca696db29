//! The Flux and Argo CD examples against the controllers' real CRDs.

use super::*;

/// The CRDs of Flux's GitRepository and Kustomization and Argo CD's Application and AppProject,
/// from the controllers' own Go modules (`hack/gitops-crds`), installed once, with the namespaces
/// the examples use. Returns the CRD objects.
fn gitops_crds() -> &'static [Value] {
    static CRDS: OnceLock<Vec<Value>> = OnceLock::new();
    CRDS.get_or_init(|| {
        plane();
        let dir = built("hack/gitops-crds/build.sh");
        kubectl_ok(&["apply", "--server-side", "-f", dir.to_str().unwrap()]);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let crds: Vec<Value> = files.iter().flat_map(|f| yaml_file(f)).collect();
        for crd in &crds {
            let name = crd["metadata"]["name"].as_str().unwrap();
            wait_established(name);
        }
        // Refresh kubectl's discovery cache, which predates these CRDs.
        for group in [
            "source.toolkit.fluxcd.io",
            "kustomize.toolkit.fluxcd.io",
            "argoproj.io",
        ] {
            kubectl_ok(&["api-resources", &format!("--api-group={group}")]);
        }
        for ns in ["flux-system", "argocd"] {
            namespace(ns);
        }
        crds
    })
}

/// The `spec.required` list of the served version of `apiVersion`/`kind` among `crds`.
fn required_spec_fields(crds: &[Value], api_version: &str, kind: &str) -> Vec<String> {
    let (group, version) = api_version.split_once('/').unwrap();
    let crd = crds
        .iter()
        .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {api_version} {kind}"));
    let v = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version && v["served"] == true)
        .unwrap_or_else(|| panic!("the {kind} CRD serves no {version}"));
    v["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"]
        .as_array()
        .map(|r| r.iter().map(|f| f.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// `kubectl apply --dry-run=server` of one object that must be rejected; returns the error.
fn server_dry_run_rejects(what: &str, object: &Value) -> String {
    let out = kubectl_dry_run(&serde_yaml::to_string(object).unwrap());
    assert!(
        !out.status.success(),
        "{what} was accepted:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[test]
fn flux_and_argocd_examples_pass_the_controllers_real_crds() {
    let crds = gitops_crds();
    let kinds: Vec<&str> = crds
        .iter()
        .map(|c| c["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Application",
            "AppProject",
            "Kustomization",
            "GitRepository"
        ]
    );

    let examples = [
        "examples/flux/kustomizations.yaml",
        "examples/argocd/application.yaml",
        "examples/argocd/argocd-cm.yaml",
    ];
    let mut custom = 0;
    for example in examples {
        let path = root().join(example);
        let yaml = std::fs::read_to_string(&path).unwrap();
        // Every object is validated against its schema and admitted, with no warning.
        server_dry_run(example, &yaml);

        // The dry run would catch a broken example: each object with a required spec field
        // removed, and with a misspelt one, is rejected for that reason (server-side apply
        // refuses fields the schema does not declare).
        for obj in docs(&yaml) {
            let (api_version, kind) = (
                obj["apiVersion"].as_str().unwrap(),
                obj["kind"].as_str().unwrap(),
            );
            if !api_version.contains('/') || api_version.starts_with("apps/") {
                continue; // a built-in kind (argocd-cm), not one of these CRDs
            }
            custom += 1;
            let name = obj["metadata"]["name"].as_str().unwrap();
            let required = required_spec_fields(crds, api_version, kind);
            assert!(
                !required.is_empty(),
                "{kind}: its CRD requires nothing in spec"
            );
            for field in &required {
                assert!(
                    obj["spec"].get(field).is_some(),
                    "{example}: {kind} {name} lacks the required spec.{field}"
                );
                let mut broken = obj.clone();
                broken["spec"].as_object_mut().unwrap().remove(field);
                let err = server_dry_run_rejects(
                    &format!("{example}: {kind} {name} without spec.{field}"),
                    &broken,
                );
                assert!(
                    err.contains(&format!("spec.{field}")) && err.contains("Required value"),
                    "{kind} {name} without spec.{field} was rejected for another reason:\n{err}"
                );
            }
            let first = required[0].clone();
            let typo = format!("{first}s");
            let mut broken = obj.clone();
            let spec = broken["spec"].as_object_mut().unwrap();
            let value = spec.remove(&first).unwrap();
            spec.insert(typo.clone(), value);
            let err = server_dry_run_rejects(
                &format!("{example}: {kind} {name} with spec.{typo}"),
                &broken,
            );
            assert!(
                err.contains(&format!(".spec.{typo}: field not declared in schema")),
                "{kind} {name} with spec.{typo} was rejected for another reason:\n{err}"
            );
        }
    }
    // Two GitRepositories, two Kustomizations, two Applications.
    assert_eq!(custom, 6);
}
