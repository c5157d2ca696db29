//! Properties over generated estates: whatever state Azure is in, pre-flight stops on what the
//! design must not touch (public access closed, private endpoints on the site) with no write;
//! otherwise running the plan converges, keeps every field fhirlock does not own, deletes
//! nothing, never writes `publicNetworkAccess`, never passes through a state that opens a path
//! the end state closes, ends with no source in that reached neither before nor is declared, and
//! never cuts the app off Cosmos DB while a firewall change propagates.

mod common;

use common::*;
use fhirlock_core::posture::{Exposure, Source, Target};
use fhirlock_core::{Desired, Observed, model, observed, plan, posture, preflight, simulate};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Estate {
    site_default: Option<&'static str>,
    extra_allow: Vec<u8>,
    deny_rules: u8,
    scm_use_main: bool,
    scm_default: Option<&'static str>,
    scm_allow: bool,
    tls: &'static str,
    ftps: &'static str,
    https_only: bool,
    cosmos_filter: bool,
    cosmos_ips: u8,
    cosmos_bypass: bool,
    cosmos_foreign_rule: bool,
    /// `properties.publicNetworkAccess` of the account: absent, Enabled, Disabled or SecuredByPerimeter.
    cosmos_access: Option<&'static str>,
    /// `0.0.0.0` among the IP rules: the app, not yet integrated, reaches Cosmos DB from Azure.
    cosmos_azure_dc: bool,
    /// A private endpoint connection on the account.
    cosmos_private_endpoint: bool,
    /// `properties.publicNetworkAccess` of the site: absent, Enabled or Disabled.
    site_access: Option<&'static str>,
    /// A private endpoint connection on the site: 0 none, 1 in the list fhirlock reads, 2 in the
    /// site body, 3 a Rejected one (which carries nothing).
    site_private_endpoint: u8,
    int_subnet: u8,
    gw_subnet: u8,
    converged_first: bool,
    unknown_seed: u8,
}

fn estate() -> impl Strategy<Value = Estate> {
    let a = (
        prop::option::of(prop::sample::select(vec!["Allow", "Deny"])),
        prop::collection::vec(0u8..4, 0..3),
        0u8..3,
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["Allow", "Deny"])),
        any::<bool>(),
        prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3"]),
        prop::sample::select(vec!["AllAllowed", "FtpsOnly", "Disabled"]),
        any::<bool>(),
    );
    let b = (
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        0u8..4,
        0u8..4,
        any::<bool>(),
        any::<u8>(),
    );
    // Weighted so that most estates pass pre-flight and converge.
    let c = (
        prop_oneof![2 => Just(None), 6 => Just(Some("Enabled")), 1 => Just(Some("Disabled")), 1 => Just(Some("SecuredByPerimeter"))],
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop_oneof![4 => Just(None), 5 => Just(Some("Enabled")), 1 => Just(Some("Disabled"))],
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
    );
    (a, b, c).prop_map(
        |(
            (sd, ea, dr, sum, sdef, sa, tls, ftps, https),
            (cf, ci, cb, cfr, int, gw, conv, seed),
            (ca, cdc, cpe, sacc, spe),
        )| Estate {
            site_default: sd,
            extra_allow: ea,
            deny_rules: dr,
            scm_use_main: sum,
            scm_default: sdef,
            scm_allow: sa,
            tls,
            ftps,
            https_only: https,
            cosmos_filter: cf,
            cosmos_ips: ci,
            cosmos_bypass: cb,
            cosmos_foreign_rule: cfr,
            cosmos_access: ca,
            cosmos_azure_dc: cdc,
            cosmos_private_endpoint: cpe,
            site_access: sacc,
            site_private_endpoint: spe,
            int_subnet: int,
            gw_subnet: gw,
            converged_first: conv,
            unknown_seed: seed,
        },
    )
}

