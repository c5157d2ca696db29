//! `fhirlock audit | plan | apply` against the emulator seeded with a wide-open FHIR estate
//! (`examples/arm-emulator-estate.yaml`), each binary a separate process, as a user runs them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fhirlock_arm::{ArmClient, WriteOutcome};
use fhirlock_testkit::emulator::requests;
use fhirlock_tests::emulator::{
    Emulator, OPERATOR_OBJECT, OUTSIDER_CLIENT, OUTSIDER_OBJECT, OUTSIDER_SECRET, cosmos, emulator,
    fhirlock, fhirlock_command, gateway, outcome, rg, site, vnet,
};
use serde_json::{Value, json};

const NET: &str = "2025-01-01";
const WEB: &str = "2024-11-01";
const COSMOS: &str = "2025-04-15";

/// A self-signed certificate for the listener, as PEM files.
fn tls_files(emu: &Emulator) -> (PathBuf, PathBuf) {
    let (cert, key) = testenv::self_signed("fhir.trust.nhs.uk").unwrap();
    let (c, k) = (emu.dir().join("tls.crt"), emu.dir().join("tls.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

fn apply_args<'a>(file: &'a str, tls: &'a (PathBuf, PathBuf)) -> Vec<&'a str> {
    vec![
        "apply",
        "-f",
        file,
        "--tls-cert",
        tls.0.to_str().unwrap(),
        "--tls-key",
        tls.1.to_str().unwrap(),
        "--timeout-seconds",
        "300",
    ]
}

/// A PATCH by someone else (the portal user), waited for.
async fn patch(portal: &ArmClient, id: &str, api: &str, body: &Value) {
    settle(portal, portal.patch(id, api, body).await.unwrap()).await;
}

/// Waits for a long-running write by someone else (the portal user) to finish.
async fn settle(arm: &ArmClient, outcome: WriteOutcome) {
    if let WriteOutcome::Accepted(op) = outcome {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match arm.poll(&op).await.unwrap() {
                fhirlock_arm::OperationStatus::InProgress { .. } => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                fhirlock_arm::OperationStatus::Succeeded => return,
                fhirlock_arm::OperationStatus::Failed(e) => panic!("{e}"),
            }
        }
        panic!("operation did not finish");
    }
}

/// The oracle's verdict once Cosmos firewall changes have reached the data plane.
async fn settled_exposure(emu: &Emulator) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = emu.control.exposure().await.unwrap();
        let pending = e["cosmos"]
            .as_object()
            .unwrap()
            .values()
            .any(|c| c["dataPlane"]["pendingFirewallChange"] == true);
        if !pending || Instant::now() > deadline {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn sources(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v["reachableFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_owned())
        .collect();
    s.sort();
    s
}

#[tokio::test]
async fn audit_lists_the_back_doors_apply_closes_them_and_the_oracle_agrees() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let portal = emu.portal().unwrap();
    // Someone also lowered the TLS floor in the portal.
    patch(
        &portal,
        &format!("{}/config/web", site()),
        WEB,
        &json!({"properties": {"minTlsVersion": "1.0"}}),
    )
    .await;

    let (code, out, err) = fhirlock(
        &emu,
        &["audit", "-f", "examples/fhir-endpoint.yaml", "-o", "json"],
    );
    assert_eq!(code, 1, "audit of a wide-open estate exits 1: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    codes.sort();
    codes.dedup();
    for expected in [
        "SiteAllowsOtherSources",
        "SiteDefaultAllow",
        "ScmSitePublic",
        "SiteNotVnetIntegrated",
        "HttpsOnlyDisabled",
        "MinTlsBelow12",
        "FtpEnabled",
        "GatewaySubnetMissingWebEndpoint",
        "IntegrationSubnetMissingCosmosEndpoint",
        "CosmosVnetFilterOff",
        "CosmosIpRule",
        "CosmosAzureServicesBypass",
        "CosmosKeyAuthEnabled",
    ] {
        assert!(
            codes.contains(&expected),
            "{expected} missing from {codes:?}"
        );
    }
    let (_, table, _) = fhirlock(&emu, &["audit", "-f", "examples/fhir-endpoint.yaml"]);
    assert!(
        table.contains("SiteDefaultAllow") && table.contains("blocking"),
        "{table}"
    );
    let (_, sarif, _) = fhirlock(
        &emu,
        &["audit", "-f", "examples/fhir-endpoint.yaml", "-o", "sarif"],
    );
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ruleId"] == "ScmSitePublic" && r["level"] == "error")
    );

    let (code, plan, _) = fhirlock(
        &emu,
        &["plan", "-f", "examples/fhir-endpoint.yaml", "-o", "json"],
    );
    let plan: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(
        code, 2,
        "without a certificate the gateway cannot be created, and plan says so"
    );
    assert_eq!(plan["preflight"][0]["code"], "CertificateUnavailable");

    let tls = tls_files(&emu);
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0, "apply failed:\n{out}\n{err}");
    assert!(out.contains("converged"), "{out}");

    let (code, out, _) = fhirlock(&emu, &["audit", "-f", "examples/fhir-endpoint.yaml"]);
    assert_eq!(code, 0, "after apply only advisory findings remain:\n{out}");

    let e = settled_exposure(&emu).await;
    let gw_subnet = format!("subnet:{}/subnets/snet-fhir-agw", vnet());
    let int_subnet = format!("subnet:{}/subnets/snet-fhir-int", vnet());
    let frontend = format!(
        "frontend:{}/frontendIPConfigurations/private-frontend",
        gateway()
    );
    let site_e = &e["sites"][site()];
    assert_eq!(
        sources(&site_e["main"]),
        vec![frontend.clone(), gw_subnet.clone()]
    );
    assert_eq!(sources(&site_e["scm"]), vec![gw_subnet.clone()]);
    assert_eq!(site_e["main"]["internetDirect"], false);
    assert_eq!(site_e["main"]["internetViaGateway"], false);
    assert_eq!(
        sources(&e["cosmos"][cosmos()]["dataPlane"]),
        vec![int_subnet]
    );
}

#[tokio::test]
async fn a_second_apply_on_a_converged_estate_only_reads() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let tls = tls_files(&emu);
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0, "{out}\n{err}");
    emu.control.reset_stats().await.unwrap();
    let (code, out, _) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0);
    assert!(out.contains("converged: 0 write(s)"), "{out}");
    // VNet, gateway, site, its private endpoint connections, config/web, Cosmos, the plan: 7
    // reads, and the example's tier is WAF_v2, so its WAF policy: 8. Not the feature
    // registration: it matters only to create the gateway, which exists.
    assert_eq!(emu.control.operator_requests().await.unwrap(), (8, 0, 0));
}

