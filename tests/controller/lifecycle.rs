//! The end of an endpoint (Retain and Delete), and an operator killed in the middle of a
//! long-running operation.

use super::*;

#[test]
fn deletion_retain_leaves_azure_and_delete_removes_only_what_fhirlock_created() {
    let _s = serial();
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let (ns_keep, ns_del) = (namespace("e2e-retain"), namespace("e2e-delete"));
    let op = operator(
        &emu,
        &tenancy(emu.dir(), &[&ns_keep, &ns_del], None),
        None,
        &[],
    );
    let portal = emu.portal().unwrap();

    // Retain: converge, delete the object, Azure stays as it is.
    // ARM creates the integration subnet but fhirlock never hears (twice: the client re-sends a
    // dropped request once). Subnets carry no tags, so only status.createdResources says fhirlock
    // made it, and teardown deletes only what it lists: it must be recorded all the same.
    rt().block_on(emu.control.faults(json!({"method": "PUT", "path": "*/subnets/snet-fhir-int", "count": 2, "dropConnection": true, "afterProcessing": true})))
        .unwrap();
    let name = endpoint_in(&emu, &ns_keep, &[]);
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
    // its owner tag; so retag it as a person would). Adopted, it is managed but never deleted;
    // the resilience suite deletes endpoints whose gateways fhirlock created.
    let mut gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
    gw["tags"]["fhirlock-owner"] = json!(format!("{ns_del}/patient-records"));
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
    let name = endpoint_in(&emu, &ns_del, &[("/spec/deletionPolicy", json!("Delete"))]);
    wait_for(&op, &ns_del, &name, READY, "Ready", is_ready);
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns_del, "--timeout=120s"]);
    let left = kubectl(&["get", "sfe", &name, "-n", &ns_del]);
    assert!(!left.status.success(), "the finalizer was not removed");
    rt().block_on(async {
        assert!(
            portal.get(&gateway(), NET).await.unwrap().is_some(),
            "a gateway a person adopted by tagging it is never deleted"
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
fn an_operator_killed_during_the_gateway_operation_resumes_it_without_a_second_gateway() {
    let _s = serial();
    // A gateway takes 300 s of Azure time; at 0.03 that is 9 s, long enough to kill the operator in.
    let World {
        ns,
        emu,
        mut op,
        name,
    } = world("e2e-sigkill", 0.03, &[], &[]);
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
    assert_eq!(gateway_puts(&emu, OPERATOR_OBJECT), 1);
    op.restart().unwrap();
    wait_for(&op, &ns, &name, READY, "Ready after the restart", is_ready);
    assert_eq!(
        gateway_puts(&emu, OPERATOR_OBJECT),
        1,
        "the restarted operator put the gateway again instead of resuming"
    );
    let gws = rt().block_on(emu.portal().unwrap().get(&format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir/providers/Microsoft.Network/applicationGateways"), NET)).unwrap().unwrap();
    assert_eq!(gws["value"].as_array().unwrap().len(), 1);
}
