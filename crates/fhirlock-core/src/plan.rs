//! `(Desired, Observed) → Plan`: the ordered, minimal changes that take Azure to the end state,
//! each with the precondition that makes it safe (ARM reference §6).
//!
//! Order and why:
//! 1. `SiteHttpsOnly`, `SiteTlsAndFtp`: tightening only, safe at any time.
//! 2. `IntegrationSubnet`: delegation to Microsoft.Web/serverFarms and the Cosmos endpoint must exist
//!    before App Service uses the subnet.
//! 3. `GatewaySubnet`: delegation and the Microsoft.Web endpoint before the gateway is created.
//! 4. `CosmosVnetRule`: admit the integration subnet *before* the site moves into it, so a Cosmos
//!    firewall that is already filtering never cuts the app off (service endpoints change the
//!    source address).
//! 5. `SiteVnetIntegration`: the site joins the integration subnet.
//! 6. `Gateway`: the private-only gateway, once its subnet is ready.
//! 7. `SiteAccessRestrictions`: allow only the gateway subnet, default Deny, SCM locked, once the
//!    gateway is up and the Microsoft.Web endpoint is Succeeded, so the app is never unreachable.
//! 8. `CosmosLockdown`: filter on, only the integration subnet, no IP rules, no bypass, once the
//!    site reaches Cosmos through the subnet.
//!
//! Every write is a read-modify-write of the observed JSON: fields fhirlock does not manage go
//! back as they came.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    Gateway,
    SiteAccessRestrictions,
    CosmosLockdown,
    // Teardown (deletionPolicy Delete), in reverse safe order.
    RemoveGatewayRule,
    RemoveCosmosVnetRule,
    RemoveSiteVnetIntegration,
    DeleteGateway,
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
            StepKind::Gateway => "Gateway",
            StepKind::SiteAccessRestrictions => "SiteAccessRestrictions",
            StepKind::CosmosLockdown => "CosmosLockdown",
            StepKind::RemoveGatewayRule => "RemoveGatewayRule",
            StepKind::RemoveCosmosVnetRule => "RemoveCosmosVnetRule",
            StepKind::RemoveSiteVnetIntegration => "RemoveSiteVnetIntegration",
            StepKind::DeleteGateway => "DeleteGateway",
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
            StepKind::Gateway | StepKind::DeleteGateway => Component::Gateway,
            StepKind::CosmosVnetRule
            | StepKind::CosmosLockdown
            | StepKind::RemoveCosmosVnetRule => Component::Cosmos,
            StepKind::SiteHttpsOnly
            | StepKind::SiteTlsAndFtp
            | StepKind::SiteVnetIntegration
            | StepKind::SiteAccessRestrictions
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