#[tokio::test]
async fn an_identity_with_resource_group_roles_only_works_once_the_gateway_exists() {
    // The least-privilege setup: roles on the resource groups, none on the subscription, where
    // the feature registration lives (ARM answers 403 there).
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    for rg_name in ["fhir", "hscn-net"] {
        emu.control
            .assign_role(OUTSIDER_OBJECT, &rg(rg_name), &["*"])
            .await
            .unwrap();
    }
    let tls = tls_files(&emu);
    let as_outsider = |args: &[&str]| {
        outcome(
            fhirlock_command(&emu, args)
                .env("AZURE_CLIENT_ID", OUTSIDER_CLIENT)
                .env("AZURE_CLIENT_SECRET", OUTSIDER_SECRET),
        )
    };
    let args = apply_args("examples/fhir-endpoint.yaml", &tls);
    // Before the gateway exists the registration matters, and cannot be read: a stop that says
    // which role is missing, not an authorization failure of the whole pass.
    let (code, out, err) = as_outsider(&args);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("NetworkIsolationNotRegistered") && err.contains("Reader on the subscription"),
        "{err}"
    );
    // Once someone with more rights created the gateway, the resource-group roles suffice.
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = as_outsider(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("converged: 0 write(s)"), "{out}");
}

#[tokio::test]
async fn fields_set_out_of_band_survive_a_full_convergence() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let portal = emu.portal().unwrap();
    let int = format!("{}/subnets/snet-fhir-int", vnet());
    // The integration subnet already exists (made in the portal), with settings fhirlock has no
    // model for; every other resource gets an unknown field too.
    settle(
        &portal,
        portal
            .put(
                &int,
                NET,
                &json!({"properties": {"addressPrefix": "10.20.2.0/27",
        "privateEndpointNetworkPolicies": "Disabled", "defaultOutboundAccess": false}}),
            )
            .await
            .unwrap(),
    )
    .await;
    patch(
        &portal,
        &site(),
        WEB,
        &json!({"properties": {"clientCertEnabled": true, "xPortalSite": "kept"}}),
    )
    .await;
    patch(
        &portal,
        &format!("{}/config/web", site()),
        WEB,
        &json!({"properties": {"xPortalConfig": [1, 2]}}),
    )
    .await;
    patch(
        &portal,
        &cosmos(),
        COSMOS,
        &json!({"properties": {"xPortalCosmos": true}}),
    )
    .await;

    let tls = tls_files(&emu);
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0, "{out}\n{err}");

    let subnet = portal.get(&int, NET).await.unwrap().unwrap();
    assert_eq!(subnet["properties"]["defaultOutboundAccess"], false);
    assert_eq!(
        subnet["properties"]["privateEndpointNetworkPolicies"],
        "Disabled"
    );
    assert_eq!(
        subnet["properties"]["delegations"][0]["properties"]["serviceName"],
        "Microsoft.Web/serverFarms"
    );
    let s = portal.get(&site(), WEB).await.unwrap().unwrap();
    assert_eq!(s["properties"]["xPortalSite"], "kept");
    assert_eq!(s["properties"]["clientCertEnabled"], true);
    let cfg = portal
        .get(&format!("{}/config/web", site()), WEB)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cfg["properties"]["xPortalConfig"], json!([1, 2]));
    let c = portal.get(&cosmos(), COSMOS).await.unwrap().unwrap();
    assert_eq!(c["properties"]["xPortalCosmos"], true);

    // Someone changes the gateway's capacity and sets a field fhirlock does not manage; fhirlock
    // puts capacity back with a read-modify-write PUT that keeps the field. The fields the
    // subnet and the gateway carry here are real properties of Microsoft's models: fhirlock PUTs
    // those resources whole, and every body it sends is checked against the models.
    let mut gw = portal.get(&gateway(), NET).await.unwrap().unwrap();
    gw["properties"]["autoscaleConfiguration"]["maxCapacity"] = json!(9);
    gw["properties"]["enableHttp2"] = json!(true);
    settle(&portal, portal.put(&gateway(), NET, &gw).await.unwrap()).await;
    emu.control.reset_stats().await.unwrap();
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("converged: 1 write(s)"), "{out}");
    let gw = portal.get(&gateway(), NET).await.unwrap().unwrap();
    assert_eq!(gw["properties"]["autoscaleConfiguration"]["maxCapacity"], 3);
    assert_eq!(gw["properties"]["enableHttp2"], true);
}

