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
            {"namespace": ns_ok, "scopes": [format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir"), format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/hscn-net")], "identity": {"operator": {}},
             "identityRef": {"clientSecrets": true}},
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

    // In scope, allowed to name identity Secrets, but its identityRef names a Secret that is
    // missing, then one without clientId.
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

/// The Secret a client-secret tenant names (key `clientSecret`).
const SP_SECRET: &str = "fhir-azure-sp";

/// A tenancy entry for `ns`: the estate's two resource groups, as `identity`.
fn tenant_entry(ns: &str, identity: Value) -> Value {
    json!({"namespace": ns, "identity": identity, "scopes": [
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/fhir"),
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/hscn-net"),
    ]})
}

/// A tenancy file with these entries, in the emulator's directory.
fn tenancy_file(emu: &Emulator, name: &str, tenants: &[Value]) -> std::path::PathBuf {
    let path = emu.dir().join(name);
    std::fs::write(
        &path,
        serde_yaml::to_string(&json!({ "tenants": tenants })).unwrap(),
    )
    .unwrap();
    path
}

/// The tenant acts as the outsider, whose client secret is in the Secret [`SP_SECRET`]; the
/// outsider may do anything in the subscription.
fn client_secret_tenant(emu: &Emulator, ns: &str) -> Value {
    rt().block_on(emu.control.assign_role(
        OUTSIDER_OBJECT,
        &format!("/subscriptions/{SUBSCRIPTION}"),
        &["*"],
    ))
    .unwrap();
    tenant_entry(
        ns,
        json!({"clientSecret": {"tenantId": TENANT, "clientId": OUTSIDER_CLIENT, "secretName": SP_SECRET}}),
    )
}

/// Waits until the endpoint is Stalled with `reason` and a message containing `text`; the message.
fn stalled(op: &Operator, ns: &str, name: &str, reason: &str, text: &str) -> String {
    let obj = wait_for(
        op,
        ns,
        name,
        Duration::from_secs(60),
        &format!("Stalled {reason} ({text})"),
        |o| {
            condition(o, "Stalled").is_some_and(|c| {
                c["status"] == "True"
                    && c["reason"] == reason
                    && c["message"].as_str().unwrap_or("").contains(text)
            })
        },
    );
    assert_eq!(condition(&obj, "Ready").unwrap()["status"], "False");
    condition(&obj, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// ARM requests the emulator counted, by every principal.
fn azure_calls(emu: &Emulator) -> Value {
    let stats = rt().block_on(emu.control.stats()).unwrap();
    json!({"total": stats["total"], "byPrincipal": stats["byPrincipal"]})
}

fn no_azure_calls() -> Value {
    json!({"total": 0, "byPrincipal": {}})
}

/// The endpoint's TLS Secret `fhir-tls` holding a self-signed certificate for `names`, valid
/// for `days`, created or replaced in place (a change the Secret watch reports).
fn put_tls_secret(emu: &Emulator, ns: &str, names: &[&str], days: i64) {
    let (cert, key) = testenv::self_signed_until(names, days).unwrap();
    let file = emu.dir().join(format!("fhir-tls-{ns}.json"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "fhir-tls", "namespace": ns},
        "stringData": {"tls.crt": cert, "tls.key": key}});
    std::fs::write(&file, secret.to_string()).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

#[test]
fn a_wrong_certificate_and_a_missing_client_secret_stall_and_each_fixed_secret_wakes_the_endpoint()
{
    let _s = serial();
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let ns = namespace("e2e-tenant-secret");
    let cfg = tenancy_file(
        &emu,
        "tenancy-secret.yaml",
        &[client_secret_tenant(&emu, &ns)],
    );
    // A resync far beyond the test: once stalled, only a watch event can wake the endpoint.
    let op = operator(&emu, &cfg, None, &["--resync-seconds", "3600"]);
    // The listener certificate is for another host: refused before anything else.
    put_tls_secret(
        &emu,
        &ns,
        &["other.trust.nhs.uk", "*.fhir.trust.nhs.uk"],
        90,
    );
    let name = apply_endpoint(&ns, emu.dir(), &[]);
    let message = stalled(
        &op,
        &ns,
        &name,
        "CertificateHostMismatch",
        "not spec.gateway.hostName fhir.trust.nhs.uk",
    );
    assert!(
        message.contains(&format!("Secret {ns}/fhir-tls"))
            && message.contains("other.trust.nhs.uk, *.fhir.trust.nhs.uk"),
        "{message}"
    );
    assert_eq!(azure_calls(&emu), no_azure_calls(), "stalled before Azure");

    // A wildcard one label deep covers the host; it expires in 10 days. The Secret's change
    // wakes the endpoint, which now stalls on its missing identity Secret.
    put_tls_secret(&emu, &ns, &["*.trust.nhs.uk"], 10);
    stalled(
        &op,
        &ns,
        &name,
        "IdentityNotFound",
        &format!("Secret {ns}/{SP_SECRET} does not exist"),
    );
    assert_eq!(azure_calls(&emu), no_azure_calls(), "stalled before Azure");

    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        SP_SECRET,
        "-n",
        &ns,
        &format!("--from-literal=clientSecret={OUTSIDER_SECRET}"),
    ]);
    let obj = wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready once the tenant's Secret exists",
        is_ready,
    );
    assert!(
        writes_by(&emu, OUTSIDER_OBJECT) > 0,
        "the tenant's identity made the writes"
    );
    assert_eq!(writes_by(&emu, OPERATOR_OBJECT), 0);

    // The expiry, three ways: status, the gauge, and one Warning (the passes to Ready are
    // several, the Warning is once a day).
    let not_after = obj["status"]["gateway"]["certificateNotAfter"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificateNotAfter: {}", obj["status"]));
    let not_after: k8s_openapi::jiff::Timestamp = not_after.parse().unwrap();
    let left = not_after.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
    assert!((9 * 86_400..=10 * 86_400).contains(&left), "{not_after}");
    let metrics = op.metrics().unwrap();
    let gauge = fhirlock_testkit::operator::samples(
        &metrics,
        "fhirlock_certificate_expiry_timestamp_seconds",
    );
    let labels = format!("namespace=\"{ns}\",name=\"{name}\"");
    assert_eq!(gauge, vec![(labels.as_str(), not_after.as_second() as f64)]);
    let warnings: Vec<String> = events(&ns)
        .lines()
        .filter(|l| l.starts_with("CertificateExpiresSoon"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("expires in 9 days"), "{warnings:?}");
    // Gone, so that later tests' endpoints on the same gateway do not conflict with it.
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns, "--timeout=60s"]);
}

