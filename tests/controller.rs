//! The operator end to end: a real kube-apiserver and etcd, the emulator, `fhirlock run` as a
//! separate process, and kubectl. Tests run one at a time: each has its own emulator and operator,
//! and an operator acts on every namespace it sees.

use std::sync::Mutex;
use std::time::Duration;

use fhirlock_tests::emulator::{Emulator, SUBSCRIPTION};
use fhirlock_tests::operator::{
    Operator, apply_endpoint, condition, is_ready, tenancy, tls_secret, wait_for,
};
use fhirlock_tests::{kubectl, kubectl_ok, namespace, text};
use serde_json::{Value, json};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const NET: &str = "2025-01-01";
const WEB: &str = "2024-11-01";

fn site() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server"
    )
}
fn gateway() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways/agw-fhir"
    )
}
fn vnet() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/hscn-net/providers/Microsoft.Network/virtualNetworks/hscn-vnet"
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn operator_writes(emu: &Emulator) -> u64 {
    rt().block_on(emu.operator_requests()).1
}

fn events(ns: &str) -> String {
    kubectl_ok(&[
        "get",
        "events",
        "-n",
        ns,
        "-o",
        "custom-columns=REASON:.reason,NOTE:.note,MESSAGE:.message",
        "--sort-by=.metadata.creationTimestamp",
    ])
}

const READY: Duration = Duration::from_secs(120);

#[test]
fn apply_then_ready_and_describe_tells_the_story() {
    let _s = serial();
    let ns = namespace("e2e-ready");
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    // A resync longer than the test, so that every read below is one convergence needed.
    let op = Operator::start(
        &emu,
        &tenancy(emu.dir(), &[&ns], None),
        None,
        &["--resync-seconds", "600"],
    );
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    let obj = wait_for(&op, &ns, &name, READY, "Ready", is_ready);

    assert_eq!(obj["status"]["gateway"]["privateIPAddress"], "10.20.1.10");
    assert_eq!(
        obj["status"]["findingCount"], 1,
        "only the advisory finding: {}",
        obj["status"]["findings"]
    );
    assert!(
        obj["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "fhirlock.io/cleanup")
    );
    for c in [
        "SubnetsReady",
        "GatewayReady",
        "AppServiceLocked",
        "CosmosLocked",
        "PostureCompliant",
    ] {
        assert_eq!(condition(&obj, c).unwrap()["status"], "True", "{c}");
    }
    assert_eq!(condition(&obj, "Reconciling").unwrap()["status"], "False");
    assert_eq!(condition(&obj, "Stalled").unwrap()["status"], "False");

    let describe = kubectl_ok(&["describe", "sfe", &name, "-n", &ns]);
    for needle in [
        "Type:                  Ready",
        "Reason:                Secured",
        "Private IPAddress:   10.20.1.10",
        "Next Steps:",
        "forward the HSCN address assigned to this service to the gateway's private IP 10.20.1.10",
        "AzureWrite",
        "Gateway Put",
        "CosmosLockdown Patch",
    ] {
        assert!(
            describe.contains(needle),
            "describe lacks {needle:?}:\n{describe}"
        );
    }
    let table = kubectl_ok(&["get", "sfe", "-n", &ns]);
    assert!(
        table.contains("True") && table.contains("Secured") && table.contains("10.20.1.10"),
        "{table}"
    );
    // Reads to converge: a full look (7 GETs) at the start and one to confirm Ready; between
    // them, after each long-running operation (2 subnets, the Cosmos rule, the gateway, the Cosmos
    // lockdown) one GET of what it changed, and nothing after a write ARM answered with the
    // resource. Only full looks read the feature registration. Operation polls are apart.
    let gets = |kind: &str| {
        requests_by(&emu, fhirlock_tests::emulator::OPERATOR_OBJECT, |e| {
            e["method"] == "GET" && e["resourceType"].as_str().unwrap() == kind
        })
    };
    let resource_gets = requests_by(&emu, fhirlock_tests::emulator::OPERATOR_OBJECT, |e| {
        e["method"] == "GET" && !e["resourceType"].as_str().unwrap().contains("/operations")
    });
    assert_eq!(gets("Microsoft.Features/features"), 2, "full looks");
    assert_eq!(gets("Microsoft.Network/virtualNetworks/subnets"), 2);
    assert_eq!(gets("Microsoft.DocumentDB/databaseAccounts"), 4);
    assert_eq!(resource_gets, 2 * 7 + 5, "{}", rt().block_on(emu.stats()));
    assert_eq!(
        op.readyz(),
        200,
        "/readyz once the cache is synced\n{}",
        op.logs()
    );
    let metrics = op.metrics();
    assert!(metrics.contains("fhirlock_endpoint_ready"), "{metrics}");
    assert!(metrics.contains("fhirlock_arm_requests_total"), "{metrics}");
}

#[test]
fn a_back_door_opened_out_of_band_is_closed_with_an_event_and_last_drift() {
    let _s = serial();
    let ns = namespace("e2e-drift");
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    let op = Operator::start(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);

    // A person in the portal opens the SCM site to everyone.
    let portal = emu.portal();
    rt().block_on(async {
        portal
            .patch(&format!("{}/config/web", site()), WEB, &json!({"properties": {"scmIpSecurityRestrictionsDefaultAction": "Allow", "scmIpSecurityRestrictionsUseMain": false}}))
            .await
            .unwrap();
    });
    let obj = wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "the drift to be corrected",
        |o| {
            o["status"]["lastDrift"]["fields"]
                .as_array()
                .is_some_and(|f| {
                    f.iter().any(|x| {
                        x.as_str()
                            .unwrap_or("")
                            .contains("scmIpSecurityRestrictionsDefaultAction")
                    })
                })
        },
    );
    assert!(obj["status"]["lastDrift"]["time"].is_string());
    let cfg = rt()
        .block_on(portal.get(&format!("{}/config/web", site()), WEB))
        .unwrap()
        .unwrap();
    assert_eq!(
        cfg["properties"]["scmIpSecurityRestrictionsDefaultAction"],
        "Deny"
    );
    let ev = events(&ns);
    assert!(
        ev.contains("DriftCorrected") && ev.contains("scmIpSecurityRestrictionsDefaultAction"),
        "{ev}"
    );
    wait_for(&op, &ns, &name, READY, "Ready again", is_ready);
}