#[tokio::test]
async fn a_key_vault_certificate_puts_its_identity_on_the_gateway() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let identity = |name: &str| {
        format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            rg("fhir")
        )
    };
    let secret = "https://fhir-vault.vault.azure.net/secrets/fhir-tls";
    let manifest = |identity_id: &str| {
        let mut m = fhirlock_api::fixtures::base_example();
        m["spec"]["gateway"]["tls"] =
            json!({"keyVaultSecretId": secret, "keyVaultIdentityId": identity_id});
        let file = emu.dir().join("key-vault.yaml");
        std::fs::write(&file, serde_yaml::to_string(&m).unwrap()).unwrap();
        file.to_str().unwrap().to_owned()
    };
    let apply = |file: &str| fhirlock(&emu, &["apply", "-f", file, "--timeout-seconds", "300"]);
    let portal = emu.portal().unwrap();
    let gw_subnet = format!("{}/subnets/snet-fhir-agw", vnet());
    let services = |subnet: &Value| -> Vec<String> {
        let mut s: Vec<String> = subnet["properties"]["serviceEndpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["service"].as_str().unwrap().to_owned())
            .collect();
        s.sort();
        s
    };
    // The gateway subnet exists already, with an endpoint someone else needs.
    let foreign = json!({"properties": {"addressPrefix": "10.20.1.0/26",
        "serviceEndpoints": [{"service": "Microsoft.Storage"}]}});
    settle(
        &portal,
        portal.put(&gw_subnet, NET, &foreign).await.unwrap(),
    )
    .await;

    // The emulator, like Azure, refuses a Key Vault certificate on a gateway without a
    // user-assigned identity, and fails the private-only gateway's fetch of the certificate
    // when its subnet has no Microsoft.KeyVault endpoint: apply converging with one gateway PUT
    // shows fhirlock sent the identity and added the endpoint first, beside the one it found.
    let first = identity("id-agw-fhir");
    let (code, out, err) = apply(&manifest(&first));
    assert_eq!(code, 0, "apply failed:\n{out}\n{err}");
    let stats = emu.control.stats().await.unwrap();
    let gateway_puts = requests(&stats, |e| {
        e["principal"] == OPERATOR_OBJECT
            && e["method"] == "PUT"
            && e["resourceType"] == "Microsoft.Network/applicationGateways"
    });
    assert_eq!(gateway_puts, 1, "{stats}");
    let subnet = portal.get(&gw_subnet, NET).await.unwrap().unwrap();
    assert_eq!(
        services(&subnet),
        ["Microsoft.KeyVault", "Microsoft.Storage", "Microsoft.Web"]
    );
    let gw = portal.get(&gateway(), NET).await.unwrap().unwrap();
    assert_eq!(gw["properties"]["provisioningState"], "Succeeded");
    assert_eq!(gw["identity"]["type"], "UserAssigned");
    let users = gw["identity"]["userAssignedIdentities"]
        .as_object()
        .unwrap();
    assert_eq!(users.keys().collect::<Vec<_>>(), vec![&first]);
    assert!(users[&first]["principalId"].is_string());
    assert_eq!(
        gw["properties"]["sslCertificates"][0]["properties"]["keyVaultSecretId"],
        secret
    );

    // ARM's principalId and clientId are no drift: a second apply only reads.
    emu.control.reset_stats().await.unwrap();
    let (code, out, _) = apply(&manifest(&first));
    assert_eq!(code, 0);
    assert!(out.contains("converged: 0 write(s)"), "{out}");
    assert_eq!(emu.control.operator_requests().await.unwrap().1, 0);

    // Someone attaches another identity in the portal; a new keyVaultIdentityId replaces the
    // one fhirlock attached and keeps theirs.
    let theirs = identity("id-monitoring");
    let mut gw = portal.get(&gateway(), NET).await.unwrap().unwrap();
    gw["identity"]["userAssignedIdentities"][&theirs] = json!({});
    settle(&portal, portal.put(&gateway(), NET, &gw).await.unwrap()).await;
    let (code, out, _) = apply(&manifest(&first));
    assert_eq!(code, 0);
    assert!(
        out.contains("converged: 0 write(s)"),
        "another identity is no drift: {out}"
    );
    let second = identity("id-agw-fhir-2");
    let (code, out, err) = apply(&manifest(&second));
    assert_eq!(code, 0, "{out}\n{err}");
    let gw = portal.get(&gateway(), NET).await.unwrap().unwrap();
    let mut keys: Vec<&String> = gw["identity"]["userAssignedIdentities"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    keys.sort();
    assert_eq!(keys, vec![&second, &theirs]);

    // Someone drops the Microsoft.KeyVault endpoint in the portal: audit names what it breaks,
    // and apply puts it back, keeping the others.
    let mut subnet = portal.get(&gw_subnet, NET).await.unwrap().unwrap();
    subnet["properties"]["serviceEndpoints"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["service"] != "Microsoft.KeyVault");
    settle(&portal, portal.put(&gw_subnet, NET, &subnet).await.unwrap()).await;
    let file = manifest(&second);
    let (code, out, err) = fhirlock(&emu, &["audit", "-f", &file, "-o", "json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "GatewayKeyVaultUnreachable"),
        "{out}"
    );
    let (code, out, err) = apply(&file);
    assert_eq!(code, 0, "{out}\n{err}");
    let subnet = portal.get(&gw_subnet, NET).await.unwrap().unwrap();
    assert_eq!(
        services(&subnet),
        ["Microsoft.KeyVault", "Microsoft.Storage", "Microsoft.Web"]
    );
}

#[tokio::test]
async fn injected_faults_do_not_stop_convergence_or_duplicate_anything() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    emu.control.faults(json!([
        {"method": "GET", "path": "*/virtualNetworks/hscn-vnet", "count": 1, "dropConnection": true},
        {"method": "PATCH", "path": "*/sites/fhir-server", "count": 1, "status": 500},
        {"method": "PUT", "path": "*/subnets/snet-fhir-int", "count": 1, "status": 429, "retryAfter": 1},
        {"method": "PUT", "path": "*/subnets/snet-fhir-agw", "count": 1, "status": 409},
        {"method": "PATCH", "path": "*/databaseAccounts/fhir-cosmos", "count": 1, "status": 412},
        {"method": "GET", "path": "*/config/web", "count": 1, "status": 401},
        {"method": "PUT", "path": "*/applicationGateways/agw-fhir", "count": 1, "failLro": "InternalServerError"},
        {"method": "PUT", "path": "*/applicationGateways/agw-fhir", "count": 1, "status": 503},
    ]))
    .await
    .unwrap();
    let tls = tls_files(&emu);
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(
        code, 0,
        "apply did not converge through the faults:\n{out}\n{err}"
    );
    let stats = emu.control.stats().await.unwrap();
    for status in ["0", "401", "409", "412", "429", "500", "503"] {
        assert!(
            stats["byStatus"][status].as_u64().unwrap_or(0) >= 1,
            "fault {status} was never hit: {}",
            stats["byStatus"]
        );
    }
    assert!(
        err.contains("failed"),
        "the failed operation was reported: {err}"
    );
    // Exactly one gateway and one of each subnet.
    let portal = emu.portal().unwrap();
    let gws = portal
        .get(
            &format!(
                "{}/providers/Microsoft.Network/applicationGateways",
                rg("fhir")
            ),
            NET,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gws["value"].as_array().unwrap().len(), 1, "{gws}");
    let v = portal.get(&vnet(), NET).await.unwrap().unwrap();
    let mut names: Vec<&str> = v["properties"]["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["snet-fhir-agw", "snet-fhir-int"]);
    let (code, _, _) = fhirlock(&emu, &["audit", "-f", "examples/fhir-endpoint.yaml"]);
    assert_eq!(code, 0);
}

#[tokio::test]
async fn each_preflight_failure_stops_with_its_reason_and_writes_nothing() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let portal = emu.portal().unwrap();
    let tls = tls_files(&emu);
    let base: Value = serde_yaml::from_str(
        &std::fs::read_to_string(testenv::workspace_root().join("examples/fhir-endpoint.yaml"))
            .unwrap(),
    )
    .unwrap();
    // The integration subnet of one case is taken by container instances (made in the portal).
    let taken = format!("{}/subnets/snet-taken", vnet());
    settle(&portal, portal.put(&taken, NET, &json!({"properties": {"addressPrefix": "10.20.7.0/27",
        "delegations": [{"name": "aci", "properties": {"serviceName": "Microsoft.ContainerInstance/containerGroups"}}]}})).await.unwrap()).await;
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        (
            "RegionMismatch",
            vec![("/spec/gateway/location", json!("ukwest"))],
        ),
        (
            "PrefixOutsideVirtualNetwork",
            vec![
                (
                    "/spec/network/gatewaySubnet/addressPrefix",
                    json!("10.99.1.0/26"),
                ),
                ("/spec/gateway/privateIPAddress", json!("10.99.1.10")),
            ],
        ),
        (
            "IntegrationSubnetDelegatedElsewhere",
            vec![
                ("/spec/network/integrationSubnet/name", json!("snet-taken")),
                (
                    "/spec/network/integrationSubnet/addressPrefix",
                    json!("10.20.7.0/27"),
                ),
            ],
        ),
        (
            "VirtualNetworkNotFound",
            vec![(
                "/spec/network/virtualNetworkId",
                json!(format!(
                    "{}/providers/Microsoft.Network/virtualNetworks/no-such-vnet",
                    rg("hscn-net")
                )),
            )],
        ),
        (
            "CosmosAccountNotFound",
            vec![(
                "/spec/cosmosDb/id",
                json!(format!(
                    "{}/providers/Microsoft.DocumentDB/databaseAccounts/no-such-account",
                    rg("fhir")
                )),
            )],
        ),
    ];
    emu.control.reset_stats().await.unwrap();
    for (code_expected, edits) in cases {
        let mut obj = base.clone();
        for (ptr, v) in edits {
            *obj.pointer_mut(ptr).unwrap() = v;
        }
        let file = emu.dir().join(format!("{code_expected}.yaml"));
        std::fs::write(&file, serde_yaml::to_string(&obj).unwrap()).unwrap();
        let (code, out, err) = fhirlock(&emu, &apply_args(file.to_str().unwrap(), &tls));
        assert_eq!(code, 2, "{code_expected}: {out}\n{err}");
        assert!(
            err.contains(code_expected),
            "{code_expected} not named: {err}"
        );
    }
    let (_, writes, deletes) = emu.control.operator_requests().await.unwrap();
    assert_eq!(
        (writes, deletes),
        (0, 0),
        "a pre-flight failure must not write"
    );
}

