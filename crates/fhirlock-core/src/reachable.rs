//! Whether the gateway really reaches the FHIR server: what Application Gateway's backend health
//! (`ApplicationGateways_BackendHealth`) says of the backend pool fhirlock configures, and when
//! it may be asked. Pure: the operator does the POST and the poll.
//!
//! The answer's shape is `ApplicationGatewayBackendHealth` in
//! `Azure/azure-rest-api-specs` `specification/network/resource-manager/Microsoft.Network/stable/2025-01-01/applicationGateway.json`:
//! `backendAddressPools[].backendHttpSettingsCollection[].servers[]{address, health,
//! healthProbeLog}`, `health` one of `Unknown`, `Up`, `Down`, `Partial`, `Draining`. The probe
//! log messages are those of Microsoft Learn, "Troubleshoot backend health issues in Application
//! Gateway" (`articles/application-gateway/application-gateway-backend-health-troubleshooting.md`).

use serde_json::Value;

use crate::observed::Observed;
use crate::plan::Plan;

/// The condition type.
pub const REACHABLE: &str = "Reachable";

/// The backend pool fhirlock's gateway sends the FHIR host to (`plan/gateway.rs`).
const POOL: &str = "app-service";

/// What this pass knows about reachability.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Reachability {
    /// Not checked this pass: the previous condition stands (`NotChecked` when there is none).
    #[default]
    Kept,
    /// Not something to check now (no gateway yet, the gateway being written, Audit mode).
    NotChecked(String),
    /// Every server of the pool is `Up`.
    Healthy(String),
    /// A server is `Down`: the probe log, and what it usually means.
    Unhealthy(String),
    /// Azure gave no verdict (a server `Unknown`, the pool missing) or the check failed: Unknown.
    Indeterminate {
        reason: &'static str,
        message: String,
    },
}

