//! The SecuredFhirEndpoint API against a real kube-apiserver and etcd, driven with kubectl as a
//! user would. The corpus is the one the unit tests judge locally; both must agree.

use fhirlock_api::{admission, fixtures};
use fhirlock_tests::{apply_object, kubectl, kubectl_ok, namespace, plane, text};
use serde_json::{Value, json};

fn in_namespace(mut obj: Value, ns: &str) -> Value {
    obj["metadata"]["namespace"] = json!(ns);
    obj
}

#[test]
fn crd_is_established_with_its_names() {
    plane();
    let crd: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "crd",
        "securedfhirendpoints.fhirlock.io",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["sfe"]));
    assert_eq!(crd["spec"]["names"]["categories"], json!(["fhirlock"]));
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"],
        json!({"status": {}})
    );
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);
    // The category and short name resolve.
    kubectl_ok(&["get", "fhirlock", "-A"]);
    kubectl_ok(&["get", "sfe", "-A"]);
}

#[test]
fn apiserver_reports_the_pinned_version() {
    plane();
    let v: Value = serde_json::from_str(&kubectl_ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.36.3");
    assert_eq!(v["clientVersion"]["gitVersion"], "v1.36.3");
}

#[test]
fn every_example_is_accepted() {
    let ns = namespace("examples");
    let dir = tempfile::tempdir().unwrap();
    let examples = fixtures::examples();
    assert!(examples.len() >= 3);
    for (file, obj) in examples {
        let out = apply_object(&in_namespace(obj, &ns), dir.path());
        assert!(
            out.status.success(),
            "{} rejected by the apiserver: {}",
            file.display(),
            text(&out.stderr)
        );
    }
}

#[test]
fn invalid_manifests_are_rejected_with_their_message_and_the_local_rules_agree() {
    let ns = namespace("invalid");
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixtures::invalid();
    assert!(corpus.len() >= 25);
    let mut disagreements = Vec::new();
    for case in &corpus {
        let out = apply_object(&in_namespace(case.object.clone(), &ns), dir.path());
        let server = text(&out.stderr);
        let local = admission::validate(&case.object, None);
        let server_says = !out.status.success() && server.contains(&case.expect);
        let local_says = local.iter().any(|e| e.contains(&case.expect));
        if !(server_says && local_says) {
            disagreements.push(format!(
                "{}: expected {:?}\n  apiserver (exit {}): {}\n  local: {local:?}",
                case.file.display(),
                case.expect,
                out.status,
                server.trim()
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // Nothing invalid was stored.
    let stored = kubectl_ok(&["get", "sfe", "-n", &ns, "-o", "name"]);
    assert!(
        stored.trim().is_empty(),
        "invalid objects were stored: {stored}"
    );
}

#[test]
fn immutable_fields_are_rejected_on_update_and_day_two_changes_are_not() {
    let ns = namespace("updates");
    let dir = tempfile::tempdir().unwrap();
    let base = in_namespace(fixtures::base_example(), &ns);
    let out = apply_object(&base, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));

    for u in fixtures::updates("immutable.yaml") {
        let changed = fixtures::with_field(&base, &u.field, u.value.clone());
        let out = apply_object(&changed, dir.path());
        let expect = u.expect.unwrap();
        assert!(!out.status.success(), "changing {} was accepted", u.field);
        assert!(
            text(&out.stderr).contains(&expect),
            "{}: expected {expect:?}, got {}",
            u.field,
            text(&out.stderr)
        );
        let local = admission::validate(&changed, Some(&base));
        assert!(
            local.iter().any(|e| e.contains(&expect)),
            "local rules disagree on {}: {local:?}",
            u.field
        );
    }
    let mut current = base.clone();
    for u in fixtures::updates("mutable.yaml") {
        current = fixtures::with_field(&current, &u.field, u.value.clone());
        let out = apply_object(&current, dir.path());
        assert!(
            out.status.success(),
            "changing {} was rejected: {}",
            u.field,
            text(&out.stderr)
        );
    }
}

#[test]
fn kubectl_explain_shows_the_field_descriptions() {
    plane();
    let words = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let out = words(kubectl_ok(&["explain", "securedfhirendpoint.spec.gateway"]));
    for needle in [
        "The private Application Gateway v2 fhirlock creates",
        "privateIPAddress",
        "Azure cannot change a private",
        "hostName",
        "probePath",
    ] {
        assert!(
            out.contains(needle),
            "kubectl explain lacks {needle:?}:\n{out}"
        );
    }
    let out = words(kubectl_ok(&["explain", "sfe.status.conditions"]));
    assert!(out.contains("Ready, Reconciling and Stalled"), "{out}");
}

#[test]
fn kubectl_get_shows_ready_reason_gateway_ip_findings_and_age() {
    let ns = namespace("columns");
    let dir = tempfile::tempdir().unwrap();
    let obj = in_namespace(fixtures::base_example(), &ns);
    let out = apply_object(&obj, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = json!({"status": {
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Secured", "message": "only the gateway reaches the API",
            "lastTransitionTime": "2026-11-27T09:00:00Z", "observedGeneration": 1
        }],
        "gateway": {"privateIPAddress": "10.20.1.10"},
        "findingCount": 0
    }});
    kubectl_ok(&[
        "patch",
        "sfe",
        "patient-records",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    let table = kubectl_ok(&["get", "sfe", "-n", &ns]);
    let cells = columns(&table);
    let header: Vec<&str> = cells[0].iter().map(String::as_str).collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "REASON",
            "REACHABLE",
            "GATEWAY-IP",
            "FINDINGS",
            "AGE"
        ]
    );
    // No Reachable condition in this status: its cell is empty.
    assert_eq!(
        &cells[1][..6],
        ["patient-records", "True", "Secured", "", "10.20.1.10", "0"]
    );

    // `-o wide` adds the priority-1 columns: the mode and the gateway's name. An endpoint that
    // leaves mode out reads the CRD's default.
    assert!(
        !header.contains(&"MODE") && !header.contains(&"GATEWAY"),
        "{header:?}"
    );
    let mut audit = in_namespace(fixtures::base_example(), &ns);
    audit["metadata"]["name"] = json!("audit-only");
    audit["spec"]["mode"] = json!("Audit");
    audit["spec"]["gateway"]["name"] = json!("agw-audit");
    let mut defaulted = in_namespace(fixtures::base_example(), &ns);
    defaulted["metadata"]["name"] = json!("defaulted");
    defaulted["spec"].as_object_mut().unwrap().remove("mode");
    for obj in [&audit, &defaulted] {
        let out = apply_object(obj, dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let wide = kubectl_ok(&[
        "get",
        "sfe",
        "-n",
        &ns,
        "-o",
        "wide",
        "--sort-by=.metadata.name",
    ]);
    let table = columns(&wide);
    let col = |name: &str| {
        table[0]
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column in -o wide:\n{wide}"))
    };
    let (mode, gateway) = (col("MODE"), col("GATEWAY"));
    assert_eq!(table[0].last().map(String::as_str), Some("AGE"));
    let mode_gateway: Vec<[&str; 3]> = table[1..]
        .iter()
        .map(|r| [r[0].as_str(), &r[mode], &r[gateway]])
        .collect();
    assert_eq!(
        mode_gateway,
        [
            ["audit-only", "Audit", "agw-audit"],
            ["defaulted", "Enforce", "agw-fhir"],
            ["patient-records", "Enforce", "agw-fhir"],
        ],
        "{wide}"
    );
}

/// kubectl's table as cells, split at the header's column starts: an empty cell (no status yet)
/// stays in its column.
fn columns(table: &str) -> Vec<Vec<String>> {
    let header = table.lines().next().unwrap();
    let mut starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    starts.push(usize::MAX);
    table
        .lines()
        .map(|line| {
            starts
                .windows(2)
                .map(|w| {
                    let end = w[1].min(line.len());
                    line.get(w[0].min(end)..end).unwrap_or("").trim().to_owned()
                })
                .collect()
        })
        .collect()
}

#[test]
fn status_is_a_subresource_so_spec_writers_cannot_set_it() {
    let ns = namespace("subresource");
    let dir = tempfile::tempdir().unwrap();
    let mut obj = in_namespace(fixtures::base_example(), &ns);
    obj["status"] = json!({"findingCount": 7});
    let out = apply_object(&obj, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "sfe",
        "patient-records",
        "-n",
        &ns,
        "-o",
        "json",
    ]))
    .unwrap();
    assert!(
        got.get("status")
            .is_none_or(|s| s.get("findingCount").is_none()),
        "status was written through the main resource: {got}"
    );
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
