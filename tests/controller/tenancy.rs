//! What a namespace may do in Azure and as whom: scopes, identity Secrets and workload identity.

use super::*;

#[test]
fn an_endpoint_outside_its_namespace_scopes_stalls_with_zero_azure_calls() {
    let _s = serial();
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
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
    let op = operator(&emu, &cfg, None, &[]);
    let name = endpoint_in(&emu, &ns_out, &[]);
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
    let example = fhirlock_testkit::example("fhir-endpoint.yaml").unwrap();
    let mut spec = example["spec"].clone();
    spec["identityRef"] = json!({"name": "fhir-azure"});
    let name = endpoint_in(&emu, &ns_ok, &[("/spec", spec)]);
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
        &format!("--from-literal=tenantId={TENANT}"),
    ]);
    let message = stalled_for("InvalidIdentity");
    assert!(message.contains("needs tenantId and clientId"), "{message}");

    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rt().block_on(emu.control.operator_requests()).unwrap(),
        (0, 0, 0),
        "an endpoint stalled before Azure caused Azure calls"
    );
    drop(op);
}

#[test]
fn workload_identity_uses_a_real_service_account_token_verified_against_the_apiserver_keys() {
    let _s = serial();
    let ns = namespace("e2e-wi");
    let plane = plane();
    kubectl_ok(&["create", "serviceaccount", "fhir-azure", "-n", &ns]);
    // The emulator trusts the apiserver as a federated issuer: its JWKS, read from the apiserver.
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let mut cfg = fhirlock_testkit::example("arm-emulator-estate.yaml").unwrap();
    let outsider = OUTSIDER_OBJECT;
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
    let emu = emulator(cfg_path.to_str().unwrap(), 0.01);

    let identity = json!({"workloadIdentity": {"tenantId": TENANT, "clientId": OUTSIDER_CLIENT, "serviceAccount": "fhir-azure"}});
    let op = operator(&emu, &tenancy(emu.dir(), &[&ns], Some(identity)), None, &[]);
    let name = endpoint_in(&emu, &ns, &[]);
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
        writes_by(&emu, OPERATOR_OBJECT),
        0,
        "the operator's own identity was used"
    );

    // Another namespace cannot borrow it: its ServiceAccount's token has another subject.
    let other = namespace("e2e-wi-other");
    kubectl_ok(&["create", "serviceaccount", "fhir-azure", "-n", &other]);
    drop(op);
    let identity = json!({"workloadIdentity": {"tenantId": TENANT, "clientId": OUTSIDER_CLIENT, "serviceAccount": "fhir-azure"}});
    let op = operator(
        &emu,
        &tenancy(emu.dir(), &[&other], Some(identity)),
        None,
        &[],
    );
    let name = endpoint_in(&emu, &other, &[]);
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
