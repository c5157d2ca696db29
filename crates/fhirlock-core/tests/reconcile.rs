//! The core on a wide-open estate: what it finds, what it plans, in what order, and what is left
//! after the plan ran.

mod common;

use common::*;
use fhirlock_core::plan::{Method, StepKind};
use fhirlock_core::posture::{self, Source, Target};
use fhirlock_core::{preflight, status};
use serde_json::json;

fn codes(f: &[posture::Finding]) -> Vec<&'static str> {
    let mut c: Vec<_> = f.iter().map(|f| f.code.as_str()).collect();
    c.sort();
    c.dedup();
    c
}

#[test]
fn a_wide_open_estate_has_every_back_door_found() {
    let d = desired();
    let f = posture::findings(&d, &wide_open());
    assert_eq!(
        codes(&f),
        vec![
            "CosmosAzureServicesBypass",
            "CosmosIpRule",
            "CosmosKeyAuthEnabled",
            "CosmosVnetFilterOff",
            "FtpEnabled",
            "GatewaySubnetMissingWebEndpoint",
            "HttpsOnlyDisabled",
            "IntegrationSubnetMissingCosmosEndpoint",
            "MinTlsBelow12",
            "ScmSitePublic",
            "SiteAllowsOtherSources",
            "SiteDefaultAllow",
            "SiteNotVnetIntegrated",
        ]
    );
    // One finding per IP rule, each naming its range.
    assert_eq!(
        f.iter()
            .filter(|f| f.code == posture::FindingCode::CosmosIpRule)
            .count(),
        2
    );
    assert!(
        f.iter()
            .any(|f| f.message.contains("supplier-office") && f.message.contains("203.0.113.0/24"))
    );
}

#[test]
fn the_remaining_back_doors_are_found_too() {
    let d = desired();
    let mut o = wide_open();
    o.gateway = Some(
        json!({"id": d.gateway.id, "tags": {"fhirlock-owner": "default/patient-records"}, "properties": {
        "frontendIPConfigurations": [
            {"name": "private-frontend", "properties": {"privateIPAddress": "10.20.1.10"}},
            {"name": "public", "properties": {"publicIPAddress": {"id": "/subscriptions/x/publicIPAddresses/pip"}}}]}}),
    );
    o.cosmos.as_mut().unwrap()["properties"]["virtualNetworkRules"] =
        json!([{"id": format!("{}/subnets/snet-workloads", vnet_id())}]);
    o.vnet.as_mut().unwrap()["properties"]["subnets"].as_array_mut().unwrap().push(json!({
        "name": "snet-fhir-agw", "properties": {"addressPrefix": "10.20.1.0/26", "serviceEndpoints": [{"service": "Microsoft.Web"}]}}));
    let f = codes(&posture::findings(&d, &o));
    for code in [
        "GatewayPublicFrontend",
        "CosmosForeignVnetRule",
        "GatewaySubnetMissingDelegation",
    ] {
        assert!(f.contains(&code), "{code} not found in {f:?}");
    }
    // With a Key Vault certificate, that gateway subnet (Microsoft.Web only) cannot reach the vault.
    let mut key_vault = d.clone();
    key_vault.gateway.certificate = fhirlock_core::Certificate::KeyVault {
        secret_id: "https://fhir-vault.vault.azure.net/secrets/fhir-tls".into(),
        identity_id: format!(
            "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw"
        ),
    };
    let kv = codes(&posture::findings(&key_vault, &o));
    assert!(kv.contains(&"GatewayKeyVaultUnreachable"), "{kv:?}");
    assert!(!f.contains(&"GatewayKeyVaultUnreachable"), "{f:?}");
    // fhirlock's WAF policy attached, then disabled and switched to Detection in the portal.
    let mut waf = o.clone();
    let policy = d.gateway.owned_waf_policy_id.clone();
    waf.gateway.as_mut().unwrap()["properties"]["firewallPolicy"] = json!({"id": policy});
    waf.waf_policy = Some(json!({"id": policy, "tags": {"fhirlock-owner": d.owner},
        "properties": {"policySettings": {"state": "Disabled", "mode": "Detection"}}}));
    let w = codes(&posture::findings(&d, &waf));
    assert!(f.contains(&"WafPolicyNotAttached"), "{f:?}");
    assert!(!w.contains(&"WafPolicyNotAttached"), "{w:?}");
    for code in ["WafPolicyDisabled", "WafDetectionMode"] {
        assert!(w.contains(&code), "{code} not found in {w:?}");
    }
    // hostHeader Preserve, the host name not bound to the site yet.
    let mut preserve = d.clone();
    preserve.host_header = fhirlock_api::v1alpha1::HostHeader::Preserve;
    let h = codes(&posture::findings(&preserve, &wide_open()));
    assert!(h.contains(&"HostNameNotBound"), "{h:?}");
    // Every catalogued code is produced by one of the estates above.
    let mut all = codes(&posture::findings(&d, &wide_open()));
    all.extend(h);
    all.extend(f);
    all.extend(kv);
    all.extend(w);
    for code in posture::FindingCode::ALL {
        assert!(
            all.contains(&code.as_str()),
            "no test estate produces {code}"
        );
    }
}

