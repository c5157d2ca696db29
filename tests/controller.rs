//! The operator end to end: a real kube-apiserver and etcd, the emulator, `fhirlock run` as a
//! separate process, and kubectl. Tests run one at a time: each has its own emulator and operator,
//! and an operator acts on every namespace it sees.

use std::sync::Mutex;
use std::time::Duration;

use fhirlock_tests::emulator::{Emulator, SUBSCRIPTION};
use fhirlock_tests::operator::{
    Operator, apply_endpoint, condition, is_ready, tenancy, tls_secret, wait_for,
};
use fhirlock_tests::{kubectl, kubectl_ok, namespace};
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
    let op = Operator::start(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
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
    let name = apply_endpoint(&ns_keep, emu.dir(), &[]);
    wait_for(&op, &ns_keep, &name, READY, "Ready", is_ready);
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
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rt().block_on(emu.operator_requests()),
        (0, 0, 0),
        "an out-of-scope endpoint caused Azure calls"
    );
    let _ = ns_ok;
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