fn subnet(
    name: &str,
    prefix: &str,
    level: u8,
    delegation: &str,
    endpoint: &str,
    seed: u8,
) -> Option<Value> {
    if level == 0 {
        return None;
    }
    let mut s = json!({"name": name, "id": format!("{}/subnets/{name}", vnet_id()),
        "properties": {"addressPrefix": prefix, "provisioningState": "Succeeded", "x-unknown-subnet": seed}});
    if level >= 2 {
        s["properties"]["delegations"] = json!([{"name": "d", "properties": {"serviceName": delegation, "x-unknown-delegation": seed}}]);
    }
    if level >= 3 {
        s["properties"]["serviceEndpoints"] =
            json!([{"service": endpoint, "locations": ["*"], "provisioningState": "Succeeded"}]);
    }
    Some(s)
}

fn build(e: &Estate) -> Observed {
    let d = desired();
    let mut o = if e.converged_first {
        converge(&d, &wide_open()).0
    } else {
        wide_open()
    };
    let seed = e.unknown_seed;
    // Fields fhirlock has no model for, everywhere.
    o.vnet.as_mut().unwrap()["x-unknown-vnet"] = json!({"seed": seed});
    o.vnet.as_mut().unwrap()["properties"]["x-unknown-vnet-props"] = json!([seed, "a"]);
    o.site.as_mut().unwrap()["properties"]["x-unknown-site"] = json!(seed);
    o.site_config.as_mut().unwrap()["properties"]["x-unknown-config"] = json!({"n": seed});
    o.cosmos.as_mut().unwrap()["properties"]["x-unknown-cosmos"] = json!(seed);
    if let Some(g) = o.gateway.as_mut() {
        g["properties"]["x-unknown-gateway"] = json!(seed);
    }
    if !e.converged_first {
        let subnets = o.vnet.as_mut().unwrap()["properties"]["subnets"]
            .as_array_mut()
            .unwrap();
        subnets.extend(subnet(
            "snet-fhir-int",
            "10.20.2.0/27",
            e.int_subnet,
            "Microsoft.Web/serverFarms",
            "Microsoft.AzureCosmosDB",
            seed,
        ));
        subnets.extend(subnet(
            "snet-fhir-agw",
            "10.20.1.0/26",
            e.gw_subnet,
            "Microsoft.Network/applicationGateways",
            "Microsoft.Web",
            seed,
        ));
    }
    let cfg = &mut o.site_config.as_mut().unwrap()["properties"];
    let mut rules = vec![];
    for k in &e.extra_allow {
        rules.push(match k {
            0 => json!({"ipAddress": "198.51.100.0/24", "action": "Allow", "priority": 300, "name": "office"}),
            1 => json!({"ipAddress": "AzureCloud", "tag": "ServiceTag", "action": "Allow", "priority": 310, "name": "azure"}),
            2 => json!({"vnetSubnetResourceId": format!("{}/subnets/snet-workloads", vnet_id()), "action": "Allow", "priority": 320, "name": "workloads"}),
            _ => json!({"vnetSubnetResourceId": gw_subnet(), "action": "Allow", "priority": 90, "name": "someone-elses-gateway-rule"}),
        });
    }
    for i in 0..e.deny_rules {
        rules.push(json!({"ipAddress": format!("192.0.2.{i}/32"), "action": "Deny", "priority": 50 + i as i64, "name": format!("block-{i}"), "x-unknown-rule": seed}));
    }
    if !e.converged_first {
        cfg["ipSecurityRestrictions"] = json!(rules);
    } else {
        cfg["ipSecurityRestrictions"]
            .as_array_mut()
            .unwrap()
            .extend(rules);
    }
    match e.site_default {
        Some(a) => cfg["ipSecurityRestrictionsDefaultAction"] = json!(a),
        None => {
            cfg.as_object_mut()
                .unwrap()
                .remove("ipSecurityRestrictionsDefaultAction");
        }
    }
    cfg["scmIpSecurityRestrictionsUseMain"] = json!(e.scm_use_main);
    match e.scm_default {
        Some(a) => cfg["scmIpSecurityRestrictionsDefaultAction"] = json!(a),
        None => {
            cfg.as_object_mut()
                .unwrap()
                .remove("scmIpSecurityRestrictionsDefaultAction");
        }
    }
    if e.scm_allow {
        cfg["scmIpSecurityRestrictions"] = json!([{"ipAddress": "203.0.113.9/32", "action": "Allow", "priority": 100, "name": "deploy-agent"}]);
    }
    cfg["minTlsVersion"] = json!(e.tls);
    cfg["ftpsState"] = json!(e.ftps);
    o.site.as_mut().unwrap()["properties"]["httpsOnly"] = json!(e.https_only);
    let c = &mut o.cosmos.as_mut().unwrap()["properties"];
    c["isVirtualNetworkFilterEnabled"] = json!(e.cosmos_filter);
    let mut ips: Vec<Value> = (0..e.cosmos_ips)
        .map(|i| json!({"ipAddressOrRange": format!("51.140.{i}.0/24")}))
        .collect();
    if e.cosmos_azure_dc {
        ips.push(json!({"ipAddressOrRange": "0.0.0.0"}));
    }
    c["ipRules"] = json!(ips);
    c["networkAclBypass"] = json!(if e.cosmos_bypass {
        "AzureServices"
    } else {
        "None"
    });
    if e.cosmos_foreign_rule {
        c["virtualNetworkRules"]
            .as_array_mut()
            .get_or_insert(&mut vec![])
            .push(json!({"id": format!("{}/subnets/snet-workloads", vnet_id())}));
    }
    match e.cosmos_access {
        Some(a) => c["publicNetworkAccess"] = json!(a),
        None => {
            c.as_object_mut().unwrap().remove("publicNetworkAccess");
        }
    }
    if e.cosmos_private_endpoint {
        c["privateEndpointConnections"] = json!([connection("cosmos-pe", "Approved")]);
    }
    let site = &mut o.site.as_mut().unwrap()["properties"];
    match e.site_access {
        Some(a) => site["publicNetworkAccess"] = json!(a),
        None => {
            site.as_object_mut().unwrap().remove("publicNetworkAccess");
        }
    }
    match e.site_private_endpoint {
        1 => o.site_private_endpoints = Some(vec![connection("site-pe", "Approved")]),
        2 => site["privateEndpointConnections"] = json!([connection("site-pe", "Pending")]),
        3 => o.site_private_endpoints = Some(vec![connection("site-pe", "Rejected")]),
        _ => {}
    }
    o
}

