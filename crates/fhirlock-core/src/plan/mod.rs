//! `(Desired, Observed) → Plan`: the ordered, minimal changes that take Azure to the end state,
//! each with the precondition that makes it safe (ARM reference §6).
//!
//! Order and why:
//! 1. `SiteHttpsOnly`, `SiteTlsAndFtp`: tightening only, safe at any time.
//! 2. `IntegrationSubnet`: delegation to Microsoft.Web/serverFarms and the Cosmos endpoint must exist
//!    before App Service uses the subnet.
//! 3. `GatewaySubnet`: delegation and the Microsoft.Web endpoint (with a Key Vault certificate,
//!    Microsoft.KeyVault too: the gateway fetches it through that) before the gateway is created.
//! 4. `CosmosVnetRule`: admit the integration subnet *before* the site moves into it, so a Cosmos
//!    firewall that is already filtering never cuts the app off (service endpoints change the
//!    source address); with IP rules and the VNet filter off, that means turning the filter on.
//! 5. `SiteVnetIntegration`: the site joins the integration subnet, once Cosmos DB admits it: no
//!    firewall at all, or the rule in place for the propagation time (`cosmos.rs`).
//! 6. `Gateway`: the private-only gateway, once its subnet is ready.
//! 7. `SiteAccessRestrictions`: allow only the gateway subnet, default Deny, SCM locked, once the
//!    gateway is up and the Microsoft.Web endpoint is Succeeded, so the app is never unreachable.
//! 8. `CosmosLockdown`: filter on, only the integration subnet, no IP rules, no bypass, once the
//!    site reaches Cosmos through the subnet. `publicNetworkAccess` is never written: pre-flight
//!    stops on anything but `Enabled`.
//!
//! 9. `SiteCertificate`, `SiteHostNameBinding` (`hostHeader: Preserve` only): the App Service
//!    serves the FHIR host name; then the gateway passes the Host header through (`host_name.rs`).
//!    A renewed Secret is a new certificate, the binding moves to it, then `DeleteSiteCertificate`
//!    removes the one before.
//!
//! Every write is a read-modify-write of the observed JSON: fields fhirlock does not manage go
//! back as they came.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod cosmos;
mod gateway;
pub mod host_name;
mod precondition;
mod teardown;
pub mod waf;

pub(crate) use cosmos::public as cosmos_public;
pub use cosmos::{Admission, Clock, FIREWALL_PROPAGATION, admission, admitted_since, wait_ends};
pub use gateway::{gateway_body, gateway_managed_view};
pub use precondition::Precondition;
pub use teardown::teardown;

use crate::component::Component;
use crate::desired::{Certificate, Desired};
use crate::id;
use crate::json::{self, FieldChange};
use crate::model::{self, IpRestriction};
use crate::observed::{Observed, api_version};
use crate::posture;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    SiteHttpsOnly,
    SiteTlsAndFtp,
    IntegrationSubnet,
    GatewaySubnet,
    CosmosVnetRule,
    SiteVnetIntegration,
    WafPolicy,
    Gateway,
    SiteAccessRestrictions,
    CosmosLockdown,
    SiteCertificate,
    SiteHostNameBinding,
    /// fhirlock's WAF policy, once a Standard_v2 gateway no longer uses it (also in teardown).
    DeleteWafPolicy,
    // Teardown (deletionPolicy Delete), in reverse safe order.
    RemoveGatewayRule,
    RemoveCosmosVnetRule,
    RemoveSiteVnetIntegration,
    DeleteGateway,
    /// fhirlock's host-name binding, once the gateway that sends the host name is gone.
    DeleteHostNameBinding,
    /// fhirlock's App Service certificate, once no binding uses it (also a renewed one's
    /// predecessor, outside teardown).
    DeleteSiteCertificate,
    DeleteSubnet,
}

