//! Table test of `status.createdResources` across a pass: what fhirlock created and has since
//! deleted leaves the list, so no later look reads it again (a file of its own: decide_tests.rs
//! is near hack/check-size.py's limit).

use fhirlock_api::SecuredFhirEndpoint;
use fhirlock_api::v1alpha1::SecuredFhirEndpointStatus;
use fhirlock_core::status::Assessment;
use fhirlock_core::{Certificate, Desired, Observed};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

fn desired(tier: &str, policy_id: Option<&str>) -> Desired {
    let mut sfe: SecuredFhirEndpoint =
        serde_yaml::from_str(include_str!("../../../../examples/fhir-endpoint.yaml")).unwrap();
    let g = &mut sfe.spec.gateway;
    g.sku.tier = serde_json::from_value(json!(tier)).unwrap();
    g.waf = (tier == "WAF_v2").then(|| {
        serde_json::from_value(json!({"mode": "Prevention", "policyId": policy_id})).unwrap()
    });
    let cert = Certificate::Unresolved {
        reason: "test".into(),
    };
    Desired::from_spec("default", "patient-records", &sfe.spec, cert)
}

#[test]
fn a_resource_fhirlock_deleted_leaves_created_resources_and_nothing_else_does() {
    let user_policy = "/subscriptions/6f1c2a52-0000-4000-8000-000000000001/resourceGroups/sec/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/trust-waf";
    let owned = desired("WAF_v2", None).gateway.owned_waf_policy_id;
    let subnet = desired("WAF_v2", None).gateway_subnet.id;
    let policy = json!({"id": owned, "tags": {"fhirlock-owner": "default/patient-records"}});
    let new_gw = desired("WAF_v2", None).gateway.id;
    // (case, tier, spec policyId, recorded before, the owned policy as read, created this pass)
    //   -> createdResources after
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<String>,
        Option<serde_json::Value>,
        Vec<String>,
        Vec<String>,
    );
    let table: Vec<Case> = vec![
        (
            "Standard_v2, fhirlock's policy read as absent: deleted, forgotten",
            "Standard_v2",
            None,
            vec![subnet.clone(), owned.clone()],
            None,
            vec![],
            vec![subnet.clone()],
        ),
        (
            "IDs compare case-insensitively",
            "Standard_v2",
            None,
            vec![subnet.clone(), owned.to_uppercase()],
            None,
            vec![],
            vec![subnet.clone()],
        ),
        (
            "Standard_v2, the policy still there (its delete waits for the gateway): kept",
            "Standard_v2",
            None,
            vec![subnet.clone(), owned.clone()],
            Some(policy.clone()),
            vec![],
            vec![subnet.clone(), owned.clone()],
        ),
        (
            "a policyId now, fhirlock's policy read as absent: forgotten",
            "WAF_v2",
            Some(user_policy),
            vec![owned.clone(), subnet.clone()],
            None,
            vec![],
            vec![subnet.clone()],
        ),
        (
            "a policyId now, fhirlock's policy still there: kept",
            "WAF_v2",
            Some(user_policy),
            vec![owned.clone()],
            Some(policy.clone()),
            vec![],
            vec![owned.clone()],
        ),
        (
            "WAF_v2 on fhirlock's own policy, deleted by someone: kept, it is made again",
            "WAF_v2",
            None,
            vec![owned.clone()],
            None,
            vec![],
            vec![owned.clone()],
        ),
        (
            "this pass's creations are added",
            "Standard_v2",
            None,
            vec![owned.clone()],
            None,
            vec![new_gw.clone()],
            vec![new_gw.clone()],
        ),
        (
            "nothing recorded: nothing to forget",
            "Standard_v2",
            None,
            vec![subnet.clone()],
            None,
            vec![],
            vec![subnet.clone()],
        ),
    ];
    for (case, tier, policy_id, before, read, created, want) in table {
        let mut d = desired(tier, policy_id);
        // As resolve does: the look reads fhirlock's policy only while status records it.
        d.gateway.owned_waf_policy_recorded = before
            .iter()
            .any(|c| fhirlock_core::id::same(c, &d.gateway.owned_waf_policy_id));
        let mut o = Observed::default();
        if let Some(slot) = fhirlock_core::observed::slot(&d, &owned) {
            o.absorb(&slot, read);
        }
        let previous = SecuredFhirEndpointStatus {
            created_resources: before,
            ..Default::default()
        };
        let look = Look {
            desired: &d,
            assessment: Assessment::of(&d, &o),
            gateway: None,
            previous: &previous,
            generation: Some(1),
            created: None,
        };
        let decision = decide(&look, None);
        let written = Written {
            created,
            ..Default::default()
        };
        let now = Time(Timestamp::UNIX_EPOCH);
        let out = conclude(&look, decision, &written, Duration::from_secs(300), &now);
        assert_eq!(out.status.created_resources, want, "{case}");
    }
}