#[test]
fn a_manifest_the_apiserver_would_reject_is_refused_before_any_azure_call() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let bad =
        testenv::workspace_root().join("tests/fixtures/invalid/19-private-ip-outside-subnet.yaml");
    let (code, _, err) = fhirlock(&emu, &["plan", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("must lie inside spec.network.gatewaySubnet.addressPrefix"),
        "{err}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(emu.control.operator_requests()).unwrap(),
        (0, 0, 0)
    );
}

/// `examples/fhir-endpoint.yaml` with `edits` (JSON pointer, value), written to the emulator's
/// directory as `<name>.yaml`; its path.
fn edited_example(emu: &Emulator, name: &str, edits: &[(&str, Value)]) -> String {
    let mut m = fhirlock_testkit::example("fhir-endpoint.yaml").unwrap();
    for (ptr, v) in edits {
        *m.pointer_mut(ptr).unwrap_or_else(|| panic!("no {ptr}")) = v.clone();
    }
    let file = emu.dir().join(format!("{name}.yaml"));
    std::fs::write(&file, serde_yaml::to_string(&m).unwrap()).unwrap();
    file.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn apply_on_an_audit_mode_endpoint_writes_nothing_and_says_so() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let audit = "examples/fhir-endpoint-audit.yaml";
    let plan_of = || {
        let (code, out, err) = fhirlock(&emu, &["plan", "-f", audit, "-o", "json"]);
        assert_eq!(code, 0, "{out}\n{err}");
        let plan: Value = serde_json::from_str(&out).unwrap();
        plan
    };
    let before = plan_of();
    assert!(
        !before["steps"].as_array().unwrap().is_empty(),
        "the wide-open estate has changes pending: {before}"
    );
    emu.control.reset_stats().await.unwrap();

    // The manifest's certificate is in Key Vault, so apply needs no --tls-cert: nothing but the
    // mode stands between it and the writes.
    let (code, out, err) = fhirlock(&emu, &["apply", "-f", audit, "--timeout-seconds", "120"]);
    assert_eq!(
        code, 1,
        "Audit mode with changes pending exits 1, not applied:\n{out}\n{err}"
    );
    assert!(
        err.contains("mode: Audit") && err.contains("not applied"),
        "the refusal names Audit mode: {err}"
    );
    assert!(!out.contains('→'), "no write was started: {out}");
    let (reads, writes, deletes) = emu.control.operator_requests().await.unwrap();
    assert_eq!((writes, deletes), (0, 0), "Audit mode wrote to Azure");
    assert!(reads > 0, "apply looked at Azure before refusing");
    let stats = emu.control.stats().await.unwrap();
    assert_eq!(
        stats["writes"].as_u64().unwrap() + stats["deletes"].as_u64().unwrap(),
        0,
        "{stats}"
    );
    assert_eq!(plan_of()["steps"], before["steps"], "Azure is as it was");
}