impl StepKind {
    /// The step's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::SiteHttpsOnly => "SiteHttpsOnly",
            StepKind::SiteTlsAndFtp => "SiteTlsAndFtp",
            StepKind::IntegrationSubnet => "IntegrationSubnet",
            StepKind::GatewaySubnet => "GatewaySubnet",
            StepKind::CosmosVnetRule => "CosmosVnetRule",
            StepKind::SiteVnetIntegration => "SiteVnetIntegration",
            StepKind::WafPolicy => "WafPolicy",
            StepKind::Gateway => "Gateway",
            StepKind::SiteAccessRestrictions => "SiteAccessRestrictions",
            StepKind::CosmosLockdown => "CosmosLockdown",
            StepKind::DeleteWafPolicy => "DeleteWafPolicy",
            StepKind::SiteCertificate => "SiteCertificate",
            StepKind::SiteHostNameBinding => "SiteHostNameBinding",
            StepKind::RemoveGatewayRule => "RemoveGatewayRule",
            StepKind::RemoveCosmosVnetRule => "RemoveCosmosVnetRule",
            StepKind::RemoveSiteVnetIntegration => "RemoveSiteVnetIntegration",
            StepKind::DeleteGateway => "DeleteGateway",
            StepKind::DeleteHostNameBinding => "DeleteHostNameBinding",
            StepKind::DeleteSiteCertificate => "DeleteSiteCertificate",
            StepKind::DeleteSubnet => "DeleteSubnet",
        }
    }

    /// The component whose condition the step counts against: a pending step keeps it False, and
    /// a change it makes to a converged component is drift.
    pub fn component(self) -> Component {
        match self {
            StepKind::IntegrationSubnet | StepKind::GatewaySubnet | StepKind::DeleteSubnet => {
                Component::Subnets
            }
            StepKind::WafPolicy
            | StepKind::Gateway
            | StepKind::DeleteWafPolicy
            | StepKind::DeleteGateway => Component::Gateway,
            StepKind::CosmosVnetRule
            | StepKind::CosmosLockdown
            | StepKind::RemoveCosmosVnetRule => Component::Cosmos,
            StepKind::SiteHttpsOnly
            | StepKind::SiteTlsAndFtp
            | StepKind::SiteVnetIntegration
            | StepKind::SiteAccessRestrictions
            | StepKind::SiteCertificate
            | StepKind::SiteHostNameBinding
            | StepKind::DeleteHostNameBinding
            | StepKind::DeleteSiteCertificate
            | StepKind::RemoveGatewayRule
            | StepKind::RemoveSiteVnetIntegration => Component::AppService,
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method's name, as serialized (not the HTTP verb's upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Put => "Put",
            Method::Patch => "Patch",
            Method::Delete => "Delete",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Debug` is written out below: a gateway body carries the listener certificate and its password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub kind: StepKind,
    pub resource_id: String,
    pub method: Method,
    pub api_version: String,
    /// The request body: the whole resource for PUT, the managed fields for PATCH.
    pub body: Value,
    /// What changes, field by field (from the observed value to the desired one).
    pub changes: Vec<FieldChange>,
    /// Why the step exists, in one sentence.
    pub reason: String,
    /// `None` when the step may run now; otherwise what it waits for.
    pub waiting_for: Option<String>,
    /// True when the resource does not exist yet.
    pub creates: bool,
    /// The write's `If-Match` / `If-None-Match` (see [`Precondition`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precondition: Option<Precondition>,
}

impl Step {
    pub fn ready(&self) -> bool {
        self.waiting_for.is_none()
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("kind", &self.kind)
            .field("resource_id", &self.resource_id)
            .field("method", &self.method)
            .field("api_version", &self.api_version)
            .field("body", &redacted(&self.body))
            .field("changes", &self.changes)
            .field("reason", &self.reason)
            .field("waiting_for", &self.waiting_for)
            .field("creates", &self.creates)
            .field("precondition", &self.precondition)
            .finish()
    }
}

/// `v` with every certificate secret (a PFX's `data`, any `password`) replaced, for logs and
/// `Debug`. ARM never returns them, so only request bodies hold them.
pub fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let secret = k == "password" || (k == "data" && x.is_string());
                    let x = if secret {
                        json!("<redacted>")
                    } else {
                        redacted(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    /// Drift: field changes to resources that already existed, in components that had converged
    /// (`converged`). Changes made during a component's first convergence are not drift.
    pub fn drift(&self, converged: &[Component]) -> Vec<(String, FieldChange)> {
        self.steps
            .iter()
            .filter(|s| !s.creates && converged.contains(&s.kind.component()))
            .flat_map(|s| {
                s.changes
                    .iter()
                    .map(move |c| (s.resource_id.clone(), c.clone()))
            })
            .collect()
    }
}

const AGW_DELEGATION: &str = "Microsoft.Network/applicationGateways";
const WEB_ENDPOINT: &str = "Microsoft.Web";
const KEY_VAULT_ENDPOINT: &str = "Microsoft.KeyVault";
const WEB_DELEGATION: &str = "Microsoft.Web/serverFarms";
/// The name fhirlock's rule had before rules were named per endpoint ([`crate::peers::rule_name`]);
/// a rule so named is still recognised as fhirlock's when no other endpoint claims its subnet.
const LEGACY_RULE_NAME: &str = "fhirlock-gateway";
/// Every endpoint's allow rule has this priority. Ties are harmless: App Service evaluates rules
/// by ascending priority, ties in the order it returns them (Microsoft Learn, "Azure App Service
/// access restrictions", Site access), and two Allow rules for different subnets admit the same
/// whichever comes first; fhirlock compares lists sorted by (priority, name), and names differ.
const GATEWAY_RULE_PRIORITY: i64 = 100;

/// The plan for one endpoint, the time unknown: the site's move into the integration subnet
/// then waits whenever Cosmos DB admits the subnet by a rule (see [`plan_at`]). Call it only
/// after the pre-flight checks passed.
pub fn plan(d: &Desired, o: &Observed) -> Plan {
    plan_at(d, o, &Clock::default())
}

/// The plan for one endpoint at the time `clock` says. Call it only after the pre-flight checks
/// passed.
pub fn plan_at(d: &Desired, o: &Observed, clock: &Clock) -> Plan {
    let mut steps = Vec::new();
    steps.extend(site_https_only(d, o));
    steps.extend(site_tls_and_ftp(d, o));
    steps.extend(subnet_step(d, o, StepKind::IntegrationSubnet));
    steps.extend(subnet_step(d, o, StepKind::GatewaySubnet));
    steps.extend(cosmos::cosmos_vnet_rule(d, o));
    steps.extend(cosmos::site_vnet_integration(d, o, clock));
    steps.extend(waf::policy_step(d, o));
    steps.extend(gateway(d, o));
    steps.extend(waf::delete_step(d, o));
    steps.extend(site_access_restrictions(d, o));
    steps.extend(cosmos::cosmos_lockdown(d, o));
    // Last: the lockdown never waits for a DNS record outside Azure.
    steps.extend(host_name::site_certificate(d, o));
    steps.extend(host_name::host_name_binding(d, o));
    steps.extend(host_name::delete_former_certificates(d, o));
    Plan { steps }
}

fn step(
    kind: StepKind,
    resource_id: &str,
    method: Method,
    api: &str,
    body: Value,
    changes: Vec<FieldChange>,
    reason: &str,
) -> Step {
    Step {
        kind,
        resource_id: resource_id.to_owned(),
        method,
        api_version: api.to_owned(),
        body,
        changes,
        reason: reason.to_owned(),
        waiting_for: None,
        creates: false,
        precondition: None,
    }
}

fn waiting(mut s: Step, why: Option<String>) -> Step {
    s.waiting_for = why;
    s
}

fn endpoint_succeeded(o: &Observed, subnet: &str, service: &str) -> bool {
    o.subnet(subnet)
        .and_then(|s| s.endpoint(service).cloned())
        .is_some_and(|e| {
            e.provisioning_state
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case("Succeeded"))
        })
}

fn site_https_only(d: &Desired, o: &Observed) -> Option<Step> {
    let site = o.site.as_ref()?;
    let want = json!({"properties": {"httpsOnly": true}});
    let changes = json::diff("", Some(site), &want);
    (!changes.is_empty()).then(|| {
        step(
            StepKind::SiteHttpsOnly,
            &d.site_id,
            Method::Patch,
            api_version::WEB,
            want,
            changes,
            "the site must refuse plain HTTP",
        )
    })
}

fn site_tls_and_ftp(d: &Desired, o: &Observed) -> Option<Step> {
    let cfg = o.site_config()?;
    let mut props = serde_json::Map::new();
    let tls = cfg.properties.min_tls_version.as_deref().unwrap_or("");
    if !matches!(tls, "1.2" | "1.3") {
        props.insert("minTlsVersion".into(), json!("1.2"));
    }
    if !cfg
        .properties
        .ftps_state
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("Disabled"))
    {
        props.insert("ftpsState".into(), json!("Disabled"));
    }
    if props.is_empty() {
        return None;
    }
    let want = json!({ "properties": props });
    let changes = json::diff("", o.site_config.as_ref(), &want);
    Some(step(
        StepKind::SiteTlsAndFtp,
        &d.site_config_id(),
        Method::Patch,
        api_version::WEB,
        want,
        changes,
        "the site must require TLS 1.2 or later and refuse FTP deployment",
    ))
}

/// The service endpoints the gateway subnet needs: `Microsoft.Web`, so App Service admits the
/// gateway by subnet; and, when the certificate comes from Key Vault, `Microsoft.KeyVault`. A
/// gateway with only a private frontend "is not able to egress traffic destined to the
/// Internet", and public IP usage is required for "communication to key vault without use of
/// private endpoints or service endpoints" (Microsoft Learn, "Private Application Gateway
/// deployment", Outbound Internet connectivity); Learn "TLS termination with Key Vault
/// certificates" (Verify Firewall Permissions to Key Vault) names the `Microsoft.KeyVault`
/// service endpoint on the gateway's subnet. A PFX certificate is uploaded with the PUT and
/// needs no path.
pub fn gateway_subnet_services(d: &Desired) -> &'static [&'static str] {
    match d.gateway.certificate {
        Certificate::KeyVault { .. } => &[WEB_ENDPOINT, KEY_VAULT_ENDPOINT],
        _ => &[WEB_ENDPOINT],
    }
}

fn subnet_step(d: &Desired, o: &Observed, kind: StepKind) -> Option<Step> {
    let (want, delegation, endpoints, reason): (_, _, &[&str], _) = match kind {
        StepKind::IntegrationSubnet => (
            &d.integration_subnet,
            WEB_DELEGATION,
            &["Microsoft.AzureCosmosDB"],
            "App Service VNet integration needs the subnet delegated to it, and Cosmos DB admits the subnet through its service endpoint",
        ),
        _ => (
            &d.gateway_subnet,
            AGW_DELEGATION,
            gateway_subnet_services(d),
            match d.gateway.certificate {
                Certificate::KeyVault { .. } => {
                    "a private-only gateway needs a delegated subnet, App Service admits the gateway through the Microsoft.Web endpoint, and the gateway, which has no internet egress, fetches its Key Vault certificate through the Microsoft.KeyVault endpoint"
                }
                _ => {
                    "a private-only gateway needs a delegated subnet, and App Service admits the gateway through the Microsoft.Web endpoint"
                }
            },
        ),
    };
    o.vnet.as_ref()?;
    let observed = o.subnet_json(&want.name);
    let creates = observed.is_none();
    let mut body = observed.clone().unwrap_or_else(
        || json!({"name": want.name, "properties": {"addressPrefix": want.prefix}}),
    );
    let mut sub: model::Subnet = model::parse(&body).ok()?;
    if !sub.delegated_to(delegation) {
        sub.properties
            .delegations
            .get_or_insert_with(Vec::new)
            .push(model::Delegation {
                name: Some(delegation.replace('/', ".")),
                properties: model::DelegationProperties {
                    service_name: delegation.to_owned(),
                    ..Default::default()
                },
                ..Default::default()
            });
    }
    // Added to what is there: endpoints someone else put on the subnet stay.
    for endpoint in endpoints {
        if sub.endpoint(endpoint).is_none() {
            sub.properties
                .service_endpoints
                .get_or_insert_with(Vec::new)
                .push(model::ServiceEndpoint {
                    service: (*endpoint).to_owned(),
                    locations: Some(vec!["*".into()]),
                    ..Default::default()
                });
        }
    }
    body = model::to_json(&sub);
    let mut changes = Vec::new();
    if creates {
        changes.push(FieldChange {
            path: "properties.addressPrefix".into(),
            from: None,
            to: Some(json!(want.prefix)),
        });
    }
    changes.extend(failed_state(observed.as_ref()));
    for field in ["delegations", "serviceEndpoints"] {
        let before = observed
            .as_ref()
            .and_then(|v| v.pointer(&format!("/properties/{field}")))
            .cloned();
        let after = body.pointer(&format!("/properties/{field}")).cloned();
        if before != after {
            changes.push(FieldChange {
                path: format!("properties.{field}"),
                from: before,
                to: after,
            });
        }
    }
    if changes.is_empty() {
        return None;
    }
    crate::read_only::strip(crate::read_only::Kind::Subnet, &mut body);
    let mut s = step(
        kind,
        &want.id,
        Method::Put,
        api_version::NETWORK,
        body,
        changes,
        reason,
    );
    s.creates = creates;
    s.precondition = Precondition::for_etagged(creates, observed.as_ref());
    Some(s)
}

/// `observed` cut down to the keys `shape` names (array items matched by position).
fn project(observed: &Value, shape: &Value) -> Value {
    match (observed, shape) {
        (Value::Object(o), Value::Object(s)) => Value::Object(
            s.keys()
                .filter_map(|k| o.get(k).map(|v| (k.clone(), project(v, &s[k]))))
                .collect(),
        ),
        (Value::Array(o), Value::Array(s)) if o.len() == s.len() => {
            Value::Array(o.iter().zip(s).map(|(a, b)| project(a, b)).collect())
        }
        (Value::Array(o), Value::Array(s)) if !s.is_empty() => {
            Value::Array(o.iter().map(|a| project(a, &s[0])).collect())
        }
        (o, _) => o.clone(),
    }
}

fn normalize_ids(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if (k == "id" || k.ends_with("ResourceId") || k.ends_with("SubnetId"))
                    && let Value::String(s) = x
                {
                    *s = s.to_ascii_lowercase();
                } else {
                    normalize_ids(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize_ids),
        _ => {}
    }
}

fn gateway(d: &Desired, o: &Observed) -> Option<Step> {
    let body = gateway_body(d, o)?;
    let (want, got) = gateway_managed_view(&body, o.gateway.as_ref());
    let mut changes = json::diff("", got.as_ref(), &want);
    changes.extend(waf::gateway_removals(d, o));
    changes.extend(failed_state(o.gateway.as_ref()));
    if got.is_some() && changes.is_empty() {
        return None;
    }
    let creates = o.gateway.is_none();
    let changes = if creates {
        vec![FieldChange {
            path: "(resource)".into(),
            from: None,
            to: Some(json!(format!(
                "private-only gateway at {}",
                d.gateway.private_ip
            ))),
        }]
    } else {
        changes
    };
    let mut s = step(
        StepKind::Gateway,
        &d.gateway.id,
        Method::Put,
        api_version::NETWORK,
        body,
        changes,
        "the only way in: a private-only Application Gateway with an HTTPS listener for the FHIR host name",
    );
    s.creates = creates;
    s.precondition = Precondition::for_etagged(creates, o.gateway.as_ref());
    let services = gateway_subnet_services(d);
    let subnet_ready = o
        .subnet(&d.gateway_subnet.name)
        .is_some_and(|s| s.delegated_to(AGW_DELEGATION))
        && services
            .iter()
            .all(|svc| endpoint_succeeded(o, &d.gateway_subnet.name, svc));
    let why = (!subnet_ready).then(|| {
        format!(
            "subnet {} delegated with its {} endpoint{} Succeeded",
            d.gateway_subnet.name,
            services.join(" and "),
            if services.len() > 1 { "s" } else { "" }
        )
    });
    // Both waits, so that a plan shows the policy the gateway also needs.
    let why = match (why, waf::gateway_waits_for(d, o)) {
        (Some(a), Some(b)) => Some(format!("{a}, and {b}")),
        (a, b) => a.or(b),
    };
    Some(waiting(s, why))
}

/// The tags to PUT on a resource fhirlock owns: the ones it has, kept (they are not ours to
/// drop), and the owner's.
fn owned_tags(body: &Value, owner: &str) -> serde_json::Map<String, Value> {
    let mut tags = body
        .get("tags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    tags.insert(crate::OWNER_TAG.into(), json!(owner));
    tags
}

fn restriction(owner: &str, subnet: &str) -> Value {
    json!({"name": crate::peers::rule_name(owner), "action": "Allow", "priority": GATEWAY_RULE_PRIORITY, "vnetSubnetResourceId": subnet})
}

/// An allow rule for exactly this subnet (no address with it): the rule that admits a gateway.
fn allows_subnet(r: &IpRestriction, subnet: &str) -> bool {
    r.allows()
        && r.vnet_subnet_resource_id
            .as_deref()
            .is_some_and(|s| id::same(s, subnet))
        && r.ip_address.is_none()
}

/// The rule list fhirlock wants: everyone's Deny rules, one Allow for this endpoint's gateway
/// subnet (kept as it is if someone already wrote one), and the Allow rules of the peers that
/// declare the same site (`peers`: their gateway subnets, kept as they are, never added: each
/// endpoint writes its own). Sorted by priority, then name, as compared.
fn wanted_rules(
    observed: Option<&[IpRestriction]>,
    allow_gateway: Option<(&str, &str)>,
    peers: &[String],
) -> Vec<Value> {
    let real = posture::real_rules(observed);
    let mut out: Vec<IpRestriction> = real.iter().filter(|r| !r.allows()).cloned().collect();
    for peer in peers {
        if allow_gateway.is_some_and(|(_, gw)| id::same(gw, peer)) {
            continue;
        }
        out.extend(real.iter().find(|r| allows_subnet(r, peer)).cloned());
    }
    if let Some((owner, gw)) = allow_gateway {
        match real.iter().find(|r| allows_subnet(r, gw)) {
            Some(existing) => out.push(existing.clone()),
            None => out.push(model::parse(&restriction(owner, gw)).expect("a rule")),
        }
    }
    out.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    out.iter().map(model::to_json).collect()
}

fn sorted_real(observed: Option<&[IpRestriction]>) -> Vec<Value> {
    let mut r = posture::real_rules(observed);
    r.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    r.iter().map(model::to_json).collect()
}

fn site_access_restrictions(d: &Desired, o: &Observed) -> Option<Step> {
    let cfg = o.site_config()?;
    let p = &cfg.properties;
    let gw = d.gateway_subnet.id.as_str();
    let use_main = d.scm == fhirlock_api::v1alpha1::ScmSiteLock::LockedLikeMain;
    let want = json!({"properties": {
        "ipSecurityRestrictions": wanted_rules(p.ip_security_restrictions.as_deref(), Some((&d.owner, gw)), &crate::peers::site_gateway_subnets(d)),
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "scmIpSecurityRestrictionsUseMain": use_main,
        "scmIpSecurityRestrictions": wanted_rules(p.scm_ip_security_restrictions.as_deref(), None, &[]),
        "scmIpSecurityRestrictionsDefaultAction": "Deny",
    }});
    let mut current = o.site_config.clone().unwrap_or_default();
    current["properties"]["ipSecurityRestrictions"] =
        json!(sorted_real(p.ip_security_restrictions.as_deref()));
    current["properties"]["scmIpSecurityRestrictions"] =
        json!(sorted_real(p.scm_ip_security_restrictions.as_deref()));
    let changes = managed_diff(&current, &want);
    if changes.is_empty() {
        return None;
    }
    let s = step(
        StepKind::SiteAccessRestrictions,
        &d.site_config_id(),
        Method::Patch,
        api_version::WEB,
        want,
        changes,
        "only the gateway subnet may reach the site; everything else, the SCM site included, is denied",
    );
    let gateway_up = o
        .gateway()
        .is_some_and(|g| g.properties.provisioning_state.as_deref() == Some("Succeeded"));
    let why = if !gateway_up {
        Some(format!(
            "gateway {} to be Succeeded, so the app stays reachable",
            d.gateway.name
        ))
    } else if !endpoint_succeeded(o, &d.gateway_subnet.name, "Microsoft.Web") {
        Some(format!(
            "the Microsoft.Web endpoint on {} to be Succeeded",
            d.gateway_subnet.name
        ))
    } else {
        None
    };
    Some(waiting(s, why))
}

/// A resource whose last operation failed is put again: that is how ARM recovers it.
fn failed_state(observed: Option<&Value>) -> Option<FieldChange> {
    let state = observed?.pointer("/properties/provisioningState")?;
    state
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("Failed"))
        .then(|| FieldChange {
            path: "properties.provisioningState".into(),
            from: Some(state.clone()),
            to: Some(json!("Succeeded")),
        })
}

/// The changes from `observed` to `want`, comparing only what `want` names, IDs without case.
fn managed_diff(observed: &Value, want: &Value) -> Vec<FieldChange> {
    let mut want = want.clone();
    normalize_ids(&mut want);
    let mut got = project(observed, &want);
    normalize_ids(&mut got);
    // Compare the projection, but show what is really there.
    json::diff("", Some(&got), &want)
        .into_iter()
        .map(|c| FieldChange {
            from: json::at(observed, &c.path).cloned(),
            ..c
        })
        .collect()
}
#[cfg(test)]
mod tests;
