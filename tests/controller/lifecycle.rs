//! The end of an endpoint (Retain and Delete), and an operator killed in the middle of a
//! long-running operation.

use std::time::{SystemTime, UNIX_EPOCH};

use fhirlock_arm::{OperationStatus, WriteOutcome};
use fhirlock_tests::emulator::rg;
use fhirlock_tests::must;
use fhirlock_tests::operator::tail;

use super::deployment::recorded;
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
    // The WAF policy the first endpoint created for its WAF_v2 gateway is adopted the same way.
    let policy = gateway().replace(
        "applicationGateways/agw-fhir",
        "ApplicationGatewayWebApplicationFirewallPolicies/agw-fhir-waf",
    );
    let mut waf = rt().block_on(portal.get(&policy, NET)).unwrap().unwrap();
    waf["tags"]["fhirlock-owner"] = json!(format!("{ns_del}/patient-records"));
    rt().block_on(portal.put(&policy, NET, &waf)).unwrap();
    let name = endpoint_in(&emu, &ns_del, &[("/spec/deletionPolicy", json!("Delete"))]);
    wait_for(&op, &ns_del, &name, READY, "Ready", is_ready);
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns_del, "--timeout=120s"]);
    assert!(
        rt().block_on(portal.get(&policy, NET)).unwrap().is_some(),
        "a WAF policy a person adopted by tagging it is never deleted"
    );
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
            !rules.iter().any(|r| r["vnetSubnetResourceId"]
                .as_str()
                .is_some_and(|s| s.to_ascii_lowercase().ends_with("/subnets/snet-fhir-agw"))),
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

/// An RFC 3339 UTC time, `secs_ago` seconds before now.
fn rfc3339_ago(secs_ago: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - secs_ago;
    let (days, rest) = ((t / 86_400) as i64, t % 86_400);
    // Civil from days (H. Hinnant): March-based years, so the leap day ends a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, min, sec) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}Z")
}

/// Anyone who may patch `/status` can plant an operation handle there. Planted before the
/// operator first looks, it must be dropped with an Event saying `why`, its URL never requested
/// (with the namespace's identity or any other), and the endpoint observed and converged all
/// the same. `handle` builds the handle from the emulator's ARM endpoint: the planted URLs are on
/// it, since the ARM client refuses any other host anyway. Before fhirlock checked handles it
/// polled whatever status held; these URLs answer 404, which reads as "still running", so it
/// polled them for ever and never looked at Azure.
fn a_planted_handle_is_dropped_not_polled(ns: &str, handle: impl Fn(&str) -> Value, why: &str) {
    let _s = serial();
    let ns = namespace(ns);
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let name = endpoint_in(&emu, &ns, &[]);
    let planted = handle(&emu.ready.arm_endpoint);
    let patch = json!({"status": {"pendingOperations": [planted]}});
    kubectl_ok(&[
        "patch",
        "sfe",
        &name,
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let op = operator(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
    wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready past the planted handle",
        is_ready,
    );

    let url = planted["statusUrl"].as_str().unwrap();
    let path = url[emu.ready.arm_endpoint.len()..]
        .split('?')
        .next()
        .unwrap();
    let polled: Vec<Value> = recorded(&emu)
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap().eq_ignore_ascii_case(path))
        .collect();
    assert!(
        polled.is_empty(),
        "fhirlock polled the planted handle: {polled:#?}"
    );
    let events = events(&ns);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("OperationDropped") && l.contains(why)),
        "no OperationDropped Event saying {why:?}:\n{events}\n{}",
        tail(&op.logs(), 40)
    );

    // Planted again into a converged endpoint's status: fhirlock owns the list, so its next
    // status write clears it (it used to leave a list it did not own, and drop it on every pass).
    kubectl_ok(&[
        "patch",
        "sfe",
        &name,
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "the planted handle cleared from status",
        |o| {
            o["status"]["pendingOperations"]
                .as_array()
                .is_none_or(|a| a.is_empty())
        },
    );
}

fn planted(resource_id: &str, method: &str, status_url: String, started: String) -> Value {
    json!({
        "resourceId": resource_id,
        "step": "Gateway",
        "method": method,
        "apiVersion": NET,
        "statusUrl": status_url,
        "kind": "AsyncOperation",
        "started": started,
    })
}