#[tokio::test]
async fn audit_fails_closed_when_a_named_site_or_account_does_not_exist() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let tls = tls_files(&emu);
    let (code, out, err) = fhirlock(&emu, &apply_args("examples/fhir-endpoint.yaml", &tls));
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = fhirlock(&emu, &["audit", "-f", "examples/fhir-endpoint.yaml"]);
    assert_eq!(code, 0, "the converged estate is compliant:\n{out}");
    emu.control.reset_stats().await.unwrap();

    // The same estate audited through a manifest with a typo in one ID: what it names cannot be
    // judged, and a CI gate must not pass on it.
    let no_site = format!("{}/providers/Microsoft.Web/sites/fhir-srever", rg("fhir"));
    let no_cosmos = format!(
        "{}/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmso",
        rg("fhir")
    );
    for (name, ptr, id, code_expected) in [
        (
            "no-site",
            "/spec/appService/id",
            &no_site,
            "AppServiceNotFound",
        ),
        (
            "no-cosmos",
            "/spec/cosmosDb/id",
            &no_cosmos,
            "CosmosAccountNotFound",
        ),
    ] {
        let file = edited_example(&emu, name, &[(ptr, json!(id))]);
        for output in ["table", "json"] {
            let (code, out, err) = fhirlock(&emu, &["audit", "-f", &file, "-o", output]);
            assert_eq!(code, 2, "{name} ({output}):\n{out}\n{err}");
            assert!(
                err.contains(code_expected) && err.contains(id.as_str()),
                "{name} ({output}): stderr names neither {code_expected} nor {id}: {err}"
            );
            if output == "json" {
                let report: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(report["compliant"], false, "{name}: {report}");
            }
        }
    }
    let (reads, writes, deletes) = emu.control.operator_requests().await.unwrap();
    assert!(reads > 0);
    assert_eq!((writes, deletes), (0, 0), "audit wrote to Azure");
}