#[test]
fn audit_mode_reports_findings_and_the_plan_and_never_writes() {
    let _s = serial();
    let ns = namespace("e2e-audit");
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    let op = Operator::start(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[("/spec/mode", json!("Audit"))]);
    let obj = wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "an audit report",
        |o| {
            o["status"]["findingCount"].as_i64().unwrap_or(0) > 5
                && o["status"]["plan"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty())
        },
    );
    let codes: Vec<&str> = obj["status"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"ScmSitePublic") && codes.contains(&"CosmosIpRule"),
        "{codes:?}"
    );
    assert!(
        obj["status"]["plan"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["field"] == "properties.ipSecurityRestrictionsDefaultAction")
    );
    assert_eq!(
        condition(&obj, "Ready").unwrap()["reason"],
        "FindingsPresent"
    );
    // Let it resync a few times; it must still not write.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(operator_writes(&emu), 0, "Audit mode wrote to Azure");
    assert!(
        rt().block_on(emu.operator_requests()).0 > 0,
        "Audit mode does read"
    );
    drop(op);
}

#[test]
fn deletion_retain_leaves_azure_and_delete_removes_only_what_fhirlock_created() {
    let _s = serial();
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    let (ns_keep, ns_del) = (namespace("e2e-retain"), namespace("e2e-delete"));
    let op = Operator::start(
        &emu,
        &tenancy(emu.dir(), &[&ns_keep, &ns_del], None),
        None,
        &[],
    );
    let portal = emu.portal();

    // Retain: converge, delete the object, Azure stays as it is.
    tls_secret(&ns_keep, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    // ARM creates the integration subnet but fhirlock never hears (twice: the client re-sends a
    // dropped request once). Subnets carry no tags, so only status.createdResources says fhirlock
    // made it, and teardown deletes only what it lists: it must be recorded all the same.
    rt().block_on(emu.faults(json!({"method": "PUT", "path": "*/subnets/snet-fhir-int", "count": 2, "dropConnection": true, "afterProcessing": true})));
    let name = apply_endpoint(&ns_keep, emu.dir(), &[]);
    let obj = wait_for(&op, &ns_keep, &name, READY, "Ready", is_ready);
    let int_subnet = format!("{}/subnets/snet-fhir-int", vnet());
    assert!(
        obj["status"]["createdResources"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r == &json!(int_subnet))),
        "{}",
        obj["status"]["createdResources"]
    );
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns_keep, "--timeout=60s"]);
    assert!(
        rt().block_on(portal.get(&gateway(), NET))
            .unwrap()
            .is_some(),
        "Retain deleted the gateway"
    );

    // Delete: the same estate, now owned by a Delete endpoint (adopting fhirlock's gateway needs
    // its owner tag; so retag it as a person would).
    let mut gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
    gw["tags"]["fhirlock.io/owner"] = json!(format!("{ns_del}/patient-records"));
    rt().block_on(async {
        let out = portal.put(&gateway(), NET, &gw).await.unwrap();
        if let fhirlock_arm::WriteOutcome::Accepted(op) = out {
            while !matches!(
                portal.poll(&op).await.unwrap(),
                fhirlock_arm::OperationStatus::Succeeded
            ) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    tls_secret(&ns_del, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(
        &ns_del,
        emu.dir(),
        &[("/spec/deletionPolicy", json!("Delete"))],
    );
    wait_for(&op, &ns_del, &name, READY, "Ready", is_ready);
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns_del, "--timeout=120s"]);
    let left = kubectl(&["get", "sfe", &name, "-n", &ns_del]);
    assert!(!left.status.success(), "the finalizer was not removed");
    rt().block_on(async {
        assert!(
            portal.get(&gateway(), NET).await.unwrap().is_none(),
            "the gateway fhirlock owned is gone"
        );
        let v = portal
            .get(&vnet(), NET)
            .await
            .unwrap()
            .expect("the VNet is never deleted");
        let subnets: Vec<&str> = v["properties"]["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        // The subnets were created by the first (Retain) endpoint, so to the second they were
        // adopted: an adopted subnet is never deleted.
        assert!(
            subnets.contains(&"snet-fhir-int") && subnets.contains(&"snet-fhir-agw"),
            "{subnets:?}"
        );
        let s = portal
            .get(&site(), WEB)
            .await
            .unwrap()
            .expect("the site is never deleted");
        assert!(
            s["properties"]["virtualNetworkSubnetId"].is_null(),
            "VNet integration removed: {}",
            s["properties"]["virtualNetworkSubnetId"]
        );
        let cfg = portal
            .get(&format!("{}/config/web", site()), WEB)
            .await
            .unwrap()
            .unwrap();
        let rules = cfg["properties"]["ipSecurityRestrictions"]
            .as_array()
            .unwrap();
        assert!(
            !rules.iter().any(|r| r["name"] == "fhirlock-gateway"),
            "fhirlock's rule removed: {rules:?}"
        );
        assert_eq!(
            cfg["properties"]["ipSecurityRestrictionsDefaultAction"], "Deny",
            "nothing re-opened"
        );
    });
    drop(op);
}

#[test]
fn an_endpoint_outside_its_namespace_scopes_stalls_with_zero_azure_calls() {
    let _s = serial();
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    let (ns_ok, ns_out) = (namespace("e2e-scoped"), namespace("e2e-outside"));
    // ns_out may only touch a resource group the endpoint does not use.
    let cfg = emu.dir().join("tenancy-narrow.yaml");
    std::fs::write(
        &cfg,
        serde_yaml::to_string(&json!({"tenants": [
            {"namespace": ns_ok, "scopes": [format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir"), format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/hscn-net")], "identity": {"operator": {}}},
            {"namespace": ns_out, "scopes": [format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/research")], "identity": {"operator": {}}},
        ]}))
        .unwrap(),
    )
    .unwrap();
    let op = Operator::start(&emu, &cfg, None, &[]);
    tls_secret(&ns_out, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns_out, emu.dir(), &[]);
    let obj = wait_for(
        &op,
        &ns_out,
        &name,
        Duration::from_secs(60),
        "Stalled",
        |o| condition(o, "Stalled").is_some_and(|c| c["status"] == "True"),
    );
    let stalled = condition(&obj, "Stalled").unwrap();
    assert_eq!(stalled["reason"], "OutOfScope");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("outside the Azure scopes"),
        "{stalled}"
    );
    assert_eq!(condition(&obj, "Ready").unwrap()["status"], "False");

    // In scope, but its identityRef names a Secret that is missing, then one without clientId.
    tls_secret(&ns_ok, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let example: Value = serde_yaml::from_str(
        &std::fs::read_to_string(testenv::workspace_root().join("examples/fhir-endpoint.yaml"))
            .unwrap(),
    )
    .unwrap();
    let mut spec = example["spec"].clone();
    spec["identityRef"] = json!({"name": "fhir-azure"});
    let name = apply_endpoint(&ns_ok, emu.dir(), &[("/spec", spec)]);
    let stalled_for = |reason: &str| {
        let obj = wait_for(&op, &ns_ok, &name, Duration::from_secs(60), reason, |o| {
            condition(o, "Stalled").is_some_and(|c| c["reason"] == reason)
        });
        condition(&obj, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let message = stalled_for("IdentityNotFound");
    assert!(
        message.contains(&format!(
            "identity Secret {ns_ok}/fhir-azure does not exist"
        )),
        "{message}"
    );
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "fhir-azure",
        "-n",
        &ns_ok,
        "--from-literal=tenantId=6f1c2a52-0000-4000-8000-00000000a001",
    ]);
    let message = stalled_for("InvalidIdentity");
    assert!(message.contains("needs tenantId and clientId"), "{message}");

    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rt().block_on(emu.operator_requests()),
        (0, 0, 0),
        "an endpoint stalled before Azure caused Azure calls"
    );
    drop(op);
}

#[test]
fn replacing_the_tls_secret_updates_the_gateway_certificate() {
    let _s = serial();
    let ns = namespace("e2e-tls");
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    let op = Operator::start(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    let portal = emu.portal();
    let tag = |gw: &Value| {
        gw["tags"]["fhirlock.io/tls"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before = tag(&rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap());
    assert!(before.starts_with("sha256:"), "{before}");

    // cert-manager renews: the Secret gets a new certificate and key.
    let renewed = emu.dir().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", &renewed);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
        if tag(&gw) != before && gw["properties"]["provisioningState"] == "Succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway kept the old certificate\n{}",
            op.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for(&op, &ns, &name, READY, "Ready after the renewal", is_ready);
    let ev = events(&ns);
    assert!(ev.contains("Gateway Put"), "{ev}");
}

/// Requests the emulator counted for `principal` that match `keep` (on the stats entry).
fn requests_by(emu: &Emulator, principal: &str, keep: impl Fn(&Value) -> bool) -> u64 {
    let stats = rt().block_on(emu.stats());
    stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["principal"] == principal && keep(e))
        .map(|e| e["count"].as_u64().unwrap())
        .sum()
}

fn gateway_puts(emu: &Emulator, principal: &str) -> u64 {
    requests_by(emu, principal, |e| {
        e["method"] == "PUT" && e["resourceType"] == "Microsoft.Network/applicationGateways"
    })
}

fn writes_by(emu: &Emulator, principal: &str) -> u64 {
    requests_by(emu, principal, |e| e["method"] != "GET")
}

#[test]
fn an_operator_killed_during_the_gateway_operation_resumes_it_without_a_second_gateway() {
    let _s = serial();
    let ns = namespace("e2e-sigkill");
    // A gateway takes 300 s of Azure time; at 0.03 that is 9 s, long enough to kill the operator in.
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.03);
    let mut op = Operator::start(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    let obj = wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(90),
        "the gateway operation in status",
        |o| {
            o["status"]["pendingOperations"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["step"] == "Gateway"))
        },
    );
    let handle = obj["status"]["pendingOperations"][0].clone();
    assert!(
        handle["statusUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{handle}"
    );
    op.kill();
    assert_eq!(
        gateway_puts(&emu, fhirlock_tests::emulator::OPERATOR_OBJECT),
        1
    );
    op.restart();
    wait_for(&op, &ns, &name, READY, "Ready after the restart", is_ready);
    assert_eq!(
        gateway_puts(&emu, fhirlock_tests::emulator::OPERATOR_OBJECT),
        1,
        "the restarted operator put the gateway again instead of resuming"
    );
    let gws = rt().block_on(emu.portal().get(&format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways"), NET)).unwrap().unwrap();
    assert_eq!(gws["value"].as_array().unwrap().len(), 1);
}

#[test]
fn with_two_replicas_only_the_leader_writes_and_the_other_takes_over() {
    let _s = serial();
    let ns = namespace("e2e-leader");
    let lease_ns = namespace("e2e-leader-lease");
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    // Replica b acts as another principal, so the emulator's stats tell the two apart.
    let outsider = "6f1c2a52-0000-4000-8000-00000000b003";
    rt().block_on(async {
        let ca = std::fs::read(&emu.ca_path).unwrap();
        let http = reqwest::Client::builder().tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap()).build().unwrap();
        let body = json!({"principal": outsider, "scope": format!("/subscriptions/{SUBSCRIPTION}"), "actions": ["*"]});
        let r = http.post(format!("{}/_emulator/role-assignments", emu.arm_endpoint)).header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
        assert!(r.status().is_success());
    });
    let cfg = tenancy(emu.dir(), &[&ns], None);
    let le = ["--leader-election", "--lease-namespace", lease_ns.as_str()];
    let mut a = Operator::start(
        &emu,
        &cfg,
        None,
        &[&le[..], &["--identity", "replica-a"]].concat(),
    );
    let b = Operator::start_with_env(
        &emu,
        &cfg,
        &[&le[..], &["--identity", "replica-b"]].concat(),
        &[
            ("AZURE_CLIENT_ID", "6f1c2a52-0000-4000-8000-00000000c003"),
            ("AZURE_CLIENT_SECRET", "outsider-dev-secret"),
        ],
    );
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    wait_for(&a, &ns, &name, READY, "Ready", is_ready);
    let lease: Value = serde_json::from_str(&kubectl_ok(&[
        "get", "lease", "fhirlock", "-n", &lease_ns, "-o", "json",
    ]))
    .unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap().to_owned();
    let (leader_principal, standby_principal) = if holder == "replica-a" {
        (fhirlock_tests::emulator::OPERATOR_OBJECT, outsider)
    } else {
        (outsider, fhirlock_tests::emulator::OPERATOR_OBJECT)
    };
    assert!(writes_by(&emu, leader_principal) > 0);
    assert_eq!(
        writes_by(&emu, standby_principal),
        0,
        "the standby wrote to Azure"
    );

    // The leader dies; the other takes the Lease and corrects the next drift.
    let mut b = b;
    if holder == "replica-a" {
        a.kill()
    } else {
        b.kill()
    }
    let portal = emu.portal();
    rt().block_on(portal.patch(
        &format!("{}/config/web", site()),
        WEB,
        &json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}}),
    ))
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while writes_by(&emu, standby_principal) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never took over\n{}",
            if holder == "replica-a" {
                b.logs()
            } else {
                a.logs()
            }
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let lease: Value = serde_json::from_str(&kubectl_ok(&[
        "get", "lease", "fhirlock", "-n", &lease_ns, "-o", "json",
    ]))
    .unwrap();
    assert_ne!(lease["spec"]["holderIdentity"].as_str().unwrap(), holder);
    let cfg = rt()
        .block_on(portal.get(&format!("{}/config/web", site()), WEB))
        .unwrap()
        .unwrap();
    assert_eq!(
        cfg["properties"]["ipSecurityRestrictionsDefaultAction"],
        "Deny"
    );
}

#[test]
fn the_operator_works_with_only_the_rbac_in_deploy_and_can_do_nothing_more() {
    let _s = serial();
    let ns = namespace("e2e-rbac");
    let sys = namespace("fhirlock-system");
    let rbac = testenv::workspace_root().join("deploy/rbac");
    kubectl_ok(&["apply", "-n", &sys, "-f", rbac.to_str().unwrap()]);
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    // A kubeconfig holding only the fhirlock ServiceAccount's token.
    let token = kubectl_ok(&["create", "token", "fhirlock", "-n", &sys, "--duration=1h"]);
    let admin = std::fs::read_to_string(fhirlock_tests::plane().kubeconfig_path()).unwrap();
    let mut kc: Value = serde_yaml::from_str(&admin).unwrap();
    kc["users"] = json!([{"name": "fhirlock", "user": {"token": token.trim()}}]);
    kc["contexts"][0]["context"]["user"] = json!("fhirlock");
    let kc_path = emu.dir().join("fhirlock.kubeconfig");
    std::fs::write(&kc_path, serde_yaml::to_string(&kc).unwrap()).unwrap();

    let op = Operator::start(
        &emu,
        &tenancy(emu.dir(), &[&ns], None),
        Some(&kc_path),
        &["--leader-election", "--lease-namespace", &sys],
    );
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready under least privilege",
        is_ready,
    );
    assert!(
        !op.logs().contains("forbidden"),
        "the operator hit a forbidden call:\n{}",
        op.logs()
    );

    let sa = "system:serviceaccount:fhirlock-system:fhirlock";
    let can = |args: &[&str]| {
        let mut a = vec!["auth", "can-i", "--as", sa];
        a.extend_from_slice(args);
        text(&kubectl(&a).stdout).trim() == "yes"
    };
    assert!(can(&[
        "patch",
        "securedfhirendpoints.fhirlock.io",
        "--subresource=status",
        "-n",
        &ns
    ]));
    assert!(can(&[
        "create",
        "serviceaccounts",
        "--subresource=token",
        "-n",
        &ns
    ]));
    assert!(can(&["list", "secrets", "-n", &ns]));
    assert!(can(&[
        "update",
        "securedfhirendpoints.fhirlock.io",
        "--subresource=finalizers",
        "-n",
        &ns
    ]));
    for denied in [
        vec!["create", "pods", "-n", &ns],
        vec!["delete", "secrets", "-n", &ns],
        vec!["create", "secrets", "-n", &ns],
        vec!["update", "secrets", "-n", &ns],
        vec!["delete", "securedfhirendpoints.fhirlock.io", "-n", &ns],
        vec!["create", "securedfhirendpoints.fhirlock.io", "-n", &ns],
        vec!["create", "clusterrolebindings"],
        vec!["update", "leases", "-n", &ns],
        vec!["get", "configmaps", "-n", &ns],
        vec!["impersonate", "serviceaccounts"],
    ] {
        assert!(!can(&denied), "the operator may {denied:?}");
    }
}