/// A private endpoint connection as the Web and Cosmos DB models shape it.
fn connection(name: &str, status: &str) -> Value {
    json!({"id": format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/x/privateEndpointConnections/{name}"),
        "name": name, "properties": {"privateEndpoint": {"id": format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Network/privateEndpoints/{name}")},
        "privateLinkServiceConnectionState": {"status": status, "description": ""}}})
}

/// The pre-flight codes the estate must stop on: the design would have to open a closed public
/// endpoint, or to filter a site that has a private endpoint.
fn must_stop_on(e: &Estate) -> Vec<&'static str> {
    let mut codes = Vec::new();
    if e.site_access == Some("Disabled") {
        codes.push("SitePublicAccessDisabled");
    }
    if matches!(e.site_private_endpoint, 1 | 2) {
        codes.push("SiteHasPrivateEndpoint");
    }
    match e.cosmos_access {
        Some("Disabled") => codes.push("CosmosPublicAccessDisabled"),
        Some("SecuredByPerimeter") => codes.push("CosmosSecuredByPerimeter"),
        _ => {}
    }
    codes
}

/// What the spec declares: the gateway subnet reaches the site (and the SCM site when it uses the
/// main site's rules), the integration subnet reaches Cosmos DB.
fn declared(d: &Desired) -> Exposure {
    let gw = Source::Subnet(d.gateway_subnet.id.to_ascii_lowercase());
    let mut out: Exposure = [
        (Target::Site, gw.clone()),
        (
            Target::Cosmos,
            Source::Subnet(d.integration_subnet.id.to_ascii_lowercase()),
        ),
    ]
    .into_iter()
    .collect();
    if d.scm == fhirlock_api::v1alpha1::ScmSiteLock::LockedLikeMain {
        out.insert((Target::Scm, gw));
    }
    out
}

fn public_access(o: &Observed) -> (Value, Value) {
    let get = |v: &Option<Value>| v.as_ref().unwrap()["properties"]["publicNetworkAccess"].clone();
    (get(&o.site), get(&o.cosmos))
}