#[tokio::test]
async fn plan_detailed_exitcode_tells_pending_from_converged_from_stopped() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let tls = tls_files(&emu);
    let (cert, key) = (tls.0.to_str().unwrap(), tls.1.to_str().unwrap());
    let plan = |file: &str, detailed: bool| {
        let mut args = vec!["plan", "-f", file, "--tls-cert", cert, "--tls-key", key];
        if detailed {
            args.push("--detailed-exitcode");
        }
        fhirlock(&emu, &args)
    };
    let example = "examples/fhir-endpoint.yaml";

    let (code, out, err) = plan(example, true);
    assert_eq!(
        code, 1,
        "changes pending on the wide-open estate:\n{out}\n{err}"
    );
    assert!(out.contains("GatewaySubnet"), "{out}");
    // WAF_v2: the policy is created first, with DRS 2.2, and the gateway says it waits for it.
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in:\n{out}"));
    assert!(at("WafPolicy Put ") < at("Gateway Put "), "{out}");
    at("agw-fhir-waf\n   why: a WAF_v2 gateway needs a WAF policy");
    at("(absent) -> \"WAF policy in Prevention mode with Microsoft_DefaultRuleSet 2.2\"");
    at("Succeeded, and WAF policy agw-fhir-waf to exist and be Succeeded)");
    let (code, out, err) = plan(example, false);
    assert_eq!(
        code, 0,
        "without the flag, pending changes exit 0:\n{out}\n{err}"
    );

    let stopped = edited_example(
        &emu,
        "region-mismatch",
        &[("/spec/gateway/location", json!("ukwest"))],
    );
    let (code, out, err) = plan(&stopped, true);
    assert_eq!(code, 2, "pre-flight stops it:\n{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("RegionMismatch"),
        "{out}\n{err}"
    );

    let (code, out, err) = fhirlock(&emu, &apply_args(example, &tls));
    assert_eq!(code, 0, "{out}\n{err}");
    emu.control.reset_stats().await.unwrap();
    let (code, out, err) = plan(example, true);
    assert_eq!(code, 0, "nothing to do after apply:\n{out}\n{err}");
    let (code, out, err) = plan(&stopped, true);
    assert_eq!(code, 2, "still stopped after apply:\n{out}\n{err}");
    let (_, writes, deletes) = emu.control.operator_requests().await.unwrap();
    assert_eq!((writes, deletes), (0, 0), "plan wrote to Azure");
}

#[path = "oneshot/credentials.rs"]
mod credentials;