#[test]
fn workload_identity_uses_a_real_service_account_token_verified_against_the_apiserver_keys() {
    let _s = serial();
    let ns = namespace("e2e-wi");
    let plane = fhirlock_tests::plane();
    kubectl_ok(&["create", "serviceaccount", "fhir-azure", "-n", &ns]);
    // The emulator trusts the apiserver as a federated issuer: its JWKS, read from the apiserver.
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let mut cfg: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            testenv::workspace_root().join("examples/arm-emulator-estate.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let outsider = "6f1c2a52-0000-4000-8000-00000000b003";
    let clients = cfg["tenants"][0]["clients"].as_array_mut().unwrap();
    let c = clients
        .iter_mut()
        .find(|c| c["objectId"] == outsider)
        .unwrap();
    c["federatedCredentials"] = json!([{
        "issuer": plane.server, "subject": format!("system:serviceaccount:{ns}:fhir-azure"),
        "audiences": ["api://AzureADTokenExchange"], "jwksFile": jwks.display().to_string(),
    }]);
    cfg["roleAssignments"].as_array_mut().unwrap().push(json!({"principal": outsider, "scope": format!("/subscriptions/{SUBSCRIPTION}"), "actions": ["*"]}));
    let cfg_path = dir.path().join("emulator.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let emu = Emulator::start(cfg_path.to_str().unwrap(), 0.01);

    let identity = json!({"workloadIdentity": {"tenantId": fhirlock_tests::emulator::TENANT, "clientId": "6f1c2a52-0000-4000-8000-00000000c003", "serviceAccount": "fhir-azure"}});
    let op = Operator::start(&emu, &tenancy(emu.dir(), &[&ns], Some(identity)), None, &[]);
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready with workload identity",
        is_ready,
    );
    assert!(
        writes_by(&emu, outsider) > 0,
        "the federated identity made the writes"
    );
    assert_eq!(
        writes_by(&emu, fhirlock_tests::emulator::OPERATOR_OBJECT),
        0,
        "the operator's own identity was used"
    );

    // Another namespace cannot borrow it: its ServiceAccount's token has another subject.
    let other = namespace("e2e-wi-other");
    kubectl_ok(&["create", "serviceaccount", "fhir-azure", "-n", &other]);
    drop(op);
    let identity = json!({"workloadIdentity": {"tenantId": fhirlock_tests::emulator::TENANT, "clientId": "6f1c2a52-0000-4000-8000-00000000c003", "serviceAccount": "fhir-azure"}});
    let op = Operator::start(
        &emu,
        &tenancy(emu.dir(), &[&other], Some(identity)),
        None,
        &[],
    );
    tls_secret(&other, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&other, emu.dir(), &[]);
    let obj = wait_for(
        &op,
        &other,
        &name,
        Duration::from_secs(60),
        "Stalled on authorization",
        |o| condition(o, "Stalled").is_some_and(|c| c["status"] == "True"),
    );
    let stalled = condition(&obj, "Stalled").unwrap();
    assert_eq!(stalled["reason"], "AuthorizationFailed", "{stalled}");
}

#[test]
fn the_operator_stays_within_its_share_of_the_write_bucket_and_says_so() {
    let _s = serial();
    let ns = namespace("e2e-budget");
    let emu = Emulator::start("arm-emulator-estate.yaml", 0.01);
    // A small write bucket: 6 writes, refilled at one every 20 s; converging takes 9. With a 50%
    // share fhirlock spends down to half of what it saw, then waits for the refill (told its rate,
    // as it knows Azure's) instead of running into 429s.
    rt().block_on(async {
        let ca = std::fs::read(&emu.ca_path).unwrap();
        let http = reqwest::Client::builder().tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap()).build().unwrap();
        let sizes = json!({"reads": {"capacity": 250, "refillPerSecond": 25}, "writes": {"capacity": 6, "refillPerSecond": 0.05}, "deletes": {"capacity": 200, "refillPerSecond": 10}});
        let r = http.put(format!("{}/_emulator/throttle", emu.arm_endpoint)).header("content-type", "application/json").body(sizes.to_string()).send().await.unwrap();
        assert!(r.status().is_success());
    });
    let op = Operator::start(
        &emu,
        &tenancy(emu.dir(), &[&ns], None),
        None,
        &[
            "--arm-budget-share",
            "0.5",
            "--arm-write-refill-per-second",
            "0.05",
        ],
    );
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", emu.dir());
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "writes deferred for the budget",
        |o| condition(o, "Reconciling").is_some_and(|c| c["reason"] == "Throttled"),
    );
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(180),
        "Ready as the bucket refills",
        is_ready,
    );
    let stats = rt().block_on(emu.stats());
    let throttled: u64 = stats["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["principal"] == fhirlock_tests::emulator::OPERATOR_OBJECT && e["status"] == 429
        })
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        throttled, 0,
        "fhirlock ran into ARM throttling instead of deferring"
    );
    let metrics = op.metrics();
    let deferred = metrics
        .lines()
        .find(|l| l.starts_with("fhirlock_arm_deferred_writes_total{"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        deferred
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
            > 0.0,
        "{deferred}"
    );
}