#[test]
fn the_plan_follows_the_safe_order_and_waits_where_it_must() {
    let d = desired();
    let p = fhirlock_core::plan::plan(&d, &wide_open());
    let kinds: Vec<_> = p.steps.iter().map(|s| (s.kind, s.ready())).collect();
    assert_eq!(
        kinds,
        vec![
            (StepKind::SiteHttpsOnly, true),
            (StepKind::SiteTlsAndFtp, true),
            (StepKind::IntegrationSubnet, true),
            (StepKind::GatewaySubnet, true),
            (StepKind::CosmosVnetRule, false),
            (StepKind::SiteVnetIntegration, false),
            (StepKind::WafPolicy, true),
            (StepKind::Gateway, false),
            (StepKind::SiteAccessRestrictions, false),
            (StepKind::CosmosLockdown, false),
        ]
    );
    let restrict = p
        .steps
        .iter()
        .find(|s| s.kind == StepKind::SiteAccessRestrictions)
        .unwrap();
    assert!(
        restrict
            .waiting_for
            .as_deref()
            .unwrap()
            .contains("gateway agw-fhir to be Succeeded")
    );
    // Subnets are PUT whole (read-modify-write); the site and Cosmos are PATCHed.
    assert!(
        p.steps
            .iter()
            .filter(|s| matches!(
                s.kind,
                StepKind::IntegrationSubnet | StepKind::GatewaySubnet
            ))
            .all(|s| s.method == Method::Put)
    );
    assert!(
        p.steps
            .iter()
            .filter(|s| s.kind == StepKind::CosmosLockdown)
            .all(|s| s.method == Method::Patch)
    );
}

#[test]
fn the_plan_converges_to_only_the_gateway_and_the_integration_subnet() {
    let d = desired();
    let (end, history, rounds) = converge(&d, &wide_open());
    assert!(rounds <= 6, "took {rounds} rounds");
    assert!(fhirlock_core::plan::plan(&d, &end).is_empty());
    let left = codes(&posture::findings(&d, &end));
    assert_eq!(
        left,
        vec!["CosmosKeyAuthEnabled"],
        "only the advisory finding remains"
    );
    let exposure = posture::exposure(&end);
    let expected: posture::Exposure = [
        (
            Target::Site,
            Source::Subnet(gw_subnet().to_ascii_lowercase()),
        ),
        (
            Target::Scm,
            Source::Subnet(gw_subnet().to_ascii_lowercase()),
        ),
        (
            Target::Cosmos,
            Source::Subnet(int_subnet().to_ascii_lowercase()),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(exposure, expected);
    // The app was never unreachable through the gateway: restrictions came after the gateway.
    let order: Vec<_> = history.iter().map(|(s, _, _)| s.kind).collect();
    let pos = |k| order.iter().position(|x| *x == k).unwrap();
    assert!(pos(StepKind::Gateway) < pos(StepKind::SiteAccessRestrictions));
    assert!(pos(StepKind::CosmosVnetRule) < pos(StepKind::SiteVnetIntegration));
    assert!(pos(StepKind::SiteVnetIntegration) < pos(StepKind::CosmosLockdown));
}

#[test]
fn a_converged_estate_plans_nothing_and_reports_ready() {
    let d = desired();
    let (end, _, _) = converge(&d, &wide_open());
    let assessment = status::Assessment {
        findings: posture::findings(&d, &end),
        ..Default::default()
    };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
    );
    let conds = status::conditions(&assessment, Some(3), &now, &[]);
    let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap();
    assert_eq!(get("Ready").status, "True");
    assert_eq!(get("Ready").reason, "Secured");
    assert_eq!(get("Reconciling").status, "False");
    assert_eq!(get("Stalled").status, "False");
    for c in [
        "SubnetsReady",
        "GatewayReady",
        "AppServiceLocked",
        "CosmosLocked",
        "PostureCompliant",
    ] {
        assert_eq!(get(c).status, "True", "{c}: {}", get(c).message);
    }
    // A later resync with the same assessment keeps every lastTransitionTime: no flapping.
    let later = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_600).unwrap(),
    );
    let again = status::conditions(&assessment, Some(3), &later, &conds);
    assert_eq!(again, conds);
}

