//! `spec.appService.hostHeader: Preserve` end to end: the stall on the domain-verification TXT
//! record, the binding and the gateway passing the host through, a renewed Secret (a new App
//! Service certificate, the binding moved to it, the old one deleted), and the teardown's order.

use super::*;

#[test]
fn preserve_stalls_on_the_txt_record_then_binds_the_host_and_passes_it_through() {
    let _s = serial();
    let preserve = [
        (
            "/spec/appService",
            json!({"id": site(), "scmSite": "LockedLikeMain", "hostHeader": "Preserve"}),
        ),
        (
            // The host name does not depend on the tier; Standard_v2 keeps the WAF out of this test.
            "/spec/gateway/sku",
            json!({"tier": "Standard_v2", "minCapacity": 1, "maxCapacity": 3}),
        ),
        // Admission allows spec.gateway.waf only with WAF_v2.
        ("/spec/gateway/waf", Value::Null),
        // The end deletes the endpoint: what Preserve created goes with it.
        ("/spec/deletionPolicy", json!("Delete")),
    ];
    // A short resync: Azure says whether the record exists only by accepting the binding, and
    // fhirlock tries it again once per resync.
    let World { ns, emu, op, name } =
        world("e2e-host", 0.01, &["--resync-seconds", "3"], &preserve);
    let portal = emu.portal().unwrap();
    let site_body = rt().block_on(portal.get(&site(), WEB)).unwrap().unwrap();
    let verification = site_body["properties"]["customDomainVerificationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = format!("TXT record asuid.fhir.trust.nhs.uk with the value {verification}");
    let obj = wait_for(&op, &ns, &name, READY, "a stall on the TXT record", |o| {
        condition(o, "Stalled").is_some_and(|c| c["reason"] == "HostNameNotVerified")
    });
    let steps = obj["status"]["nextSteps"].to_string();
    assert!(steps.contains(&record), "{steps}");
    assert!(
        condition(&obj, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("asuid.fhir.trust.nhs.uk"),
        "{obj}"
    );
    // Everything else is locked down meanwhile; the gateway still overrides the host.
    let gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
    assert_eq!(
        gw["properties"]["backendHttpSettingsCollection"][0]["properties"]["pickHostNameFromBackendAddress"],
        true
    );

    // NHS England's DNS team creates the record.
    rt().block_on(emu.control.call(
        "POST",
        "/_emulator/dns",
        Some(json!({"name": "asuid.fhir.trust.nhs.uk", "type": "TXT", "value": verification})),
    ))
    .unwrap();
    let obj = wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready with the host bound",
        is_ready,
    );
    assert!(
        !obj["status"]["nextSteps"].to_string().contains("asuid."),
        "{obj}"
    );
    let binding = rt()
        .block_on(portal.get(
            &format!("{}/hostNameBindings/fhir.trust.nhs.uk", site()),
            WEB,
        ))
        .unwrap()
        .expect("the binding");
    // One certificate resource per Secret: its name carries the Secret's fingerprint.
    let cert_of = |obj: &Value| -> String {
        obj["status"]["createdResources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .rfind(|c| c.contains("/certificates/fhir-server-fhir-trust-nhs-uk-"))
            .unwrap_or_else(|| panic!("a certificate recorded: {obj}"))
            .to_owned()
    };
    let cert_id = cert_of(&obj);
    let cert = rt()
        .block_on(portal.get(&cert_id, WEB))
        .unwrap()
        .expect("the certificate");
    assert_eq!(binding["properties"]["sslState"], "SniEnabled");
    assert_eq!(
        binding["properties"]["thumbprint"],
        cert["properties"]["thumbprint"]
    );
    let gw = rt().block_on(portal.get(&gateway(), NET)).unwrap().unwrap();
    let p = &gw["properties"];
    assert_eq!(
        p["backendHttpSettingsCollection"][0]["properties"]["pickHostNameFromBackendAddress"],
        false
    );
    assert!(p["backendHttpSettingsCollection"][0]["properties"]["hostName"].is_null());
    assert_eq!(p["probes"][0]["properties"]["host"], "fhir.trust.nhs.uk");
    assert_eq!(
        p["probes"][0]["properties"]["pickHostNameFromBackendHttpSettings"],
        false
    );
    let created = obj["status"]["createdResources"].to_string();
    assert!(
        created.contains("hostNameBindings/fhir.trust.nhs.uk")
            && created.contains("certificates/fhir-server-fhir-trust-nhs-uk"),
        "recorded before their PUTs: {created}"
    );

    // cert-manager renews the Secret: a new certificate beside the old one, the binding moved to
    // it, then the old one deleted (Azure refuses to replace a certificate a binding uses).
    rt().block_on(emu.control.call("DELETE", "/_emulator/requests", None))
        .unwrap();
    let renewed = emu.dir().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    tls_secret(&ns, "fhir-tls", "fhir.trust.nhs.uk", &renewed);
    let old_cert = cert_id;
    let binding_id = format!("{}/hostNameBindings/fhir.trust.nhs.uk", site());
    let obj = wait_for(&op, &ns, &name, READY, "the old certificate gone", |o| {
        is_ready(o)
            && !o["status"]["createdResources"]
                .to_string()
                .contains(&old_cert)
    });
    let cert_id = cert_of(&obj);
    assert_ne!(cert_id, old_cert);
    let (binding, cert) = rt().block_on(async {
        assert!(
            portal.get(&old_cert, WEB).await.unwrap().is_none(),
            "old certificate deleted"
        );
        (
            portal
                .get(&binding_id, WEB)
                .await
                .unwrap()
                .expect("the binding"),
            portal
                .get(&cert_id, WEB)
                .await
                .unwrap()
                .expect("the renewed certificate"),
        )
    });
    assert_eq!(
        binding["properties"]["thumbprint"],
        cert["properties"]["thumbprint"]
    );
    let log = rt()
        .block_on(emu.control.call("GET", "/_emulator/requests", None))
        .unwrap();
    let writes: Vec<(String, String, Value)> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["principal"] == OPERATOR_OBJECT && r["method"] != "GET")
        .filter(|r| {
            let t = r["resourceType"].as_str().unwrap_or_default();
            t.eq_ignore_ascii_case("Microsoft.Web/certificates")
                || t.eq_ignore_ascii_case("Microsoft.Web/sites/hostNameBindings")
        })
        .map(|r| {
            assert!(
                r["status"].as_u64().is_some_and(|s| s < 300),
                "refused: {r}"
            );
            let thumb = r["body"]["properties"]["thumbprint"].clone();
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                thumb,
            )
        })
        .collect();
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let new_cert_put = writes
        .iter()
        .position(|(m, p, _)| m == "PUT" && same(p, &cert_id));
    let moved = writes.iter().position(|(m, p, t)| {
        m == "PUT" && same(p, &binding_id) && *t == cert["properties"]["thumbprint"]
    });
    let old_deleted = writes
        .iter()
        .position(|(m, p, _)| m == "DELETE" && same(p, &old_cert));
    assert!(
        new_cert_put.is_some() && new_cert_put < moved && moved < old_deleted,
        "new certificate, binding moved, old certificate deleted: {writes:?}"
    );
    assert!(
        !writes
            .iter()
            .any(|(m, p, _)| m == "PUT" && same(p, &old_cert)),
        "the bound certificate is never replaced: {writes:?}"
    );

    let site_before = rt().block_on(portal.get(&site(), WEB)).unwrap().unwrap();
    assert!(
        site_before["properties"]["hostNames"]
            .to_string()
            .contains("fhir.trust.nhs.uk"),
        "{site_before}"
    );

    // deletionPolicy Delete: the gateway, then the binding, then the certificate.
    rt().block_on(emu.control.call("DELETE", "/_emulator/requests", None))
        .unwrap();
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns, "--timeout=120s"]);
    rt().block_on(async {
        assert!(portal.get(&gateway(), NET).await.unwrap().is_none());
        assert!(
            portal.get(&binding_id, WEB).await.unwrap().is_none(),
            "the binding fhirlock created is gone"
        );
        assert!(
            portal.get(&cert_id, WEB).await.unwrap().is_none(),
            "the certificate fhirlock uploaded is gone"
        );
    });
    let log = rt()
        .block_on(emu.control.call("GET", "/_emulator/requests", None))
        .unwrap();
    let deletes: Vec<&str> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "DELETE" && r["principal"] == OPERATOR_OBJECT)
        .filter(|r| r["status"].as_u64().is_some_and(|s| s < 300))
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    let at = |t: &str| deletes.iter().position(|x| x.eq_ignore_ascii_case(t));
    let (gw, bind, cert) = (
        at("Microsoft.Network/applicationGateways"),
        at("Microsoft.Web/sites/hostNameBindings"),
        at("Microsoft.Web/certificates"),
    );
    assert!(
        gw.is_some() && gw < bind && bind < cert,
        "gateway, binding, certificate: {deletes:?}"
    );
    // The site itself stays as it was, but for the host name it no longer serves and the VNet
    // integration the teardown ends.
    let site_after = rt()
        .block_on(portal.get(&site(), WEB))
        .unwrap()
        .expect("the site is never deleted");
    for f in [
        "serverFarmId",
        "httpsOnly",
        "customDomainVerificationId",
        "defaultHostName",
        "publicNetworkAccess",
    ] {
        assert_eq!(
            site_after["properties"][f], site_before["properties"][f],
            "{f}"
        );
    }
    assert_eq!(
        site_after["properties"]["hostNames"],
        json!(["fhir-server.azurewebsites.net"])
    );
    assert_eq!(site_after["tags"], site_before["tags"]);
}
