//! The plan module's unit tests: step and method names.

use super::*;

const KINDS: [StepKind; 20] = [
    StepKind::SiteHttpsOnly,
    StepKind::SiteTlsAndFtp,
    StepKind::IntegrationSubnet,
    StepKind::GatewaySubnet,
    StepKind::CosmosVnetRule,
    StepKind::SiteVnetIntegration,
    StepKind::WafPolicy,
    StepKind::Gateway,
    StepKind::SiteAccessRestrictions,
    StepKind::CosmosLockdown,
    StepKind::SiteCertificate,
    StepKind::SiteHostNameBinding,
    StepKind::DeleteWafPolicy,
    StepKind::RemoveGatewayRule,
    StepKind::RemoveCosmosVnetRule,
    StepKind::RemoveSiteVnetIntegration,
    StepKind::DeleteGateway,
    StepKind::DeleteHostNameBinding,
    StepKind::DeleteSiteCertificate,
    StepKind::DeleteSubnet,
];

#[test]
fn names_are_the_debug_and_serde_names() {
    for k in KINDS {
        assert_eq!(k.as_str(), format!("{k:?}"));
        assert_eq!(k.to_string(), k.as_str());
        assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        assert_eq!(
            serde_json::from_value::<StepKind>(json!(k.as_str())).unwrap(),
            k
        );
    }
    for m in [Method::Put, Method::Patch, Method::Delete] {
        assert_eq!(m.as_str(), format!("{m:?}"));
        assert_eq!(m.to_string(), m.as_str());
        assert_eq!(serde_json::to_value(m).unwrap(), json!(m.as_str()));
        assert_eq!(
            serde_json::from_value::<Method>(json!(m.as_str())).unwrap(),
            m
        );
    }
}

#[test]
fn every_step_counts_against_one_component() {
    let of = |c: Component| -> Vec<StepKind> {
        KINDS.into_iter().filter(|k| k.component() == c).collect()
    };
    use StepKind::*;
    assert_eq!(
        of(Component::Subnets),
        [IntegrationSubnet, GatewaySubnet, DeleteSubnet]
    );
    assert_eq!(
        of(Component::Gateway),
        [WafPolicy, Gateway, DeleteWafPolicy, DeleteGateway]
    );
    assert_eq!(
        of(Component::AppService),
        [
            SiteHttpsOnly,
            SiteTlsAndFtp,
            SiteVnetIntegration,
            SiteAccessRestrictions,
            SiteCertificate,
            SiteHostNameBinding,
            RemoveGatewayRule,
            RemoveSiteVnetIntegration,
            DeleteHostNameBinding,
            DeleteSiteCertificate
        ]
    );
    assert_eq!(
        of(Component::Cosmos),
        [CosmosVnetRule, CosmosLockdown, RemoveCosmosVnetRule]
    );
}

#[test]
fn owned_tags_keep_the_resources_own_and_name_the_owner() {
    let theirs = json!({"tags": {"costCentre": "42", crate::OWNER_TAG: "other/endpoint"}});
    assert_eq!(
        Value::Object(owned_tags(&theirs, "fhir/endpoint")),
        json!({"costCentre": "42", crate::OWNER_TAG: "fhir/endpoint"})
    );
    for untagged in [
        json!({}),
        json!({"tags": null}),
        json!({"tags": "not a map"}),
    ] {
        assert_eq!(
            Value::Object(owned_tags(&untagged, "fhir/endpoint")),
            json!({crate::OWNER_TAG: "fhir/endpoint"})
        );
    }
}