/// The verdict of one backend-health answer on fhirlock's pool (all pools when it is absent, as
/// on a gateway someone renamed it on).
pub fn judge(health: &Value) -> Reachability {
    let pools: Vec<&Value> = health["backendAddressPools"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let ours: Vec<&Value> = pools
        .iter()
        .copied()
        .filter(|p| {
            p["backendAddressPool"]["id"]
                .as_str()
                .and_then(|id| id.rsplit('/').next())
                .is_some_and(|n| n.eq_ignore_ascii_case(POOL))
        })
        .collect();
    let servers: Vec<&Value> = if ours.is_empty() { pools } else { ours }
        .into_iter()
        .flat_map(|p| {
            p["backendHttpSettingsCollection"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .flat_map(|s| s["servers"].as_array().into_iter().flatten())
        .collect();
    let describe = |s: &Value| {
        let log = s["healthProbeLog"].as_str().unwrap_or("no probe log");
        format!("{}: {log}", s["address"].as_str().unwrap_or("?"))
    };
    let health = |s: &Value| s["health"].as_str().unwrap_or("Unknown").to_owned();
    if let Some(down) = servers
        .iter()
        .find(|s| health(s).eq_ignore_ascii_case("Down"))
    {
        let log = down["healthProbeLog"].as_str().unwrap_or("");
        return Reachability::Unhealthy(match hint(log) {
            Some(h) => format!("{} ({h})", describe(down)),
            None => describe(down),
        });
    }
    if servers.is_empty() {
        return Reachability::Indeterminate {
            reason: "NoBackendHealth",
            message: "the gateway reported no health for its backend pool".to_owned(),
        };
    }
    if let Some(other) = servers
        .iter()
        .find(|s| !health(s).eq_ignore_ascii_case("Up"))
    {
        return Reachability::Indeterminate {
            reason: "BackendHealthUnknown",
            message: format!(
                "{} is {}: {}",
                other["address"].as_str().unwrap_or("?"),
                health(other),
                describe(other)
            ),
        };
    }
    let addresses: Vec<&str> = servers
        .iter()
        .filter_map(|s| s["address"].as_str())
        .collect();
    Reachability::Healthy(format!(
        "the gateway's health probe reaches {}",
        addresses.join(", ")
    ))
}

/// What a probe log usually means for an App Service backend, so the condition names the cause
/// (access restriction, certificate, host name, app down).
pub fn hint(log: &str) -> Option<&'static str> {
    let l = log.to_ascii_lowercase();
    Some(if l.contains("received:403") {
        // App Service answers 403 to a caller its access restrictions refuse (Learn, "Set up
        // Azure App Service access restrictions"), and when public network access is off.
        "HTTP 403 from App Service: an access restriction denies the gateway subnet, or the site's public network access is off or the app stopped"
    } else if l.contains("received:404") {
        "HTTP 404: the app does not serve the host name the gateway sends, or the probe path does not exist"
    } else if l.contains("received:5") {
        "the app answers with a server error: check that the FHIR server is running"
    } else if l.contains("common name") || l.contains("certificate") {
        "certificate: the host name the gateway sends does not match the app's certificate"
    } else if l.contains("could not create a probe") {
        "host name: the backend's host name does not resolve"
    } else if l.contains("could not connect") || l.contains("timeout") {
        "the app does not answer: it may be down, or a network rule blocks the gateway"
    } else {
        return None;
    })
}

/// Whether backend health may be asked for now: `Ok` when the gateway exists, has settled and is
/// not about to be written; otherwise what Reachable says instead (`Kept` while the endpoint is
/// first converging, so the first check comes once it has).
pub fn may_check(
    o: &Observed,
    plan: &Plan,
    audit: bool,
    converged: bool,
) -> Result<(), Reachability> {
    if audit {
        // A POST action: ARM counts it as a write, and Reader does not grant it.
        return Err(Reachability::NotChecked(
            "Audit mode: fhirlock does not call Azure actions, and backend health is one (POST)"
                .to_owned(),
        ));
    }
    let Some(gw) = o.gateway() else {
        return Err(Reachability::NotChecked(
            "the gateway does not exist yet".to_owned(),
        ));
    };
    let state = gw.properties.provisioning_state.unwrap_or_default();
    if !state.eq_ignore_ascii_case("Succeeded") {
        return Err(Reachability::NotChecked(format!(
            "the gateway is {}",
            if state.is_empty() {
                "not provisioned"
            } else {
                &state
            }
        )));
    }
    if plan
        .steps
        .iter()
        .any(|s| s.kind.component() == crate::Component::Gateway)
    {
        return Err(Reachability::NotChecked(
            "the gateway is about to be written".to_owned(),
        ));
    }
    if !converged {
        return Err(Reachability::Kept);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(servers: Value) -> Value {
        json!({"backendAddressPools": [{
            "backendAddressPool": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw/backendAddressPools/app-service"},
            "backendHttpSettingsCollection": [{"backendHttpSettings": {"id": "x"}, "servers": servers}]
        }]})
    }

    #[test]
    fn the_verdict_names_the_cause() {
        let up = json!({"address": "fhir.azurewebsites.net", "health": "Up", "healthProbeLog": "Success. Received 200 status code"});
        let forbidden = json!({"address": "fhir.azurewebsites.net", "health": "Down", "healthProbeLog": "Status code of the backend's HTTP response did not match the probe setting. Expected:200-399 Received:403."});
        let cn = json!({"address": "fhir.azurewebsites.net", "health": "Down", "healthProbeLog": "The Common Name of the leaf certificate presented by the backend server does not match the Probe or Backend Setting hostname of the application gateway."});
        let unknown = json!({"address": "fhir.azurewebsites.net", "health": "Unknown", "healthProbeLog": "The backend health status could not be retrieved."});
        let table: Vec<(Value, &str, &str)> = vec![
            (
                answer(json!([up.clone()])),
                "Healthy",
                "reaches fhir.azurewebsites.net",
            ),
            (
                answer(json!([up.clone(), forbidden])),
                "Unhealthy",
                "an access restriction denies the gateway subnet",
            ),
            (answer(json!([cn])), "Unhealthy", "certificate"),
            (
                answer(json!([unknown])),
                "BackendHealthUnknown",
                "could not be retrieved",
            ),
            (answer(json!([])), "NoBackendHealth", "no health"),
            (json!({}), "NoBackendHealth", "no health"),
        ];
        for (health, want, says) in table {
            let (kind, msg) = match judge(&health) {
                Reachability::Healthy(m) => ("Healthy", m),
                Reachability::Unhealthy(m) => ("Unhealthy", m),
                Reachability::Indeterminate { reason, message } => (reason, message),
                other => panic!("{other:?}"),
            };
            assert_eq!(kind, want, "{health}");
            assert!(msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn the_condition_follows_the_verdict_and_keeps_the_last_one_between_checks() {
        use crate::status::{Assessment, conditions};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let reachable = |r: Reachability, previous: &[_]| {
            let a = Assessment {
                reachability: r,
                ..Default::default()
            };
            conditions(&a, Some(1), &now, previous)
                .into_iter()
                .find(|c| c.type_ == REACHABLE)
                .unwrap()
        };
        let down = reachable(Reachability::Unhealthy("fhir: 403".into()), &[]);
        assert_eq!(
            (down.status.as_str(), down.reason.as_str()),
            ("False", "BackendUnhealthy")
        );
        let up = reachable(Reachability::Healthy("ok".into()), &[]);
        assert_eq!(
            (up.status.as_str(), up.reason.as_str()),
            ("True", "BackendHealthy")
        );
        let kept = reachable(Reachability::Kept, std::slice::from_ref(&down));
        assert_eq!(
            (kept.status, kept.message),
            ("False".to_owned(), "fhir: 403".to_owned())
        );
        let first = reachable(Reachability::Kept, &[]);
        assert_eq!(
            (first.status.as_str(), first.reason.as_str()),
            ("Unknown", "NotChecked")
        );
        let failed = reachable(
            Reachability::Indeterminate {
                reason: "CheckFailed",
                message: "429".into(),
            },
            std::slice::from_ref(&up),
        );
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("Unknown", "CheckFailed")
        );
    }

    #[test]
    fn another_pool_counts_only_when_fhirlocks_is_absent() {
        let mut h = answer(json!([{"address": "a", "health": "Up"}]));
        h["backendAddressPools"]
            .as_array_mut()
            .unwrap()
            .push(json!({
                "backendAddressPool": {"id": ".../backendAddressPools/someone-elses"},
                "backendHttpSettingsCollection": [{"servers": [{"address": "b", "health": "Down"}]}]
            }));
        assert!(matches!(judge(&h), Reachability::Healthy(_)));
        h["backendAddressPools"][0]["backendAddressPool"]["id"] =
            json!(".../backendAddressPools/renamed");
        assert!(matches!(judge(&h), Reachability::Unhealthy(_)));
    }

    #[test]
    fn backend_health_is_asked_for_only_of_a_settled_gateway_once_converged_and_never_in_audit() {
        let gw = |state: &str| Observed {
            gateway: Some(
                json!({"id": "/g", "name": "g", "properties": {"provisioningState": state}}),
            ),
            ..Default::default()
        };
        let empty = Plan::default();
        assert_eq!(may_check(&gw("Succeeded"), &empty, false, true), Ok(()));
        assert_eq!(
            may_check(&gw("Succeeded"), &empty, false, false),
            Err(Reachability::Kept)
        );
        assert!(
            matches!(may_check(&gw("Updating"), &empty, false, true), Err(Reachability::NotChecked(m)) if m.contains("Updating"))
        );
        assert!(matches!(
            may_check(&Observed::default(), &empty, false, true),
            Err(Reachability::NotChecked(_))
        ));
        assert!(
            matches!(may_check(&gw("Succeeded"), &empty, true, true), Err(Reachability::NotChecked(m)) if m.contains("Audit"))
        );
    }
}
