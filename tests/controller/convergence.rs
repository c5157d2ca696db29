//! Converging a wide-open estate, and keeping it converged: the status and Events it leaves,
//! the reads it takes, drift put right, Audit mode, and a renewed TLS certificate.

use super::*;

#[test]
fn apply_then_ready_and_describe_tells_the_story() {
    let _s = serial();
    // A resync longer than the test, so that every read below is one convergence needed.
    let World { ns, emu, op, name } = world("e2e-ready", 0.01, &["--resync-seconds", "600"], &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    // The backend health is read once the endpoint has converged: one POST, read a pass later.
    let obj = wait_for(&op, &ns, &name, READY, "Reachable", reachable("True"));
    let r = condition(&obj, "Reachable").unwrap();
    assert_eq!(r["reason"], "BackendHealthy", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("fhir-server.azurewebsites.net"),
        "{r}"
    );

    assert_eq!(obj["status"]["gateway"]["privateIPAddress"], "10.20.1.10");
    // findingCount counts blocking findings only (the advisory one is listed, not counted).
    assert_eq!(
        obj["status"]["findingCount"], 0,
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
    // kubectl aligns the values of a block to its longest key, so compare with runs of spaces
    // collapsed; the gateway's address is looked for in the status, not the spec.
    let squeeze = |t: &str| {
        t.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let status = squeeze(describe.split("\nStatus:\n").nth(1).unwrap_or_default());
    assert!(
        status.contains("Private IPAddress: 10.20.1.10"),
        "describe's status lacks the gateway's address:\n{describe}"
    );
    let squeezed = squeeze(&describe);
    for needle in [
        "Type: Ready",
        "Reason: Secured",
        "Next Steps:",
        "forwarded to the gateway's private IP 10.20.1.10",
        "AzureWrite",
        "Gateway Put",
        "CosmosLockdown Patch",
    ] {
        assert!(
            squeezed.contains(needle),
            "describe lacks {needle:?}:\n{describe}"
        );
    }
    let table = kubectl_ok(&["get", "sfe", "-n", &ns]);
    assert!(
        table.contains("True")
            && table.contains("Secured")
            && table.contains("REACHABLE")
            && table.contains("10.20.1.10"),
        "{table}"
    );
    // Reads to converge: a full look (8 GETs) at the start and one to confirm Ready; between them,
    // after each long-running operation (2 subnets, the Cosmos rule, the gateway, the Cosmos
    // lockdown) one GET of what it changed (for a subnet its VNet, whose etag both subnets carry),
    // and nothing after a write ARM answered with the resource; and two full looks for the Cosmos
    // firewall's propagation: one when nothing but the site's move into the subnet is left (it
    // waits), one when the wait ends (the reconcile is requeued for then, not polled). Only full
    // looks read the site's private endpoint connections, and only the first, before the gateway
    // exists, the feature registration: the gateway is made before the site's move waits. Then one
    // more full look, the pass that reads the backend-health check the Ready pass started.
    // Operation polls are apart.
    let gets = |kind: &str| {
        requests_by(&emu, OPERATOR_OBJECT, |e| {
            e["method"] == "GET" && e["resourceType"].as_str().unwrap() == kind
        })
    };
    let resource_gets = requests_by(&emu, OPERATOR_OBJECT, |e| {
        e["method"] == "GET" && !e["resourceType"].as_str().unwrap().contains("/operation")
    });
    assert_eq!(
        gets("Microsoft.Features/features"),
        1,
        "full looks before the gateway"
    );
    assert_eq!(gets("Microsoft.Web/sites/privateEndpointConnections"), 5);
    // The VNet: every full look (the only reads of the private endpoint list) and one after each
    // of the 2 subnet operations; never a subnet alone.
    assert_eq!(gets("Microsoft.Network/virtualNetworks/subnets"), 0);
    assert_eq!(
        gets("Microsoft.Network/virtualNetworks"),
        gets("Microsoft.Web/sites/privateEndpointConnections") + 2
    );
    assert_eq!(gets("Microsoft.DocumentDB/databaseAccounts"), 7);
    let health_posts = requests_by(&emu, OPERATOR_OBJECT, |e| {
        e["method"] == "POST"
            && e["resourceType"] == "Microsoft.Network/applicationGateways/backendhealth"
    });
    assert_eq!(health_posts, 1, "one backend-health check");
    // The gateway is WAF_v2 (the default), so every full look also reads its WAF policy (8
    // GETs, not 7); creating the policy is a synchronous PUT whose answer is taken in, so it
    // costs no read of its own.
    assert_eq!(
        gets("Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"),
        gets("Microsoft.Web/sites/privateEndpointConnections")
    );
    assert_eq!(
        resource_gets,
        5 * 8 + 1 + 5,
        "{}",
        rt().block_on(emu.control.stats()).unwrap()
    );
    assert_eq!(
        op.readyz(),
        200,
        "/readyz once the cache is synced\n{}",
        op.logs()
    );
    let metrics = op.metrics().unwrap();
    assert!(metrics.contains("fhirlock_endpoint_ready"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "fhirlock_endpoint_reachable{{namespace=\"{ns}\",name=\"{name}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("fhirlock_arm_requests_total"), "{metrics}");
}

#[test]
fn a_back_door_opened_out_of_band_is_closed_with_an_event_and_last_drift() {
    let _s = serial();
    // The network team made both subnets beforehand: fhirlock adopts them. A subnet's etag is its
    // VNet's, and each subnet write carries it as If-Match, so the first write moves the second
    // subnet's etag too: the second write must be planned on the VNet read back after the first,
    // or ARM refuses it (412) and a full read follows.
    let ns = namespace("e2e-drift");
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let portal = emu.portal().unwrap();
    let subnets = json!({"location": "uksouth", "properties": {
    "addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
    "subnets": [
        {"name": "snet-fhir-agw", "properties": {"addressPrefix": "10.20.1.0/26"}},
        {"name": "snet-fhir-int", "properties": {"addressPrefix": "10.20.2.0/27"}},
    ]}});
    rt().block_on(portal.put(&vnet(), NET, &subnets)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = rt().block_on(portal.get(&vnet(), NET)).unwrap().unwrap();
        if v["properties"]["provisioningState"] == "Succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the VNet stays Updating"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let op = operator(&emu, &tenancy(emu.dir(), &[&ns], None), None, &[]);
    let name = endpoint_in(&emu, &ns, &[]);
    let obj = wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    let subnet_puts = requests_by(&emu, OPERATOR_OBJECT, |e| {
        e["method"] == "PUT" && e["resourceType"] == "Microsoft.Network/virtualNetworks/subnets"
    });
    let refused = requests_by(&emu, OPERATOR_OBJECT, |e| e["status"] == 412);
    assert_eq!(
        (subnet_puts, refused),
        (2, 0),
        "one PUT per adopted subnet, none refused: {}",
        rt().block_on(emu.control.stats()).unwrap()
    );
    assert!(
        !obj["status"]["createdResources"]
            .to_string()
            .contains("/subnets/"),
        "adopted, not created: {}",
        obj["status"]["createdResources"]
    );

    // A person in the portal opens the SCM site to everyone.
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

/// A predicate: the endpoint's Reachable condition has `status`.
fn reachable(status: &'static str) -> impl Fn(&Value) -> bool {
    move |o| condition(o, "Reachable").is_some_and(|c| c["status"] == status)
}

#[test]
fn a_site_that_denies_the_gateway_is_unreachable_with_the_reason_until_fhirlock_puts_its_rule_back()
{
    let _s = serial();
    let World { ns, emu, op, name } =
        world("e2e-reach", 0.01, &["--backend-health-seconds", "2"], &[]);
    wait_for(&op, &ns, &name, READY, "Reachable", reachable("True"));

    // A person in the portal replaces the site's rules, the gateway subnet's allow included;
    // unmatched traffic stays denied, so App Service answers the gateway's probe 403.
    let portal = emu.portal().unwrap();
    let config = format!("{}/config/web", site());
    rt().block_on(portal.patch(
        &config,
        WEB,
        &json!({"properties": {"ipSecurityRestrictions": [], "ipSecurityRestrictionsDefaultAction": "Deny"}}),
    ))
    .unwrap();
    let obj = wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "Reachable False",
        reachable("False"),
    );
    let r = condition(&obj, "Reachable").unwrap();
    assert_eq!(r["reason"], "BackendUnhealthy", "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains("Received:403")
            && message.contains("an access restriction denies the gateway subnet"),
        "{message}"
    );
    // Enforce put the gateway subnet's rule back; the next check finds the FHIR server again.
    wait_for(
        &op,
        &ns,
        &name,
        Duration::from_secs(60),
        "Reachable again",
        reachable("True"),
    );
    let cfg = rt().block_on(portal.get(&config, WEB)).unwrap().unwrap();
    assert!(
        cfg["properties"]["ipSecurityRestrictions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["vnetSubnetResourceId"].is_string() && x["action"] == "Allow"),
        "{cfg}"
    );
    let ev = events(&ns);
    assert!(
        ev.contains("Unreachable") && ev.contains("Received:403"),
        "{ev}"
    );
    assert!(ev.contains("Reachable"), "{ev}");
    // Gone, so that no later test's operator sees a second endpoint naming the same gateway.
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns, "--timeout=60s"]);
}

#[test]
fn audit_mode_reports_findings_and_the_plan_and_never_writes() {
    let _s = serial();
    let audit = [("/spec/mode", json!("Audit"))];
    let World { ns, emu, op, name } = world("e2e-audit", 0.01, &[], &audit);
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
    // Backend health is a POST action: Audit mode does not call it.
    let r = condition(&obj, "Reachable").unwrap();
    assert_eq!(
        (&r["status"], &r["reason"]),
        (&json!("Unknown"), &json!("NotChecked"))
    );
    assert!(r["message"].as_str().unwrap().contains("Audit mode"), "{r}");
    // Let it resync a few times; it must still not write.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(operator_writes(&emu), 0, "Audit mode wrote to Azure");
    assert!(
        rt().block_on(emu.control.operator_requests()).unwrap().0 > 0,
        "Audit mode does read"
    );
    drop(op);
}

#[test]
fn replacing_the_tls_secret_updates_the_gateway_certificate() {
    let _s = serial();
    let World { ns, emu, op, name } = world("e2e-tls", 0.01, &[], &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    let portal = emu.portal().unwrap();
    let tag = |gw: &Value| {
        gw["tags"]["fhirlock-tls"]
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

/// Whether a gateway as ARM holds it has a WAF: the inline configuration or a policy.
fn has_waf(gw: &Value) -> bool {
    let p = &gw["properties"];
    !p["webApplicationFirewallConfiguration"].is_null() || !p["firewallPolicy"]["id"].is_null()
}

#[test]
fn an_inline_waf_gateway_takes_fhirlocks_policy_in_one_put_and_standard_v2_leaves_no_waf() {
    let _s = serial();
    let standard = [
        (
            "/spec/gateway/sku",
            json!({"tier": "Standard_v2", "minCapacity": 1, "maxCapacity": 3}),
        ),
        ("/spec/gateway/waf", Value::Null),
    ];
    // A short resync, so that the end sees full looks after the policy is gone.
    let flags = ["--resync-seconds", "2"];
    let World {
        ns,
        emu,
        mut op,
        name,
    } = world("e2e-waf", 0.01, &flags, &standard);
    wait_for(&op, &ns, &name, READY, "Ready on Standard_v2", is_ready);

    // What the release before WAF policies made of a WAF_v2 spec: the same gateway, owner tag
    // and all, tier WAF_v2 with the inline configuration (OWASP 3.2, Prevention). Planted by
    // another principal while no operator runs.
    op.kill();
    let portal = emu.portal().unwrap();
    let policy = format!(
        "{}/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/agw-fhir-waf",
        fhirlock_tests::emulator::rg("fhir")
    );
    let mut gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
    assert_eq!(gw["tags"]["fhirlock-owner"], json!(format!("{ns}/{name}")));
    gw["properties"]["sku"]["name"] = json!("WAF_v2");
    gw["properties"]["sku"]["tier"] = json!("WAF_v2");
    gw["properties"]["webApplicationFirewallConfiguration"] = json!({"enabled": true,
        "firewallMode": "Prevention", "ruleSetType": "OWASP", "ruleSetVersion": "3.2"});
    rt().block_on(async {
        if let fhirlock_arm::WriteOutcome::Accepted(o) =
            portal.put(&gateway(), NET, &gw).await.unwrap()
        {
            while !matches!(
                portal.poll(&o).await.unwrap(),
                fhirlock_arm::OperationStatus::Succeeded
            ) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // The new release, the spec on WAF_v2 (the example: fhirlock's policy, Prevention). Someone
    // reads the gateway all through the migration: it never shows without a WAF.
    endpoint_in(&emu, &ns, &[]);
    rt().block_on(emu.control.reset_stats()).unwrap();
    rt().block_on(emu.control.call("DELETE", "/_emulator/requests", None))
        .unwrap();
    op.restart().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let samples = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap());
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        let obj = wait_for(
            &op,
            &ns,
            &name,
            READY,
            "Ready on fhirlock's policy",
            is_ready,
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            obj["status"]["createdResources"]
                .as_array()
                .unwrap()
                .contains(&json!(policy)),
            "{}",
            obj["status"]["createdResources"]
        );
        sampler.join().unwrap()
    });
    assert!(samples.len() > 2, "{} samples", samples.len());
    for gw in &samples {
        assert!(has_waf(gw), "a gateway without a WAF: {gw}");
    }
    let end = &samples.last().unwrap()["properties"];
    assert_eq!(
        end["firewallPolicy"]["id"].as_str().map(str::to_lowercase),
        Some(policy.to_lowercase())
    );
    assert!(
        end["webApplicationFirewallConfiguration"].is_null(),
        "{end}"
    );
    // Exactly one gateway PUT: it attaches the policy and drops the inline block at once, after
    // the policy exists.
    assert_eq!(gateway_puts(&emu, OPERATOR_OBJECT), 1);
    let log = super::deployment::recorded(&emu);
    let ours = |method: &str, path: &str| -> Vec<&Value> {
        log.iter()
            .filter(|r| r["principal"] == OPERATOR_OBJECT && r["method"] == method)
            .filter(|r| r["path"].as_str().unwrap().eq_ignore_ascii_case(path))
            .collect()
    };
    let gw_puts = ours("PUT", &gateway());
    let policy_puts = ours("PUT", &policy);
    assert_eq!((gw_puts.len(), policy_puts.len()), (1, 1), "{log:?}");
    assert!(policy_puts[0]["seq"].as_u64() < gw_puts[0]["seq"].as_u64());
    let body = &gw_puts[0]["body"];
    assert!(has_waf(body), "{body}");
    assert!(body["properties"]["webApplicationFirewallConfiguration"].is_null());
    assert_eq!(body["properties"]["forceFirewallPolicyAssociation"], true);
    assert_eq!(
        policy_puts[0]["body"]["properties"]["managedRules"]["managedRuleSets"],
        json!([{"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.2"}])
    );

    // Back to Standard_v2: no WAF on the gateway, fhirlock's policy deleted once it is unused,
    // and forgotten: status no longer records it, so no look reads it again.
    rt().block_on(emu.control.call("DELETE", "/_emulator/requests", None))
        .unwrap();
    endpoint_in(&emu, &ns, &standard);
    let forgotten = |o: &Value| {
        is_ready(o)
            && !o["status"]["createdResources"]
                .to_string()
                .contains("agw-fhir-waf")
    };
    wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Standard_v2, the policy forgotten",
        forgotten,
    );
    let gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
    assert_eq!(gw["properties"]["sku"]["tier"], "Standard_v2");
    assert!(!has_waf(&gw), "a WAF remnant: {}", gw["properties"]);
    assert!(
        rt().block_on(portal.get(&policy, NET)).unwrap().is_none(),
        "the policy is left"
    );
    let log = super::deployment::recorded(&emu);
    let ours = |method: &str, path: &str| -> Vec<u64> {
        log.iter()
            .filter(|r| r["principal"] == OPERATOR_OBJECT && r["method"] == method)
            .filter(|r| r["path"].as_str().unwrap().eq_ignore_ascii_case(path))
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    let (gw_puts, deletes) = (ours("PUT", &gateway()), ours("DELETE", &policy));
    assert_eq!((gw_puts.len(), deletes.len()), (1, 1), "{log:?}");
    assert!(gw_puts[0] < deletes[0], "the gateway lets go first");
    // From here on, full looks (a resync every 2 s) never read the deleted policy.
    rt().block_on(emu.control.reset_stats()).unwrap();
    let vnet_gets = || {
        requests_by(&emu, OPERATOR_OBJECT, |e| {
            e["method"] == "GET" && e["resourceType"] == "Microsoft.Network/virtualNetworks"
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while vnet_gets() < 3 {
        assert!(std::time::Instant::now() < deadline, "no full looks");
        std::thread::sleep(Duration::from_millis(200));
    }
    let policy_gets = requests_by(&emu, OPERATOR_OBJECT, |e| {
        e["method"] == "GET"
            && e["resourceType"]
                == "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
    });
    assert_eq!(
        policy_gets,
        0,
        "{}",
        rt().block_on(emu.control.stats()).unwrap()
    );
}