#[test]
fn a_handle_planted_for_another_teams_site_is_dropped_not_polled() {
    let theirs = format!(
        "{}/providers/Microsoft.Web/sites/their-fhir",
        rg("other-team")
    );
    a_planted_handle_is_dropped_not_polled(
        "e2e-planted-site",
        |arm| {
            let url = format!("{arm}{theirs}/operationResults/planted-1?api-version={WEB}");
            planted(&theirs, "PATCH", url, rfc3339_ago(0))
        },
        "is not one of this endpoint's resources",
    );
}

#[test]
fn a_handle_planted_with_a_status_url_in_another_subscription_is_dropped_not_polled() {
    a_planted_handle_is_dropped_not_polled(
        "e2e-planted-sub",
        |arm| {
            let other = "/subscriptions/7e2d0c11-0000-4000-8000-0000000000ff";
            let url = format!(
                "{arm}{other}/providers/Microsoft.Network/locations/uksouth/operations/planted-2?api-version={NET}"
            );
            planted(&gateway(), "PUT", url, rfc3339_ago(0))
        },
        "its status URL is not in subscription",
    );
}

#[test]
fn a_handle_started_two_hours_ago_is_dropped_not_polled() {
    a_planted_handle_is_dropped_not_polled(
        "e2e-planted-old",
        |arm| {
            let url = format!(
                "{arm}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/locations/uksouth/operations/planted-3?api-version={NET}"
            );
            planted(&gateway(), "PUT", url, rfc3339_ago(2 * 3_600))
        },
        "longer than fhirlock waits",
    );
}

