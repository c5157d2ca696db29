//! What a step does to the observed state, as ARM would answer a GET afterwards. The property
//! tests use it to replay a plan step by step: re-planning after the last step must give nothing,
//! and no intermediate state may open a path the end state closes.

use serde_json::{Value, json};

use crate::json::merge;
use crate::observed::{Observed, Slot};
use crate::plan::{Method, Step, StepKind};

/// fhirlock's policy gone: read at the gateway's reference, or beside a spec's policy.
fn delete_policy(next: &mut Observed, id: &str) {
    let former = next
        .former_waf_policy
        .as_ref()
        .and_then(|p| p["id"].as_str());
    if former.is_some_and(|f| crate::id::same(f, id)) {
        next.former_waf_policy = None;
    } else {
        next.waf_policy = None;
    }
}

/// A certificate gone: one a renewal left (read as absent from now on), or the current one.
fn delete_certificate(next: &mut Observed, id: &str) {
    let former = next
        .former_site_certificates
        .iter_mut()
        .find(|(f, _)| crate::id::same(f, id));
    match former {
        Some((_, body)) => *body = None,
        None => next.site_certificate = None,
    }
}

/// `o` after `step` succeeded (long-running operations included).
pub fn apply(o: &Observed, step: &Step) -> Observed {
    let mut next = o.clone();
    match (step.kind, step.method) {
        (StepKind::IntegrationSubnet | StepKind::GatewaySubnet, _) => {
            let mut subnet = step.body.clone();
            subnet["id"] = json!(step.resource_id);
            succeed(&mut subnet);
            let name = subnet["name"].as_str().unwrap_or_default().to_owned();
            next.absorb(&Slot::Subnet(name), Some(subnet));
        }
        (StepKind::Gateway, _) => {
            let mut gw = step.body.clone();
            gw["id"] = json!(step.resource_id);
            // ARM never returns the certificate or its password.
            if let Some(certs) = gw
                .pointer_mut("/properties/sslCertificates")
                .and_then(Value::as_array_mut)
            {
                for c in certs {
                    if let Some(p) = c.get_mut("properties").and_then(Value::as_object_mut) {
                        p.remove("data");
                        p.remove("password");
                    }
                }
            }
            // ARM fills in each user-assigned identity's principalId and clientId.
            if let Some(users) = gw
                .pointer_mut("/identity/userAssignedIdentities")
                .and_then(Value::as_object_mut)
            {
                for entry in users.values_mut() {
                    entry["principalId"] = json!("00000000-0000-4000-8000-0000000000a1");
                    entry["clientId"] = json!("00000000-0000-4000-8000-0000000000c1");
                }
            }
            gw["properties"]["provisioningState"] = json!("Succeeded");
            next.gateway = Some(gw);
        }
        (StepKind::SiteHttpsOnly | StepKind::SiteVnetIntegration, Method::Patch) => {
            if let Some(site) = next.site.as_mut() {
                merge(site, &step.body);
            }
        }
        (StepKind::SiteTlsAndFtp | StepKind::SiteAccessRestrictions, Method::Patch) => {
            if let Some(cfg) = next.site_config.as_mut() {
                merge(cfg, &step.body);
            }
        }
        (StepKind::CosmosVnetRule | StepKind::CosmosLockdown, Method::Patch) => {
            if let Some(c) = next.cosmos.as_mut() {
                merge(c, &step.body);
            }
        }
        (StepKind::RemoveGatewayRule, _) => {
            if let Some(cfg) = next.site_config.as_mut() {
                merge(cfg, &step.body);
            }
        }
        (StepKind::RemoveCosmosVnetRule, _) => {
            if let Some(c) = next.cosmos.as_mut() {
                merge(c, &step.body);
            }
        }
        (StepKind::RemoveSiteVnetIntegration, _) => {
            if let Some(site) = next.site.as_mut() {
                site["properties"]["virtualNetworkSubnetId"] = Value::Null;
            }
        }
        (StepKind::WafPolicy, _) => {
            let mut policy = step.body.clone();
            policy["id"] = json!(step.resource_id);
            policy["properties"]["provisioningState"] = json!("Succeeded");
            next.waf_policy = Some(policy);
        }
        (StepKind::DeleteWafPolicy, _) => delete_policy(&mut next, &step.resource_id),
        (StepKind::SiteCertificate, _) => {
            // ARM keeps neither the PFX nor its password, and computes the thumbprint.
            let mut cert = step.body.clone();
            cert["id"] = json!(step.resource_id);
            if let Some(p) = cert["properties"].as_object_mut() {
                p.remove("pfxBlob");
                p.remove("password");
                let tag = step.body["tags"][crate::TLS_TAG].as_str().unwrap_or("");
                p.insert("thumbprint".into(), json!(format!("THUMB-{tag}")));
            }
            next.site_certificate = Some(cert);
        }
        (StepKind::SiteHostNameBinding, _) => {
            let mut b = step.body.clone();
            b["id"] = json!(step.resource_id);
            next.host_name_binding = Some(b);
        }
        (StepKind::DeleteGateway, _) => next.gateway = None,
        (StepKind::DeleteHostNameBinding, _) => next.host_name_binding = None,
        (StepKind::DeleteSiteCertificate, _) => delete_certificate(&mut next, &step.resource_id),
        (StepKind::DeleteSubnet, _) => {
            if let Some(list) = next
                .vnet
                .as_mut()
                .and_then(|v| v["properties"]["subnets"].as_array_mut())
            {
                list.retain(|s| {
                    !s["id"]
                        .as_str()
                        .is_some_and(|i| crate::id::same(i, &step.resource_id))
                });
            }
        }
        _ => {}
    }
    next
}

/// Server-side: service endpoints and delegations end `Succeeded`.
fn succeed(subnet: &mut Value) {
    subnet["properties"]["provisioningState"] = json!("Succeeded");
    for key in ["serviceEndpoints", "delegations"] {
        if let Some(list) = subnet["properties"][key].as_array_mut() {
            for item in list {
                let target = if key == "delegations" {
                    &mut item["properties"]
                } else {
                    item
                };
                target["provisioningState"] = json!("Succeeded");
            }
        }
    }
}