#[test]
fn drift_out_of_band_is_planned_back_with_field_paths() {
    let d = desired();
    let (mut end, _, _) = converge(&d, &wide_open());
    // Someone in the portal opens the SCM site and adds a Cosmos IP rule.
    end.site_config.as_mut().unwrap()["properties"]["scmIpSecurityRestrictionsDefaultAction"] =
        json!("Allow");
    end.cosmos.as_mut().unwrap()["properties"]["ipRules"] =
        json!([{"ipAddressOrRange": "198.51.100.7"}]);
    let p = fhirlock_core::plan::plan(&d, &end);
    let drift: Vec<String> = p
        .drift(&fhirlock_core::Component::ALL)
        .iter()
        .map(|(_, c)| c.path.clone())
        .collect();
    assert_eq!(
        drift,
        vec![
            "properties.scmIpSecurityRestrictionsDefaultAction",
            "properties.ipRules"
        ]
    );
    assert!(
        p.steps.iter().all(|s| s.ready()),
        "drift on a converged estate is corrected at once"
    );
}

#[test]
fn a_new_certificate_updates_the_gateway_and_nothing_else() {
    let mut d = desired();
    let (end, _, _) = converge(&d, &wide_open());
    d.gateway.certificate = fhirlock_core::Certificate::Pfx {
        data_base64: "TkVX".into(),
        password: "pw2".into(),
        fingerprint: "def456".into(),
    };
    let p = fhirlock_core::plan::plan(&d, &end);
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].kind, StepKind::Gateway);
    assert_eq!(
        p.steps[0].body["properties"]["sslCertificates"][0]["properties"]["data"],
        "TkVX"
    );
    assert_eq!(p.steps[0].body["tags"]["fhirlock-tls"], "sha256:def456");
}

#[test]
fn debug_output_never_shows_the_certificate() {
    let d = desired();
    let s = format!("{d:?}");
    assert!(!s.contains("UEZY") && !s.contains("\"pw\""), "{s}");
}

fn preflight_codes(o: &fhirlock_core::Observed) -> Vec<&'static str> {
    preflight::check(&desired(), o)
        .into_iter()
        .map(|f| f.code)
        .collect()
}

#[test]
fn preflight_passes_on_the_wide_open_estate() {
    assert_eq!(preflight_codes(&wide_open()), Vec::<&str>::new());
}