#[test]
fn a_tenant_given_the_managed_identity_acts_as_it_and_no_other() {
    let _s = serial();
    // The host's managed identity is the outsider, served at App Service's endpoint.
    let mut cfg = fhirlock_testkit::example("arm-emulator-estate.yaml").unwrap();
    cfg["managedIdentity"] = json!({"systemAssigned": OUTSIDER_CLIENT});
    cfg["roleAssignments"].as_array_mut().unwrap().push(json!({"principal": OUTSIDER_OBJECT, "scope": format!("/subscriptions/{SUBSCRIPTION}"), "actions": ["*"]}));
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("emulator.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let emu = emulator(cfg_path.to_str().unwrap(), 0.01);
    let ns = namespace("e2e-mi");
    let tenancy = tenancy_file(
        &emu,
        "tenancy-mi.yaml",
        &[tenant_entry(&ns, json!({"managedIdentity": {}}))],
    );
    let endpoint = format!("{}/msi/token", emu.ready.arm_endpoint);
    let op = operator_with_env(
        &emu,
        &tenancy,
        &[],
        &[
            ("IDENTITY_ENDPOINT", &endpoint),
            // The emulator's default managedIdentity.header.
            ("IDENTITY_HEADER", "fhirlock-dev-identity-header"),
        ],
    );
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(
        &op,
        &ns,
        &name,
        READY,
        "Ready with the managed identity",
        is_ready,
    );
    assert!(
        writes_by(&emu, OUTSIDER_OBJECT) > 0,
        "the managed identity made the writes"
    );
    assert_eq!(
        writes_by(&emu, OPERATOR_OBJECT),
        0,
        "the operator's own identity was used"
    );
    kubectl_ok(&["delete", "sfe", &name, "-n", &ns, "--timeout=60s"]);
}

/// `fhirlock_endpoint_ready` of one endpoint, waited for until it is `want`.
fn wait_ready_metric(op: &Operator, ns: &str, name: &str, want: f64, why: &str) {
    let labels = format!("namespace=\"{ns}\",name=\"{name}\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = op.metrics().unwrap();
        let now = fhirlock_testkit::operator::samples(&metrics, "fhirlock_endpoint_ready")
            .into_iter()
            .find(|(l, _)| *l == labels)
            .map(|(_, v)| v);
        if now == Some(want) {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{why}: fhirlock_endpoint_ready{{{labels}}} is {now:?}, not {want}\noperator log tail:\n{}",
                fhirlock_tests::operator::tail(&op.logs(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_stall_sets_fhirlock_endpoint_ready_to_zero() {
    let _s = serial();
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let ns = namespace("e2e-stall-metric");
    let cfg = tenancy_file(
        &emu,
        "tenancy-metric.yaml",
        &[client_secret_tenant(&emu, &ns)],
    );
    let secret = |value: &str| {
        kubectl_ok(&[
            "patch",
            "secret",
            SP_SECRET,
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &json!({"stringData": {"clientSecret": value}}).to_string(),
        ])
    };
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        SP_SECRET,
        "-n",
        &ns,
        &format!("--from-literal=clientSecret={OUTSIDER_SECRET}"),
    ]);
    let op = operator(&emu, &cfg, None, &[]);
    let name = endpoint_in(&emu, &ns, &[]);
    wait_for(&op, &ns, &name, READY, "Ready", is_ready);
    wait_ready_metric(&op, &ns, &name, 1.0, "Ready");

    // The client secret stops working (as when it expires): Entra refuses it, a stall after
    // the ARM call failed.
    secret("expired-secret");
    stalled(&op, &ns, &name, "AuthorizationFailed", "");
    wait_ready_metric(&op, &ns, &name, 0.0, "refused by Entra");

    secret(OUTSIDER_SECRET);
    wait_for(&op, &ns, &name, READY, "Ready again", is_ready);
    wait_ready_metric(&op, &ns, &name, 1.0, "Ready again");

    // The Secret is deleted: a stall before any Azure call.
    kubectl_ok(&["delete", "secret", SP_SECRET, "-n", &ns]);
    stalled(&op, &ns, &name, "IdentityNotFound", SP_SECRET);
    wait_ready_metric(&op, &ns, &name, 0.0, "Secret deleted");
}

/// `examples/fhir-endpoint.yaml` in `ns`, naming the identity Secret `secret` in
/// `spec.identityRef`.
fn endpoint_with_identity_ref(emu: &Emulator, ns: &str, secret: &str) -> String {
    let mut spec = fhirlock_testkit::example("fhir-endpoint.yaml").unwrap()["spec"].clone();
    spec["identityRef"] = json!({ "name": secret });
    endpoint_in(emu, ns, &[("/spec", spec)])
}

#[test]
fn identity_ref_is_refused_unless_the_tenant_allows_it_and_names_the_service_account() {
    let _s = serial();
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    // The outsider may do anything: an identity Secret with its credentials would work.
    rt().block_on(emu.control.assign_role(
        OUTSIDER_OBJECT,
        &format!("/subscriptions/{SUBSCRIPTION}"),
        &["*"],
    ))
    .unwrap();
    let (off, listed) = (namespace("e2e-idref-off"), namespace("e2e-idref-sa"));
    let mut allowlist = tenant_entry(&listed, json!({"operator": {}}));
    allowlist["identityRef"] = json!({"serviceAccounts": ["fhir-azure"]});
    let cfg = tenancy_file(
        &emu,
        "tenancy-identity-ref.yaml",
        &[tenant_entry(&off, json!({"operator": {}})), allowlist],
    );
    let op = operator(&emu, &cfg, None, &[]);
    let identity_secret = |ns: &str, pairs: &[(&str, &str)]| {
        let mut args = vec![
            "create".to_owned(),
            "secret".into(),
            "generic".into(),
            "team-identity".into(),
            "-n".into(),
            ns.into(),
        ];
        args.extend(pairs.iter().map(|(k, v)| format!("--from-literal={k}={v}")));
        kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };

    // A tenant that never opted in: working credentials in the Secret change nothing.
    identity_secret(
        &off,
        &[
            ("tenantId", TENANT),
            ("clientId", OUTSIDER_CLIENT),
            ("clientSecret", OUTSIDER_SECRET),
        ],
    );
    let name_off = endpoint_with_identity_ref(&emu, &off, "team-identity");
    stalled(
        &op,
        &off,
        &name_off,
        "IdentityRefNotAllowed",
        &format!("namespace {off} may not name its own identity"),
    );

    // A tenant that lists ServiceAccount fhir-azure: a Secret naming another one is refused, and
    // so is a client secret.
    for sa in ["fhir-azure", "other"] {
        kubectl_ok(&["create", "serviceaccount", sa, "-n", &listed]);
    }
    identity_secret(
        &listed,
        &[
            ("tenantId", TENANT),
            ("clientId", OUTSIDER_CLIENT),
            ("serviceAccount", "other"),
        ],
    );
    let name = endpoint_with_identity_ref(&emu, &listed, "team-identity");
    stalled(
        &op,
        &listed,
        &name,
        "IdentityRefNotAllowed",
        "ServiceAccount other is not one spec.identityRef may use in this namespace (allowed: fhir-azure)",
    );
    let patch = |p: Value| {
        kubectl_ok(&[
            "patch",
            "secret",
            "team-identity",
            "-n",
            &listed,
            "--type=merge",
            "-p",
            &p.to_string(),
        ])
    };
    patch(json!({"stringData": {"clientSecret": OUTSIDER_SECRET}}));
    stalled(
        &op,
        &listed,
        &name,
        "IdentityRefNotAllowed",
        "client secrets in spec.identityRef are not allowed",
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        azure_calls(&emu),
        no_azure_calls(),
        "a refused identityRef caused Azure calls"
    );
    // Both still refused after resyncs.
    stalled(&op, &off, &name_off, "IdentityRefNotAllowed", "");

    // The listed ServiceAccount passes the gate: fhirlock mints its token and Entra, which has
    // no federated credential for it, refuses the exchange.
    patch(json!({"data": {"clientSecret": null}, "stringData": {"serviceAccount": "fhir-azure"}}));
    stalled(&op, &listed, &name, "AuthorizationFailed", "");
}
