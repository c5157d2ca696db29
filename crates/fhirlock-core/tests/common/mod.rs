//! A wide-open FHIR estate as ARM would return it, and the desired state from the example.
#![allow(dead_code)]

use std::time::Duration;

use fhirlock_core::plan::{self, Clock, FIREWALL_PROPAGATION};
use fhirlock_core::{Certificate, Desired, Observed, Step, simulate};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub const SUB: &str = "6f1c2a52-0000-4000-8000-000000000001";

pub fn vnet_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/hscn-net/providers/Microsoft.Network/virtualNetworks/hscn-vnet"
    )
}
pub fn site_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server")
}
pub fn cosmos_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos"
    )
}
pub fn gw_subnet() -> String {
    format!("{}/subnets/snet-fhir-agw", vnet_id())
}
pub fn int_subnet() -> String {
    format!("{}/subnets/snet-fhir-int", vnet_id())
}

pub fn desired() -> Desired {
    desired_of(&fhirlock_api::fixtures::base_example())
}

/// What `obj` (a SecuredFhirEndpoint as JSON) asks for, with a stand-in PFX certificate.
pub fn desired_of(obj: &Value) -> Desired {
    let sfe: fhirlock_api::SecuredFhirEndpoint = serde_json::from_value(obj.clone()).unwrap();
    Desired::from_spec(
        "default",
        "patient-records",
        &sfe.spec,
        Certificate::Pfx {
            data_base64: "UEZY".into(),
            password: "pw".into(),
            fingerprint: "abc123".into(),
        },
    )
}

/// VNet with one unrelated subnet; site with default Allow, SCM open, an extra IP allow rule, FTP
/// on, TLS 1.0, HTTP allowed; Cosmos with public IP rules, the Azure-services bypass and no
/// VNet filter. Every resource carries fields fhirlock has no model for.
pub fn wide_open() -> Observed {
    Observed {
        vnet: Some(json!({
            "id": vnet_id(), "name": "hscn-vnet", "location": "uksouth", "type": "Microsoft.Network/virtualNetworks",
            "etag": "W/\"1\"", "tags": {"cost-centre": "nhs-123"},
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
                "dhcpOptions": {"dnsServers": ["10.0.0.4"]},
                "enableDdosProtection": false,
                "subnets": [{
                    "id": format!("{}/subnets/snet-workloads", vnet_id()), "name": "snet-workloads",
                    "properties": {"addressPrefix": "10.20.0.0/24", "provisioningState": "Succeeded",
                        "networkSecurityGroup": {"id": "/subscriptions/x/nsg"}}
                }]
            }
        })),
        gateway: None,
        site: Some(json!({
            "id": site_id(), "name": "fhir-server", "location": "UK South", "kind": "app,linux",
            "properties": {"httpsOnly": false, "serverFarmId": format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/serverfarms/fhir-plan"),
                "defaultHostName": "fhir-server.azurewebsites.net", "clientAffinityEnabled": false, "state": "Running",
                "virtualNetworkSubnetId": null}
        })),
        site_config: Some(json!({
            "id": format!("{}/config/web", site_id()), "name": "web",
            "properties": {
                "ipSecurityRestrictions": [
                    {"ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 200, "name": "supplier-office", "tag": "Default"},
                    {"ipAddress": "Any", "action": "Allow", "priority": 2147483647, "name": "Allow all", "description": "Allow all access"}
                ],
                "ipSecurityRestrictionsDefaultAction": "Allow",
                "scmIpSecurityRestrictions": [
                    {"ipAddress": "Any", "action": "Allow", "priority": 2147483647, "name": "Allow all", "description": "Allow all access"}
                ],
                "scmIpSecurityRestrictionsUseMain": false,
                "scmIpSecurityRestrictionsDefaultAction": "Allow",
                "minTlsVersion": "1.0", "ftpsState": "AllAllowed", "alwaysOn": true, "linuxFxVersion": "DOTNETCORE|8.0",
                "healthCheckPath": "/health"
            }
        })),
        server_farm: Some(
            json!({"location": "UK South", "sku": {"name": "P1v3", "tier": "PremiumV3"}, "properties": {"reserved": true}}),
        ),
        cosmos: Some(json!({
            "id": cosmos_id(), "name": "fhir-cosmos", "location": "UK South", "kind": "GlobalDocumentDB",
            "properties": {
                "isVirtualNetworkFilterEnabled": false, "virtualNetworkRules": [],
                "ipRules": [{"ipAddressOrRange": "51.140.0.0/16"}, {"ipAddressOrRange": "0.0.0.0"}],
                "networkAclBypass": "AzureServices", "publicNetworkAccess": "Enabled", "disableLocalAuth": false,
                "consistencyPolicy": {"defaultConsistencyLevel": "Session"}, "databaseAccountOfferType": "Standard",
                "provisioningState": "Succeeded"
            }
        })),
        isolation_feature: Some("Registered".into()),
        site_private_endpoints: Some(vec![]),
        ..Default::default()
    }
}

/// Simulated time between two of the controller's looks.
pub const ROUND: Duration = Duration::from_secs(5 * 60);

/// When the simulated convergence starts.
pub fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

/// One write of a simulated convergence: the step, the state before and after it, and when.
pub type Written = (Step, Observed, Observed, Timestamp);

/// Runs the plan to completion the way the controller does: each round, a look at `ROUND`
/// intervals (recording since when Cosmos DB admits the integration subnet, as status does),
/// then the ready steps in order, each applied as ARM would; returns every intermediate state and
/// the number of rounds that wrote.
pub fn converge(
    d: &Desired,
    start: &Observed,
) -> (Observed, Vec<(Step, Observed, Observed)>, usize) {
    let (end, history, rounds) = converge_timed(d, start).unwrap_or_else(|e| panic!("{e}"));
    (
        end,
        history.into_iter().map(|(s, b, a, _)| (s, b, a)).collect(),
        rounds,
    )
}

/// As [`converge`], with the time of each write; `Err` when it gets stuck (nothing ready for
/// longer than a firewall propagation) or does not finish in 40 rounds.
pub fn converge_timed(
    d: &Desired,
    start: &Observed,
) -> Result<(Observed, Vec<Written>, usize), String> {
    let mut o = start.clone();
    let mut history = Vec::new();
    let (mut now, mut since, mut rounds, mut idle) = (t0(), None, 0, 0);
    for _ in 0..40 {
        let clock = Clock::at(now, since, FIREWALL_PROPAGATION);
        let plan = plan::plan_at(d, &o, &clock);
        since = plan::admitted_since(d, &o, &clock);
        if plan.is_empty() {
            return Ok((o, history, rounds));
        }
        let ready: Vec<_> = plan.steps.into_iter().filter(|s| s.ready()).collect();
        if ready.is_empty() {
            idle += 1;
            if ROUND * idle > FIREWALL_PROPAGATION + ROUND {
                return Err(format!(
                    "no step can run, yet the plan is not empty: stuck at {now}"
                ));
            }
        } else {
            idle = 0;
            rounds += 1;
        }
        for step in ready {
            let before = o.clone();
            o = simulate::apply(&o, &step);
            history.push((step, before, o.clone(), now));
        }
        now += ROUND;
    }
    Err("did not converge in 40 rounds".into())
}

/// Every `(path, value)` for keys starting with `x-unknown`.
pub fn unknown_fields(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                if k.starts_with("x-unknown") {
                    out.push((p, x.clone()));
                } else {
                    unknown_fields(x, &p, out);
                }
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| unknown_fields(x, &format!("{path}/{i}"), out)),
        _ => {}
    }
}