#[test]
fn each_preflight_failure_has_its_reason() {
    type Mutate = fn(&mut fhirlock_core::Observed);
    let cases: Vec<(&str, Mutate)> = vec![
        ("VirtualNetworkNotFound", |o| o.vnet = None),
        ("AppServiceNotFound", |o| o.site = None),
        ("CosmosAccountNotFound", |o| o.cosmos = None),
        ("PlanTierUnsupported", |o| {
            o.server_farm.as_mut().unwrap()["sku"]["tier"] = json!("Free")
        }),
        ("RegionMismatch", |o| {
            o.site.as_mut().unwrap()["location"] = json!("UK West")
        }),
        ("PrefixOutsideVirtualNetwork", |o| {
            o.vnet.as_mut().unwrap()["properties"]["addressSpace"]["addressPrefixes"] =
                json!(["10.30.0.0/16"])
        }),
        ("PrefixOverlapsSubnet", |o| {
            o.vnet.as_mut().unwrap()["properties"]["subnets"][0]["properties"]["addressPrefix"] =
                json!("10.20.0.0/22")
        }),
        ("SubnetPrefixDiffers", |o| {
            o.vnet.as_mut().unwrap()["properties"]["subnets"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "snet-fhir-int", "properties": {"addressPrefix": "10.20.2.0/28"}}))
        }),
        ("GatewaySubnetInUse", |o| {
            o.vnet.as_mut().unwrap()["properties"]["subnets"].as_array_mut().unwrap().push(json!({
                "name": "snet-fhir-agw", "properties": {"addressPrefix": "10.20.1.0/26",
                "ipConfigurations": [{"id": "/subscriptions/x/networkInterfaces/vm1-nic/ipConfigurations/ipconfig1"}]}}))
        }),
        ("IntegrationSubnetDelegatedElsewhere", |o| {
            o.vnet.as_mut().unwrap()["properties"]["subnets"].as_array_mut().unwrap().push(json!({
                "name": "snet-fhir-int", "properties": {"addressPrefix": "10.20.2.0/27",
                "delegations": [{"name": "aci", "properties": {"serviceName": "Microsoft.ContainerInstance/containerGroups"}}]}}))
        }),
        ("IntegrationSubnetUsedByAnotherPlan", |o| {
            o.vnet.as_mut().unwrap()["properties"]["subnets"].as_array_mut().unwrap().push(json!({
                "name": "snet-fhir-int", "properties": {"addressPrefix": "10.20.2.0/27",
                "delegations": [{"name": "web", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
                "serviceAssociationLinks": [{"name": "AppServiceLink", "properties": {"link": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Web/serverfarms/other-plan"}}]}}))
        }),
        ("AppServiceIntegratedElsewhere", |o| {
            o.site.as_mut().unwrap()["properties"]["virtualNetworkSubnetId"] =
                json!(format!("{}/subnets/snet-workloads", vnet_id()))
        }),
        ("NetworkIsolationNotRegistered", |o| {
            o.isolation_feature = Some("NotRegistered".into())
        }),
        ("GatewayNotOwned", |o| {
            o.gateway =
                Some(json!({"tags": {"fhirlock-owner": "other/endpoint"}, "properties": {}}))
        }),
    ];
    for (code, mutate) in cases {
        let mut o = wide_open();
        mutate(&mut o);
        let got = preflight_codes(&o);
        assert!(got.contains(&code), "{code}: got {got:?}");
    }
}

#[test]
fn a_gateway_left_failed_by_its_last_operation_is_put_again() {
    let d = desired();
    let (mut end, _, _) = converge(&d, &wide_open());
    end.gateway.as_mut().unwrap()["properties"]["provisioningState"] = json!("Failed");
    let p = fhirlock_core::plan::plan(&d, &end);
    assert_eq!(
        p.steps.iter().map(|s| s.kind).collect::<Vec<_>>(),
        vec![StepKind::Gateway]
    );
    assert_eq!(p.steps[0].changes[0].path, "properties.provisioningState");
    let (end, _, _) = converge(&d, &end);
    assert!(fhirlock_core::plan::plan(&d, &end).is_empty());
}

fn run_teardown(
    d: &fhirlock_core::Desired,
    start: &fhirlock_core::Observed,
    created: &[String],
) -> fhirlock_core::Observed {
    let mut o = start.clone();
    for _ in 0..10 {
        let p = fhirlock_core::plan::teardown(d, &o, created);
        let ready: Vec<_> = p.steps.into_iter().filter(|s| s.ready()).collect();
        if ready.is_empty() {
            break;
        }
        for s in ready {
            o = fhirlock_core::simulate::apply(&o, &s);
        }
    }
    assert!(
        fhirlock_core::plan::teardown(d, &o, created).is_empty(),
        "teardown did not finish"
    );
    o
}

#[test]
fn teardown_removes_only_what_fhirlock_created_or_added_and_reopens_nothing() {
    let d = desired();
    let (end, _, _) = converge(&d, &wide_open());
    let before = posture::exposure(&end);
    let gone = run_teardown(&d, &end, &[gw_subnet(), int_subnet(), d.gateway.id.clone()]);
    assert!(gone.gateway.is_none());
    assert!(gone.subnet("snet-fhir-agw").is_none() && gone.subnet("snet-fhir-int").is_none());
    assert!(
        gone.subnet("snet-workloads").is_some(),
        "a subnet fhirlock did not create stays"
    );
    assert!(gone.vnet.is_some() && gone.site.is_some() && gone.cosmos.is_some());
    let cfg = gone.site_config().unwrap().properties;
    assert_eq!(
        cfg.ip_security_restrictions_default_action.as_deref(),
        Some("Deny")
    );
    assert_eq!(
        gone.cosmos()
            .unwrap()
            .properties
            .is_virtual_network_filter_enabled,
        Some(true)
    );
    assert!(
        posture::exposure(&gone).is_subset(&before),
        "teardown opened a path"
    );
    // Adopted subnets (not in the created list) are left in place.
    let kept = run_teardown(&d, &end, &[]);
    assert!(kept.subnet("snet-fhir-agw").is_some() && kept.subnet("snet-fhir-int").is_some());
}

#[test]
fn a_gateway_someone_adopted_by_tagging_it_is_never_deleted() {
    let d = desired();
    let (end, _, _) = converge(&d, &wide_open());
    let owner_tag = end
        .gateway()
        .unwrap()
        .tag(fhirlock_core::OWNER_TAG)
        .map(str::to_owned);
    assert_eq!(
        owner_tag.as_deref(),
        Some(d.owner.as_str()),
        "tagged as fhirlock's"
    );
    // The subnets were created by fhirlock, the gateway was not (a person tagged theirs).
    let adopted = run_teardown(&d, &end, &[gw_subnet(), int_subnet()]);
    assert!(adopted.gateway.is_some(), "an adopted gateway was deleted");
    assert!(
        adopted.subnet("snet-fhir-agw").is_some(),
        "the subnet of a gateway that stays was deleted"
    );
    assert!(adopted.subnet("snet-fhir-int").is_none());
    // Nothing is left waiting for ever: the finalizer must be released.
    let p = fhirlock_core::plan::teardown(&d, &adopted, &[gw_subnet(), int_subnet()]);
    assert!(p.is_empty(), "{:?}", p.steps);
    // Recorded as created but the owner tag is gone: someone else's now; kept too.
    let mut retagged = end.clone();
    retagged.gateway.as_mut().unwrap()["tags"] = json!({});
    let kept = run_teardown(
        &d,
        &retagged,
        &[gw_subnet(), int_subnet(), d.gateway.id.clone()],
    );
    assert!(kept.gateway.is_some());
}

#[test]
fn teardown_waits_for_what_uses_a_subnet() {
    let d = desired();
    let (end, _, _) = converge(&d, &wide_open());
    let p =
        fhirlock_core::plan::teardown(&d, &end, &[gw_subnet(), int_subnet(), d.gateway.id.clone()]);
    let kinds: Vec<_> = p.steps.iter().map(|s| (s.kind, s.ready())).collect();
    assert_eq!(
        kinds,
        vec![
            (StepKind::RemoveGatewayRule, true),
            (StepKind::RemoveCosmosVnetRule, true),
            (StepKind::RemoveSiteVnetIntegration, true),
            (StepKind::DeleteGateway, true),
            (StepKind::DeleteSubnet, false),
            (StepKind::DeleteSubnet, false),
        ]
    );
}

#[test]
fn findings_no_step_closes_are_not_reported_as_progress() {
    let d = desired();
    let (end, _, _) = converge(&d, &wide_open());
    let mut findings = posture::findings(&d, &end);
    findings.push(posture::Finding {
        code: posture::FindingCode::CosmosIpRule,
        severity: posture::Severity::High,
        resource_id: d.cosmos_id.clone(),
        message: "made up for the test".into(),
    });
    let assessment = status::Assessment {
        findings,
        ..Default::default()
    };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
    );
    let conds = status::conditions(&assessment, Some(1), &now, &[]);
    let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(
        (get("Ready").status.as_str(), get("Ready").reason.as_str()),
        ("False", "FindingsPresent")
    );
    assert_eq!(get("Reconciling").status, "False");
    assert_eq!(get("Stalled").status, "False");
}

#[test]
fn without_a_plan_a_component_is_not_judged_converged() {
    // Pre-flight stops the plan (no certificate to create the gateway with): nothing pending
    // proves nothing, so a component with no open finding is Unknown; one with a finding is False.
    let mut d = desired();
    d.gateway.certificate = fhirlock_core::Certificate::Unresolved {
        reason: "no certificate yet".into(),
    };
    let a = status::Assessment::of(&d, &wide_open());
    assert!(!a.preflight.is_empty() && a.plan.is_empty());
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
    );
    let conds = status::conditions(&a, Some(1), &now, &[]);
    let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(
        (
            get("GatewayReady").status.as_str(),
            get("GatewayReady").reason.as_str()
        ),
        ("Unknown", "NotJudged"),
        "no gateway exists: it must not read Converged"
    );
    assert_eq!(
        get("AppServiceLocked").status,
        "False",
        "open findings still count"
    );
    assert_eq!(get("PostureCompliant").status, "False");
    assert_eq!(get("Stalled").status, "True");
}