/// Someone deletes the VNet's resource group under a converged endpoint with deletionPolicy
/// Delete. Deleting the endpoint must still finish: what lived in that group is gone with it,
/// and the rest of what fhirlock added is removed. Before a missing parent counted as a missing
/// resource, every teardown read failed with 404 ResourceGroupNotFound and the finalizer stayed.
#[test]
fn deleting_an_endpoint_whose_vnet_resource_group_is_gone_still_finishes() {
    let _s = serial();
    let World { ns, emu, op, name } = world(
        "e2e-rg-gone",
        0.01,
        &[],
        &[("/spec/deletionPolicy", json!("Delete"))],
    );
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    let portal = emu.portal().unwrap();
    rt().block_on(async {
        if let WriteOutcome::Accepted(deleting) =
            portal.delete(&rg("hscn-net"), "2021-04-01").await.unwrap()
        {
            while portal.poll(&deleting).await.unwrap() != OperationStatus::Succeeded {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let vnet = portal.get(&vnet(), NET).await;
        assert!(
            vnet.as_ref()
                .is_err_and(|e| e.code == "ResourceGroupNotFound"),
            "{vnet:?}"
        );
    });

    let out = kubectl(&["delete", "sfe", &name, "-n", &ns, "--timeout=90s"]);
    assert!(
        out.status.success(),
        "the finalizer was not released: {}\n{}\n{}",
        text(&out.stderr),
        events(&ns),
        tail(&op.logs(), 40)
    );
    assert!(!kubectl(&["get", "sfe", &name, "-n", &ns]).status.success());
    assert!(events(&ns).contains("Deleted"), "{}", events(&ns));
    rt().block_on(async {
        assert!(
            portal.get(&gateway(), NET).await.unwrap().is_none(),
            "the gateway fhirlock owned is left"
        );
        let s = portal.get(&site(), WEB).await.unwrap().unwrap();
        assert!(
            s["properties"]["virtualNetworkSubnetId"].is_null(),
            "VNet integration left: {}",
            s["properties"]["virtualNetworkSubnetId"]
        );
        let cfg = portal
            .get(&format!("{}/config/web", site()), WEB)
            .await
            .unwrap()
            .unwrap();
        let rules = cfg["properties"]["ipSecurityRestrictions"].to_string();
        // fhirlock's rule, whatever its name: the one for the gateway subnet.
        assert!(
            !rules
                .to_ascii_lowercase()
                .contains("/subnets/snet-fhir-agw"),
            "{rules}"
        );
        assert_eq!(
            cfg["properties"]["ipSecurityRestrictionsDefaultAction"], "Deny",
            "nothing re-opened"
        );
    });
}

/// A Delete endpoint whose cleanup cannot finish (every write refused) is let go by the
/// annotation `fhirlock.io/release-finalizer: "true"`, with no Azure call at all, not even a
/// read, and a Warning Event naming what is left. Fails without the annotation's handling: the
/// cleanup keeps failing and the endpoint is never deleted.
#[test]
fn the_release_annotation_lets_a_stuck_deletion_go_without_touching_azure() {
    let _s = serial();
    let World {
        ns,
        emu,
        mut op,
        name,
    } = world(
        "e2e-release",
        0.01,
        &[],
        &[("/spec/deletionPolicy", json!("Delete"))],
    );
    let obj = wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    let created: Vec<String> = obj["status"]["createdResources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert!(!created.is_empty(), "{obj}");
    let refuse = |method: &str| json!({"method": method, "path": "*", "count": 100_000, "status": 403, "code": "AuthorizationFailed"});
    rt().block_on(
        emu.control
            .faults(json!([refuse("PUT"), refuse("PATCH"), refuse("DELETE")])),
    )
    .unwrap();
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns, "--wait=false"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !events(&ns).contains("CleanupFailed") {
        assert!(std::time::Instant::now() < deadline, "{}", events(&ns));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(kubectl(&["get", "sfe", &name, "-n", &ns]).status.success());

    // Stopped while the annotation goes on, so no pass already under way can be counted.
    op.terminate();
    let before = rt().block_on(emu.control.operator_requests()).unwrap();
    kubectl_ok(&[
        "annotate",
        "sfe",
        &name,
        "-n",
        &ns,
        "fhirlock.io/release-finalizer=true",
    ]);
    op.restart().unwrap();
    let out = kubectl(&[
        "wait",
        "--for=delete",
        "sfe",
        &name,
        "-n",
        &ns,
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "the annotation did not release the finalizer: {}\n{}\n{}",
        text(&out.stderr),
        events(&ns),
        tail(&op.logs(), 40)
    );
    assert_eq!(
        rt().block_on(emu.control.operator_requests()).unwrap(),
        before,
        "released by the annotation, yet fhirlock called Azure"
    );
    let events = events(&ns);
    let released = events
        .lines()
        .find(|l| l.starts_with("FinalizerReleased"))
        .unwrap_or_else(|| panic!("no FinalizerReleased Event:\n{events}"));
    for id in &created {
        assert!(released.contains(id.as_str()), "{id} not named: {released}");
    }
    assert!(
        op.metrics().unwrap().contains(
            "fhirlock_finalizers_released_without_cleanup_total{reason=\"annotation\"} 1"
        ),
        "{}",
        op.metrics().unwrap()
    );
}

/// A namespace holding a Ready Delete endpoint is deleted (the real namespace controller,
/// kube-controller-manager's). The namespace controller deletes the identity Secret the
/// cleanup acts with as well as the endpoint, in no set order, and nobody can put the Secret
/// back: the apiserver refuses new objects in a terminating namespace. So the Secret goes
/// first here, the order that used to leave the finalizer waiting for it, and the namespace
/// with it, for ever. Now the namespace goes within a bound, and a Warning Event on the
/// Namespace (in `default`: the namespace's own Events go with it) says what is left in Azure.
#[test]
fn deleting_a_namespace_holding_an_endpoint_finishes_and_says_what_is_left() {
    let _s = serial();
    must(plane().start_namespace_controller());
    let ns = namespace("e2e-ns-gone");
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    rt().block_on(emu.control.assign_role(
        OUTSIDER_OBJECT,
        &format!("/subscriptions/{SUBSCRIPTION}"),
        &["*"],
    ))
    .unwrap();
    let secret = "fhir-azure-sp";
    let identity = json!({"clientSecret": {"tenantId": TENANT, "clientId": OUTSIDER_CLIENT, "secretName": secret}});
    let op = operator(&emu, &tenancy(emu.dir(), &[&ns], Some(identity)), None, &[]);
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        secret,
        "-n",
        &ns,
        &format!("--from-literal=clientSecret={OUTSIDER_SECRET}"),
    ]);
    let name = endpoint_in(&emu, &ns, &[("/spec/deletionPolicy", json!("Delete"))]);
    let obj = wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    let created = obj["status"]["createdResources"].clone();

    kubectl_ok(&["delete", "secret", secret, "-n", &ns]);
    let writes = writes_by(&emu, OUTSIDER_OBJECT);
    kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    let out = kubectl(&["wait", "--for=delete", "namespace", &ns, "--timeout=90s"]);
    assert!(
        out.status.success(),
        "the namespace is still there: {}\n{}\n{}",
        text(&out.stderr),
        kubectl(&["get", "sfe", "-n", &ns, "-o", "yaml"])
            .stdout
            .len(),
        tail(&op.logs(), 40)
    );
    assert_eq!(
        writes_by(&emu, OUTSIDER_OBJECT),
        writes,
        "no Azure write without the identity"
    );

    let list: Value = serde_json::from_str(&kubectl_ok(&[
        "get", "events", "-n", "default", "-o", "json",
    ]))
    .unwrap();
    let said: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["involvedObject"]["kind"] == "Namespace" && e["involvedObject"]["name"] == ns.as_str()
        })
        .filter(|e| e["reason"] == "FinalizerReleased" && e["type"] == "Warning")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(&name) && said[0].contains("being deleted"),
        "{}",
        said[0]
    );
    for id in created.as_array().unwrap() {
        assert!(
            said[0].contains(id.as_str().unwrap()),
            "{id} not named: {}",
            said[0]
        );
    }
    assert!(
        op.metrics().unwrap().contains(
            "fhirlock_finalizers_released_without_cleanup_total{reason=\"namespace_deleted\"} 1"
        ),
        "{}",
        op.metrics().unwrap()
    );
}