/// The subnet the app's calls to Cosmos DB come from: its integration subnet when that has the
/// `Microsoft.AzureCosmosDB` service endpoint; `None`, an Azure public address, otherwise.
fn app_source(o: &Observed) -> Option<String> {
    let sid = o.site()?.properties.virtual_network_subnet_id?;
    o.subnets()
        .iter()
        .any(|s| {
            s.id.as_deref()
                .is_some_and(|i| i.eq_ignore_ascii_case(&sid))
                && s.endpoint("Microsoft.AzureCosmosDB").is_some()
        })
        .then(|| sid.to_ascii_lowercase())
}

/// Cosmos DB's verdict on the app under the account settings `net` (its `properties`), written
/// from Microsoft Learn apart from the planner: `publicNetworkAccess` other than Enabled blocks
/// all public and VNet traffic; no IP rule, VNet filter or private endpoint lets everyone in; an
/// Azure public address gets in by `0.0.0.0`; service-endpoint traffic only by a VNet rule with
/// the filter on ("Configure access to Azure Cosmos DB from virtual networks").
fn cosmos_admits_app(net: &Value, private_endpoints: bool, from: &Option<String>) -> bool {
    if net["publicNetworkAccess"]
        .as_str()
        .is_some_and(|a| !a.eq_ignore_ascii_case("Enabled"))
    {
        return false;
    }
    let filter = net["isVirtualNetworkFilterEnabled"] == json!(true);
    let ips: Vec<&str> = net["ipRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["ipAddressOrRange"].as_str())
        .collect();
    if !filter && ips.is_empty() && !private_endpoints {
        return true;
    }
    match from {
        None => ips.iter().any(|ip| ip.trim() == "0.0.0.0"),
        Some(sid) => {
            filter
                && net["virtualNetworkRules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| {
                        r["id"]
                            .as_str()
                            .is_some_and(|i| i.eq_ignore_ascii_case(sid))
                    })
        }
    }
}

/// If the app reached Cosmos DB at the start, it does after every write: "firewall changes may
/// take up to 15 minutes to propagate and the firewall may exhibit an inconsistent behavior
/// during this period", so at any moment the data plane may apply any account setting made in the
/// last 15 minutes, or the one before them, and each must admit where the app's calls come from.
fn app_keeps_cosmos(start: &Observed, history: &[Written]) -> Result<(), TestCaseError> {
    let pes = !start.cosmos_private_endpoint_ids().is_empty();
    let net = |o: &Observed| o.cosmos.as_ref().unwrap()["properties"].clone();
    if !cosmos_admits_app(&net(start), pes, &app_source(start)) {
        return Ok(());
    }
    // Each setting with when it was made; the first has always been in place.
    let mut made: Vec<(Option<Timestamp>, Value)> = vec![(None, net(start))];
    for (step, _, after, at) in history {
        if made.last().unwrap().1 != net(after) {
            made.push((Some(*at), net(after)));
        }
        let from = app_source(after);
        let window = at.checked_sub(plan::FIREWALL_PROPAGATION).unwrap();
        let first = made
            .iter()
            .rposition(|(t, _)| t.is_none_or(|t| t <= window))
            .unwrap_or(0);
        for (t, n) in &made[first..] {
            prop_assert!(
                cosmos_admits_app(n, pes, &from),
                "after {:?} at {}, the app's calls (from {:?}) may meet the Cosmos DB settings made at {:?}, which refuse them: {}",
                step.kind,
                at,
                from,
                t,
                n
            );
        }
    }
    Ok(())
}

fn unknowns(o: &Observed) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for v in [&o.vnet, &o.site, &o.site_config, &o.cosmos, &o.gateway]
        .into_iter()
        .flatten()
    {
        let mut found = Vec::new();
        unknown_fields(v, "", &mut found);
        // Positions in arrays may change (rules are kept sorted); the fields themselves may not.
        all.extend(
            found
                .into_iter()
                .map(|(p, v)| (p.rsplit('/').next().unwrap().to_owned(), v)),
        );
    }
    all.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    all
}