impl Step {
    pub fn ready(&self) -> bool {
        self.waiting_for.is_none()
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
    /// Field changes on resources that already existed: what someone (or something) changed.
    pub fn drift(&self) -> Vec<(String, FieldChange)> {
        self.steps
            .iter()
            .filter(|s| !s.creates)
            .flat_map(|s| {
                s.changes
                    .iter()
                    .map(move |c| (s.resource_id.clone(), c.clone()))
            })
            .collect()
    }
}

const AGW_DELEGATION: &str = "Microsoft.Network/applicationGateways";
const WEB_DELEGATION: &str = "Microsoft.Web/serverFarms";
const GATEWAY_RULE_NAME: &str = "fhirlock-gateway";
const GATEWAY_RULE_PRIORITY: i64 = 100;

/// The plan for one endpoint. Call it only after the pre-flight checks passed.
pub fn plan(d: &Desired, o: &Observed) -> Plan {
    let mut steps = Vec::new();
    steps.extend(site_https_only(d, o));
    steps.extend(site_tls_and_ftp(d, o));
    steps.extend(subnet_step(d, o, StepKind::IntegrationSubnet));
    steps.extend(subnet_step(d, o, StepKind::GatewaySubnet));
    steps.extend(cosmos_vnet_rule(d, o));
    steps.extend(site_vnet_integration(d, o));
    steps.extend(gateway(d, o));
    steps.extend(site_access_restrictions(d, o));
    steps.extend(cosmos_lockdown(d, o));
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

fn subnet_step(d: &Desired, o: &Observed, kind: StepKind) -> Option<Step> {
    let (want, delegation, endpoint, reason) = match kind {
        StepKind::IntegrationSubnet => (
            &d.integration_subnet,
            WEB_DELEGATION,
            "Microsoft.AzureCosmosDB",
            "App Service VNet integration needs the subnet delegated to it, and Cosmos DB admits the subnet through its service endpoint",
        ),
        _ => (
            &d.gateway_subnet,
            AGW_DELEGATION,
            "Microsoft.Web",
            "a private-only gateway needs a delegated subnet, and App Service admits the gateway through the Microsoft.Web endpoint",
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
    if sub.endpoint(endpoint).is_none() {
        sub.properties
            .service_endpoints
            .get_or_insert_with(Vec::new)
            .push(model::ServiceEndpoint {
                service: endpoint.to_owned(),
                locations: Some(vec!["*".into()]),
                ..Default::default()
            });
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
    Some(s)
}

fn cosmos_vnet_rule(d: &Desired, o: &Observed) -> Option<Step> {
    let cosmos = o.cosmos()?;
    let rules = cosmos
        .properties
        .virtual_network_rules
        .clone()
        .unwrap_or_default();
    if rules
        .iter()
        .any(|r| id::same(&r.id, &d.integration_subnet.id))
    {
        return None;
    }
    // Only needed ahead of the lockdown when the site is not integrated yet.
    let mut new_rules: Vec<Value> = rules.iter().map(model::to_json).collect();
    let ignore_missing =
        !endpoint_succeeded(o, &d.integration_subnet.name, "Microsoft.AzureCosmosDB");
    new_rules.push(
        json!({"id": d.integration_subnet.id, "ignoreMissingVNetServiceEndpoint": ignore_missing}),
    );
    let want = json!({"properties": {"virtualNetworkRules": new_rules}});
    let changes = json::diff("", o.cosmos.as_ref(), &want);
    let s = step(
        StepKind::CosmosVnetRule,
        &d.cosmos_id,
        Method::Patch,
        api_version::COSMOS,
        want,
        changes,
        "admit the integration subnet before the site moves into it, so Cosmos DB never cuts the app off",
    );
    let why = o
        .subnet(&d.integration_subnet.name)
        .is_none()
        .then(|| format!("subnet {} to exist", d.integration_subnet.name));
    Some(waiting(s, why))
}

fn site_vnet_integration(d: &Desired, o: &Observed) -> Option<Step> {
    let site = o.site.as_ref()?;
    let want = json!({"properties": {"virtualNetworkSubnetId": d.integration_subnet.id}});
    let current = site
        .pointer("/properties/virtualNetworkSubnetId")
        .and_then(Value::as_str);
    if current.is_some_and(|c| id::same(c, &d.integration_subnet.id)) {
        return None;
    }
    let changes = json::diff("", Some(site), &want);
    let s = step(
        StepKind::SiteVnetIntegration,
        &d.site_id,
        Method::Patch,
        api_version::WEB,
        want,
        changes,
        "the site reaches Cosmos DB through the integration subnet, not the public internet",
    );
    let delegated = o
        .subnet(&d.integration_subnet.name)
        .is_some_and(|s| s.delegated_to(WEB_DELEGATION));
    let admitted = o.cosmos().is_none_or(|c| {
        c.properties.is_virtual_network_filter_enabled != Some(true)
            || c.properties
                .virtual_network_rules
                .iter()
                .flatten()
                .any(|r| id::same(&r.id, &d.integration_subnet.id))
    });
    let why = if !delegated {
        Some(format!(
            "subnet {} delegated to {WEB_DELEGATION}",
            d.integration_subnet.name
        ))
    } else if !admitted {
        Some("Cosmos DB to admit the integration subnet".into())
    } else {
        None
    };
    Some(waiting(s, why))
}

/// The whole gateway body fhirlock wants, merged over what exists so unmanaged fields survive.
pub fn gateway_body(d: &Desired, o: &Observed) -> Option<Value> {
    let g = &d.gateway;
    let gid = &g.id;
    let sub = |kind: &str, name: &str| json!({"id": format!("{gid}/{kind}/{name}")});
    let host = o
        .site()
        .and_then(|s| s.properties.default_host_name)
        .unwrap_or_else(|| format!("{}.azurewebsites.net", d.site_name()));
    let observed_certs = o
        .gateway
        .as_ref()
        .and_then(|v| v.pointer("/properties/sslCertificates"))
        .cloned();
    let certs = match &g.certificate {
        Certificate::Pfx {
            data_base64,
            password,
            ..
        } => {
            json!([{"name": "fhir-tls", "properties": {"data": data_base64, "password": password}}])
        }
        Certificate::KeyVault { secret_id, .. } => {
            json!([{"name": "fhir-tls", "properties": {"keyVaultSecretId": secret_id}}])
        }
        Certificate::Unresolved { .. } => observed_certs?,
    };
    let mut props = json!({
        "sku": {"name": g.tier, "tier": g.tier},
        "autoscaleConfiguration": {"minCapacity": g.min_capacity, "maxCapacity": g.max_capacity},
        "sslPolicy": {"policyType": "Predefined", "policyName": g.ssl_policy},
        "gatewayIPConfigurations": [{"name": "gateway-ip", "properties": {"subnet": {"id": d.gateway_subnet.id}}}],
        "frontendIPConfigurations": [{"name": "private-frontend", "properties": {
            "privateIPAddress": g.private_ip, "privateIPAllocationMethod": "Static", "subnet": {"id": d.gateway_subnet.id}}}],
        "frontendPorts": [{"name": "https-443", "properties": {"port": 443}}],
        "sslCertificates": certs,
        "backendAddressPools": [{"name": "app-service", "properties": {"backendAddresses": [{"fqdn": host}]}}],
        "probes": [{"name": "fhir-metadata", "properties": {
            "protocol": "Https", "path": g.probe_path, "interval": 30, "timeout": 30, "unhealthyThreshold": 3,
            "pickHostNameFromBackendHttpSettings": true, "match": {"statusCodes": ["200-399"]}}}],
        "backendHttpSettingsCollection": [{"name": "app-service-https", "properties": {
            "port": 443, "protocol": "Https", "cookieBasedAffinity": "Disabled", "pickHostNameFromBackendAddress": true,
            "requestTimeout": 30, "probe": sub("probes", "fhir-metadata")}}],
        "httpListeners": [{"name": "fhir-https", "properties": {
            "frontendIPConfiguration": sub("frontendIPConfigurations", "private-frontend"),
            "frontendPort": sub("frontendPorts", "https-443"), "protocol": "Https", "hostNames": [g.host_name],
            "requireServerNameIndication": true, "sslCertificate": sub("sslCertificates", "fhir-tls")}}],
        "requestRoutingRules": [{"name": "fhir", "properties": {
            "ruleType": "Basic", "priority": 100, "httpListener": sub("httpListeners", "fhir-https"),
            "backendAddressPool": sub("backendAddressPools", "app-service"),
            "backendHttpSettings": sub("backendHttpSettingsCollection", "app-service-https")}}],
    });
    if g.tier == "WAF_v2" {
        props["webApplicationFirewallConfiguration"] = json!({"enabled": true, "firewallMode": "Prevention", "ruleSetType": "OWASP", "ruleSetVersion": "3.2"});
    }
    // Anything but an object (a misbehaving proxy's answer) is no gateway to build on; indexing
    // into it would panic.
    let mut body = o
        .gateway
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    body["location"] = json!(g.location);
    let mut tags = body
        .get("tags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    tags.insert(crate::OWNER_TAG.into(), json!(d.owner));
    let marker = g.certificate.marker().or_else(|| {
        tags.get(crate::TLS_TAG)
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if let Some(m) = marker {
        tags.insert(crate::TLS_TAG.into(), json!(m));
    }
    body["tags"] = Value::Object(tags);
    if !body.get("properties").is_some_and(Value::is_object) {
        body["properties"] = json!({});
    }
    for (k, v) in props.as_object().expect("object") {
        body["properties"][k] = v.clone();
    }
    // A PFX needs no identity: whatever identity the gateway has is left as it is.
    if let Certificate::KeyVault { identity_id, .. } = &g.certificate {
        // The identity an earlier keyVaultIdentityId put there, as the tag left on the gateway
        // names it: replaced, not kept beside the new one.
        let previous = o
            .gateway
            .as_ref()
            .and_then(|v| v.pointer("/tags").and_then(|t| t.get(crate::TLS_TAG)))
            .and_then(Value::as_str)
            .and_then(|m| m.rsplit_once(crate::desired::IDENTITY_MARK))
            .map(|(_, digest)| digest.to_owned());
        body["identity"] = gateway_identity(body.get("identity"), identity_id, previous.as_deref());
    }
    Some(body)
}

/// The gateway's `identity` with `identity_id` among its user-assigned identities: ARM reads a
/// `keyVaultSecretId` only as a user-assigned identity of the gateway. Identities someone else
/// put there, and unknown fields, are kept; the one whose digest is `previous` (fhirlock's, for
/// an earlier keyVaultIdentityId) is dropped. The read-only `principalId`/`clientId` ARM adds to
/// each entry (and `principalId`/`tenantId` beside them) are not sent back.
fn gateway_identity(observed: Option<&Value>, identity_id: &str, previous: Option<&str>) -> Value {
    let mut identity = observed
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let o = identity.as_object_mut().expect("object");
    o.remove("principalId");
    o.remove("tenantId");
    let has_user = o
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.to_ascii_lowercase().contains("userassigned"));
    if !has_user {
        o.insert("type".into(), json!("UserAssigned"));
    }
    let mut users = o
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for entry in users.values_mut() {
        if let Some(e) = entry.as_object_mut() {
            e.remove("principalId");
            e.remove("clientId");
        } else {
            *entry = json!({});
        }
    }
    users.retain(|k, _| {
        id::same(k, identity_id) || previous != Some(crate::desired::identity_digest(k).as_str())
    });
    if !users.keys().any(|k| id::same(k, identity_id)) {
        users.insert(identity_id.to_owned(), json!({}));
    }
    o.insert("userAssignedIdentities".into(), Value::Object(users));
    identity
}

/// An `identity` as fhirlock compares it: the type, and the IDs of the user-assigned
/// identities, lower-cased and sorted (ARM fills each entry with principalId and clientId).
fn identity_view(identity: &Value) -> Value {
    let mut ids: Vec<String> = identity
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .map(|k| k.trim_end_matches('/').to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    json!({"type": identity.get("type"), "userAssignedIdentities": ids})
}

/// What of the gateway fhirlock compares: the desired body without secrets ARM never returns,
/// and the observed body cut down to the same shape, with IDs lower-cased.
pub fn gateway_managed_view(desired: &Value, observed: Option<&Value>) -> (Value, Option<Value>) {
    let mut want = json!({"location": desired["location"], "tags": desired["tags"], "properties": desired["properties"]});
    if let Some(certs) = want
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
    normalize_ids(&mut want);
    // The identity is compared when the body carries one (a Key Vault certificate, or one already
    // on the gateway): only its type and the keys of userAssignedIdentities.
    let identity = desired.get("identity").filter(|v| v.is_object());
    if let Some(i) = identity {
        want["identity"] = identity_view(i);
    }
    let got = observed.map(|o| {
        let mut v = project(o, &want);
        normalize_ids(&mut v);
        if let (Some(l), Some(w)) = (
            v.get("location").and_then(Value::as_str),
            want.get("location").and_then(Value::as_str),
        ) && crate::observed::same_region(l, w)
        {
            v["location"] = json!(w);
        }
        if identity.is_some() {
            match o.get("identity").filter(|i| i.is_object()) {
                Some(i) => {
                    let mut seen = identity_view(i);
                    if let (Some(t), Some(w)) =
                        (seen["type"].as_str(), want["identity"]["type"].as_str())
                        && t.eq_ignore_ascii_case(w)
                    {
                        seen["type"] = json!(w);
                    }
                    v["identity"] = seen;
                }
                None => {
                    if let Some(m) = v.as_object_mut() {
                        m.remove("identity");
                    }
                }
            }
        }
        v
    });
    (want, got)
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
    let subnet_ready = o
        .subnet(&d.gateway_subnet.name)
        .is_some_and(|s| s.delegated_to(AGW_DELEGATION))
        && endpoint_succeeded(o, &d.gateway_subnet.name, "Microsoft.Web");
    let why = (!subnet_ready).then(|| {
        format!(
            "subnet {} delegated with its Microsoft.Web endpoint Succeeded",
            d.gateway_subnet.name
        )
    });
    Some(waiting(s, why))
}

fn restriction(subnet: &str) -> Value {
    json!({"name": GATEWAY_RULE_NAME, "action": "Allow", "priority": GATEWAY_RULE_PRIORITY, "vnetSubnetResourceId": subnet})
}

/// The rule list fhirlock wants: everyone's Deny rules, plus one Allow for the gateway subnet
/// (kept as it is if someone already wrote one). Sorted by priority, then name, as compared.
fn wanted_rules(observed: Option<&[IpRestriction]>, allow_gateway: Option<&str>) -> Vec<Value> {
    let real = posture::real_rules(observed);
    let mut out: Vec<IpRestriction> = real.iter().filter(|r| !r.allows()).cloned().collect();
    if let Some(gw) = allow_gateway {
        match real.iter().find(|r| {
            r.allows()
                && r.vnet_subnet_resource_id
                    .as_deref()
                    .is_some_and(|s| id::same(s, gw))
                && r.ip_address.is_none()
        }) {
            Some(existing) => out.push(existing.clone()),
            None => out.push(model::parse(&restriction(gw)).expect("a rule")),
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
        "ipSecurityRestrictions": wanted_rules(p.ip_security_restrictions.as_deref(), Some(gw)),
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "scmIpSecurityRestrictionsUseMain": use_main,
        "scmIpSecurityRestrictions": wanted_rules(p.scm_ip_security_restrictions.as_deref(), None),
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

fn cosmos_lockdown(d: &Desired, o: &Observed) -> Option<Step> {
    o.cosmos.as_ref()?;
    let want = json!({"properties": {
        "isVirtualNetworkFilterEnabled": true,
        "virtualNetworkRules": [{"id": d.integration_subnet.id, "ignoreMissingVNetServiceEndpoint": false}],
        "ipRules": [],
        "networkAclBypass": "None",
        "publicNetworkAccess": "Enabled",
    }});
    let mut current = o.cosmos.clone().unwrap_or_default();
    // ARM may omit ignoreMissingVNetServiceEndpoint when false.
    if let Some(rules) = current
        .pointer_mut("/properties/virtualNetworkRules")
        .and_then(Value::as_array_mut)
    {
        for r in rules {
            if r.get("ignoreMissingVNetServiceEndpoint").is_none() {
                r["ignoreMissingVNetServiceEndpoint"] = json!(false);
            }
        }
    }
    let changes = managed_diff(&current, &want);
    if changes.is_empty() {
        return None;
    }
    let s = step(
        StepKind::CosmosLockdown,
        &d.cosmos_id,
        Method::Patch,
        api_version::COSMOS,
        want,
        changes,
        "only the integration subnet may reach Cosmos DB: filter on, no IP rules, no bypass",
    );
    let integrated = o
        .site()
        .and_then(|s| s.properties.virtual_network_subnet_id)
        .is_some_and(|s| id::same(&s, &d.integration_subnet.id));
    let why = if !integrated {
        Some("the site to be VNet-integrated, so it keeps reaching Cosmos DB".to_owned())
    } else if !endpoint_succeeded(o, &d.integration_subnet.name, "Microsoft.AzureCosmosDB") {
        Some(format!(
            "the Microsoft.AzureCosmosDB endpoint on {} to be Succeeded",
            d.integration_subnet.name
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

/// The teardown for deletionPolicy Delete: remove, in reverse safe order, only what fhirlock
/// created or added. The VNet, the site and the Cosmos account are never deleted, adopted subnets
/// are left, and nothing is re-opened: the site keeps its default Deny, Cosmos its filter.
pub fn teardown(d: &Desired, o: &Observed, created: &[String]) -> Plan {
    let mut steps = Vec::new();
    let gw_subnet = d.gateway_subnet.id.as_str();
    if let Some(cfg) = o.site_config() {
        let rules = posture::real_rules(cfg.properties.ip_security_restrictions.as_deref());
        let ours = |r: &IpRestriction| {
            r.name.as_deref() == Some(GATEWAY_RULE_NAME)
                || (r.allows()
                    && r.vnet_subnet_resource_id
                        .as_deref()
                        .is_some_and(|s| id::same(s, gw_subnet)))
        };
        if rules.iter().any(ours) {
            let keep: Vec<Value> = rules
                .iter()
                .filter(|r| !ours(r))
                .map(model::to_json)
                .collect();
            let want = json!({"properties": {"ipSecurityRestrictions": keep}});
            let changes = json::diff("", o.site_config.as_ref(), &want);
            steps.push(step(StepKind::RemoveGatewayRule, &d.site_config_id(), Method::Patch, api_version::WEB, want, changes,
                "remove fhirlock's access rule for the gateway subnet (the site stays default Deny)"));
        }
    }
    if let Some(c) = o.cosmos() {
        let rules = c
            .properties
            .virtual_network_rules
            .clone()
            .unwrap_or_default();
        if rules
            .iter()
            .any(|r| id::same(&r.id, &d.integration_subnet.id))
        {
            let keep: Vec<Value> = rules
                .iter()
                .filter(|r| !id::same(&r.id, &d.integration_subnet.id))
                .map(model::to_json)
                .collect();
            let want = json!({"properties": {"virtualNetworkRules": keep}});
            let changes = json::diff("", o.cosmos.as_ref(), &want);
            steps.push(step(
                StepKind::RemoveCosmosVnetRule,
                &d.cosmos_id,
                Method::Patch,
                api_version::COSMOS,
                want,
                changes,
                "remove fhirlock's Cosmos DB rule for the integration subnet (the filter stays on)",
            ));
        }
    }
    let integrated = o
        .site()
        .and_then(|s| s.properties.virtual_network_subnet_id)
        .is_some_and(|s| id::same(&s, &d.integration_subnet.id));
    if integrated {
        let change = FieldChange {
            path: "properties.virtualNetworkSubnetId".into(),
            from: Some(json!(d.integration_subnet.id)),
            to: None,
        };
        steps.push(step(
            StepKind::RemoveSiteVnetIntegration,
            &format!("{}/networkConfig/virtualNetwork", d.site_id),
            Method::Delete,
            api_version::WEB,
            Value::Null,
            vec![change],
            "end the site's VNet integration so the integration subnet can be removed",
        ));
    }
    let owned_gateway = o
        .gateway()
        .filter(|g| g.tag(crate::OWNER_TAG) == Some(d.owner.as_str()));
    if owned_gateway.is_some() {
        let change = FieldChange {
            path: "(resource)".into(),
            from: Some(json!(d.gateway.name)),
            to: None,
        };
        steps.push(step(
            StepKind::DeleteGateway,
            &d.gateway.id,
            Method::Delete,
            api_version::NETWORK,
            Value::Null,
            vec![change],
            "delete the gateway fhirlock created",
        ));
    }
    for subnet in [&d.gateway_subnet, &d.integration_subnet] {
        if !created.iter().any(|c| id::same(c, &subnet.id)) || o.subnet(&subnet.name).is_none() {
            continue;
        }
        let change = FieldChange {
            path: "(resource)".into(),
            from: Some(json!(subnet.name)),
            to: None,
        };
        let mut s = step(
            StepKind::DeleteSubnet,
            &subnet.id,
            Method::Delete,
            api_version::NETWORK,
            Value::Null,
            vec![change],
            "delete the subnet fhirlock created",
        );
        let blocked = if std::ptr::eq(subnet, &d.gateway_subnet) {
            owned_gateway.is_some()
        } else {
            integrated
        };
        if blocked {
            s.waiting_for = Some(format!("what uses {} to be removed first", subnet.name));
        }
        steps.push(s);
    }
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [StepKind; 14] = [
        StepKind::SiteHttpsOnly,
        StepKind::SiteTlsAndFtp,
        StepKind::IntegrationSubnet,
        StepKind::GatewaySubnet,
        StepKind::CosmosVnetRule,
        StepKind::SiteVnetIntegration,
        StepKind::Gateway,
        StepKind::SiteAccessRestrictions,
        StepKind::CosmosLockdown,
        StepKind::RemoveGatewayRule,
        StepKind::RemoveCosmosVnetRule,
        StepKind::RemoveSiteVnetIntegration,
        StepKind::DeleteGateway,
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
        assert_eq!(of(Component::Gateway), [Gateway, DeleteGateway]);
        assert_eq!(
            of(Component::AppService),
            [
                SiteHttpsOnly,
                SiteTlsAndFtp,
                SiteVnetIntegration,
                SiteAccessRestrictions,
                RemoveGatewayRule,
                RemoveSiteVnetIntegration
            ]
        );
        assert_eq!(
            of(Component::Cosmos),
            [CosmosVnetRule, CosmosLockdown, RemoveCosmosVnetRule]
        );
    }
}