/// The operation status holds is one Azure does not know (ARM forgot it, or never issued it):
/// its status URL answers 404 `OperationNotFound`. Meanwhile someone opens a back door. The
/// handle passes every check (the endpoint's own gateway, a URL in its subscription, started
/// now), so it is polled, once: the 404 drops it at once, with an Event, and the same pass
/// looks at Azure and closes the door. Fails before: a 404 read as "still running", so the
/// handle was polled for ever and the door never seen.
#[test]
fn an_operation_azure_does_not_know_is_dropped_and_the_back_door_opened_meanwhile_closed() {
    let _s = serial();
    let World {
        ns,
        emu,
        mut op,
        name,
    } = world("e2e-op-unknown", 0.01, &[], &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    op.terminate();
    let arm = &emu.ready.arm_endpoint;
    let path = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/locations/uksouth/operations/forgotten-1"
    );
    let handle = planted(
        &gateway(),
        "PUT",
        format!("{arm}{path}?api-version={NET}"),
        rfc3339_ago(0),
    );
    let patch = json!({"status": {"pendingOperations": [handle]}});
    kubectl_ok(&[
        "patch",
        "sfe",
        &name,
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let portal = emu.portal().unwrap();
    let config = format!("{}/config/web", site());
    let default_action = || {
        rt().block_on(portal.get(&config, WEB)).unwrap().unwrap()["properties"]
            ["ipSecurityRestrictionsDefaultAction"]
            .clone()
    };
    rt().block_on(portal.patch(
        &config,
        WEB,
        &json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}}),
    ))
    .unwrap();
    assert_eq!(default_action(), "Allow");

    op.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while default_action() != "Deny" {
        assert!(
            std::time::Instant::now() < deadline,
            "the back door stayed open\n{}\n{}",
            events(&ns),
            tail(&op.logs(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Dropped, not polled for ever: once status no longer holds it, it is never asked again.
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(30),
        "the unknown operation cleared from status",
        |o| {
            !o["status"]["pendingOperations"]
                .to_string()
                .contains("forgotten-1")
        },
    );
    let polls = || {
        recorded(&emu)
            .into_iter()
            .filter(|r| r["path"].as_str().unwrap().eq_ignore_ascii_case(&path))
            .count()
    };
    let polled = polls();
    assert!(polled >= 1, "the handle was never polled");
    std::thread::sleep(Duration::from_secs(7)); // two resyncs of 3 s
    assert_eq!(polls(), polled, "the unknown operation is still polled");
    let events = events(&ns);
    assert!(
        events.lines().any(|l| l.starts_with("OperationDropped")
            && l.contains("not found in Azure (OperationNotFound)")),
        "no OperationDropped Event for the unknown operation:\n{events}"
    );
    // Another endpoint naming the same gateway in a later test would conflict with this one.
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns, "--timeout=60s"]);
}