fn deny_rules(o: &Observed) -> Vec<Value> {
    let mut v: Vec<Value> = o.site_config.as_ref().unwrap()["properties"]["ipSecurityRestrictions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["action"] == "Deny")
        .collect();
    v.sort_by_key(|r| r["name"].to_string());
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn plans_converge_keep_unowned_fields_and_never_widen(e in estate()) {
        let d = desired();
        let start = build(&e);
        let stop = must_stop_on(&e);
        let codes: Vec<_> = preflight::check(&d, &start).into_iter().map(|f| f.code).collect();
        prop_assert_eq!(&codes, &stop);
        if !stop.is_empty() {
            // Nothing is planned, so nothing is written.
            prop_assert!(fhirlock_core::status::Assessment::of(&d, &start).plan.is_empty());
            return Ok(());
        }

        let (end, timed, _) = converge_timed(&d, &start).map_err(TestCaseError::fail)?;
        let history: Vec<_> = timed.iter().map(|(s, b, a, _)| (s.clone(), b.clone(), a.clone())).collect();

        // Re-planning after the plan ran gives nothing.
        prop_assert!(plan::plan(&d, &end).is_empty());
        let left: Vec<_> = posture::findings(&d, &end).into_iter().map(|f| f.code.as_str()).collect();
        prop_assert_eq!(left, vec!["CosmosKeyAuthEnabled"]);

        // Every field fhirlock does not model survives every write.
        prop_assert_eq!(unknowns(&start), unknowns(&end));

        // Nothing fhirlock does not own is deleted or changed: the other subnet, the VNet itself,
        // other people's Deny rules.
        let other = |o: &Observed| o.subnet_json("snet-workloads");
        prop_assert_eq!(other(&start), other(&end));
        let vnet_sans_subnets = |o: &Observed| { let mut v = o.vnet.clone().unwrap(); v["properties"]["subnets"] = Value::Null; v };
        prop_assert_eq!(vnet_sans_subnets(&start), vnet_sans_subnets(&end));
        prop_assert_eq!(deny_rules(&start), deny_rules(&end));
        prop_assert_eq!(start.site.as_ref().unwrap()["properties"]["serverFarmId"].clone(), end.site.as_ref().unwrap()["properties"]["serverFarmId"].clone());

        // After its own write the controller reads back only the resource the step wrote (the
        // write's answer, or one GET after a long-running operation) and plans on that: which is
        // the same as reading everything again when a step changes only its own resource.
        for (step, before, after) in &history {
            let slot = observed::slot(&d, &step.resource_id);
            prop_assert!(slot.is_some(), "{:?} writes {} which has no slot", step.kind, step.resource_id);
            let slot = slot.unwrap();
            let read_back = match &slot {
                observed::Slot::Subnet(name) => after.subnet_json(name),
                observed::Slot::Vnet => after.vnet.clone(),
                observed::Slot::Gateway => after.gateway.clone(),
                observed::Slot::Site => after.site.clone(),
                observed::Slot::SiteConfig => after.site_config.clone(),
                observed::Slot::Cosmos => after.cosmos.clone(),
                observed::Slot::WafPolicy => after.waf_policy.clone(),
                observed::Slot::FormerWafPolicy => after.former_waf_policy.clone(),
                observed::Slot::SiteCertificate => after.site_certificate.clone(),
                observed::Slot::HostNameBinding => after.host_name_binding.clone(),
            };
            let mut continued = before.clone();
            continued.absorb(&slot, read_back);
            prop_assert_eq!(&continued, after, "{:?}", step.kind);
        }

        // No intermediate state opens a path that the end state closes.
        let final_exposure = posture::exposure(&end);
        for (step, before, after) in &history {
            let allowed: posture::Exposure = posture::exposure(before).union(&final_exposure).cloned().collect();
            let opened: Vec<_> = posture::exposure(after).difference(&allowed).cloned().collect();
            prop_assert!(opened.is_empty(), "{:?} opened {:?}", step.kind, opened);
        }

        // The end state lets in no source that reached neither before nor is declared.
        let allowed: Exposure = posture::exposure(&start).union(&declared(&d)).cloned().collect();
        let let_in: Vec<_> = final_exposure.difference(&allowed).cloned().collect();
        prop_assert!(let_in.is_empty(), "the end state lets in {:?}", let_in);

        // publicNetworkAccess is never written: closed stays closed, and open stays open.
        for (step, _, _) in &history {
            prop_assert!(!step.body.to_string().contains("publicNetworkAccess"), "{:?} writes publicNetworkAccess", step.kind);
        }
        prop_assert_eq!(public_access(&start), public_access(&end));

        // The app never loses Cosmos DB, whatever the firewall applies while a change propagates.
        app_keeps_cosmos(&start, &timed)?;
    }

    #[test]
    fn typed_models_round_trip_unknown_fields(seed in any::<u32>(), key in "[a-z]{1,12}") {
        let k = format!("x-unknown-{key}");
        let mut o = wide_open();
        o.site_config.as_mut().unwrap()["properties"][&k] = json!(seed);
        o.site_config.as_mut().unwrap()["properties"]["ipSecurityRestrictions"][0][&k] = json!({"n": seed});
        o.cosmos.as_mut().unwrap()["properties"][&k] = json!([seed]);
        let cfg: model::SiteConfig = model::parse(o.site_config.as_ref().unwrap()).unwrap();
        let back = model::to_json(&cfg);
        prop_assert_eq!(&back["properties"][&k], &json!(seed));
        prop_assert_eq!(&back["properties"]["ipSecurityRestrictions"][0][&k], &json!({"n": seed}));
        let c: model::CosmosAccount = model::parse(o.cosmos.as_ref().unwrap()).unwrap();
        prop_assert_eq!(&model::to_json(&c)["properties"][&k], &json!([seed]));
    }
}

#[test]
fn typed_models_use_arm_wire_names() {
    // Real-shaped bodies (ARM reference §1.3, §2, §3, §4): parsing then serializing gives back the
    // same JSON, so no field is renamed on the way through.
    let bodies = [
        json!({"name": "s", "properties": {"addressPrefix": "10.0.0.0/24", "applicationGatewayIPConfigurations": [{"id": "x"}],
            "ipConfigurations": [{"id": "y"}], "serviceAssociationLinks": [], "privateEndpoints": [],
            "serviceEndpoints": [{"service": "Microsoft.Web", "locations": ["*"], "provisioningState": "Succeeded"}],
            "delegations": [{"name": "d", "properties": {"serviceName": "Microsoft.Web/serverFarms", "actions": ["a"]}}]}}),
        json!({"properties": {"frontendIPConfigurations": [{"name": "f", "properties": {"privateIPAddress": "10.0.0.4",
            "privateIPAllocationMethod": "Static", "publicIPAddress": {"id": "p"}}}], "provisioningState": "Succeeded"}, "tags": {"a": "b"}}),
        json!({"properties": {"ipSecurityRestrictions": [{"vnetSubnetResourceId": "s", "action": "Allow", "priority": 1, "name": "n", "tag": "Default"}],
            "ipSecurityRestrictionsDefaultAction": "Deny", "scmIpSecurityRestrictionsUseMain": true, "scmIpSecurityRestrictions": [],
            "scmIpSecurityRestrictionsDefaultAction": "Deny", "minTlsVersion": "1.2", "ftpsState": "Disabled"}}),
        json!({"properties": {"isVirtualNetworkFilterEnabled": true, "virtualNetworkRules": [{"id": "s", "ignoreMissingVNetServiceEndpoint": false}],
            "ipRules": [{"ipAddressOrRange": "1.2.3.4"}], "networkAclBypass": "None", "publicNetworkAccess": "Enabled", "disableLocalAuth": true}}),
    ];
    assert_eq!(
        model::to_json(&model::parse::<model::Subnet>(&bodies[0]).unwrap()),
        bodies[0]
    );
    assert_eq!(
        model::to_json(&model::parse::<model::ApplicationGateway>(&bodies[1]).unwrap()),
        bodies[1]
    );
    assert_eq!(
        model::to_json(&model::parse::<model::SiteConfig>(&bodies[2]).unwrap()),
        bodies[2]
    );
    assert_eq!(
        model::to_json(&model::parse::<model::CosmosAccount>(&bodies[3]).unwrap()),
        bodies[3]
    );
    let _ = simulate::apply; // the simulator is exercised by the property above
}
