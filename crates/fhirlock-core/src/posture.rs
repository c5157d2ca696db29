//! Posture: every way the FHIR API or its data is reachable other than through the gateway
//! (findings, with stable codes), and the exposure relation the planner must never widen.
//! The catalogue is documented in `docs/posture.md`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::component::Component;
use crate::desired::{Certificate, Desired};
use crate::id;
use crate::model::{CosmosProperties, IpRestriction, Site, SiteConfigProperties};
use crate::observed::Observed;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    High,
    Medium,
    Low,
    Advisory,
}

impl Severity {
    /// The name, as serialized and as status, audit output and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "High",
            Severity::Medium => "Medium",
            Severity::Low => "Low",
            Severity::Advisory => "Advisory",
        }
    }
}

/// A finding's stable code; part of the API (status, audit output, metrics), documented in
/// `docs/posture.md`. Serialized as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FindingCode {
    SiteAllowsOtherSources,
    SiteDefaultAllow,
    ScmSitePublic,
    SiteNotVnetIntegrated,
    HttpsOnlyDisabled,
    MinTlsBelow12,
    FtpEnabled,
    HostNameNotBound,
    GatewayPublicFrontend,
    WafPolicyNotAttached,
    WafPolicyDisabled,
    WafDetectionMode,
    GatewaySubnetMissingWebEndpoint,
    GatewaySubnetMissingDelegation,
    GatewayKeyVaultUnreachable,
    IntegrationSubnetMissingCosmosEndpoint,
    CosmosVnetFilterOff,
    CosmosIpRule,
    CosmosForeignVnetRule,
    CosmosAzureServicesBypass,
    CosmosKeyAuthEnabled,
}

impl FindingCode {
    /// Every code, in catalogue order.
    pub const ALL: &'static [FindingCode] = &[
        FindingCode::SiteAllowsOtherSources,
        FindingCode::SiteDefaultAllow,
        FindingCode::ScmSitePublic,
        FindingCode::SiteNotVnetIntegrated,
        FindingCode::HttpsOnlyDisabled,
        FindingCode::MinTlsBelow12,
        FindingCode::FtpEnabled,
        FindingCode::HostNameNotBound,
        FindingCode::GatewayPublicFrontend,
        FindingCode::WafPolicyNotAttached,
        FindingCode::WafPolicyDisabled,
        FindingCode::WafDetectionMode,
        FindingCode::GatewaySubnetMissingWebEndpoint,
        FindingCode::GatewaySubnetMissingDelegation,
        FindingCode::GatewayKeyVaultUnreachable,
        FindingCode::IntegrationSubnetMissingCosmosEndpoint,
        FindingCode::CosmosVnetFilterOff,
        FindingCode::CosmosIpRule,
        FindingCode::CosmosForeignVnetRule,
        FindingCode::CosmosAzureServicesBypass,
        FindingCode::CosmosKeyAuthEnabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::SiteAllowsOtherSources => "SiteAllowsOtherSources",
            FindingCode::SiteDefaultAllow => "SiteDefaultAllow",
            FindingCode::ScmSitePublic => "ScmSitePublic",
            FindingCode::SiteNotVnetIntegrated => "SiteNotVnetIntegrated",
            FindingCode::HttpsOnlyDisabled => "HttpsOnlyDisabled",
            FindingCode::MinTlsBelow12 => "MinTlsBelow12",
            FindingCode::FtpEnabled => "FtpEnabled",
            FindingCode::HostNameNotBound => "HostNameNotBound",
            FindingCode::GatewayPublicFrontend => "GatewayPublicFrontend",
            FindingCode::WafPolicyNotAttached => "WafPolicyNotAttached",
            FindingCode::WafPolicyDisabled => "WafPolicyDisabled",
            FindingCode::WafDetectionMode => "WafDetectionMode",
            FindingCode::GatewaySubnetMissingWebEndpoint => "GatewaySubnetMissingWebEndpoint",
            FindingCode::GatewaySubnetMissingDelegation => "GatewaySubnetMissingDelegation",
            FindingCode::GatewayKeyVaultUnreachable => "GatewayKeyVaultUnreachable",
            FindingCode::IntegrationSubnetMissingCosmosEndpoint => {
                "IntegrationSubnetMissingCosmosEndpoint"
            }
            FindingCode::CosmosVnetFilterOff => "CosmosVnetFilterOff",
            FindingCode::CosmosIpRule => "CosmosIpRule",
            FindingCode::CosmosForeignVnetRule => "CosmosForeignVnetRule",
            FindingCode::CosmosAzureServicesBypass => "CosmosAzureServicesBypass",
            FindingCode::CosmosKeyAuthEnabled => "CosmosKeyAuthEnabled",
        }
    }

    /// The component whose condition the finding keeps False. `None` for the subnets' findings
    /// (SubnetsReady is judged by the pending steps alone) and for the advisory.
    pub fn component(self) -> Option<Component> {
        use FindingCode::*;
        match self {
            GatewayPublicFrontend | WafPolicyNotAttached | WafPolicyDisabled | WafDetectionMode => {
                Some(Component::Gateway)
            }
            SiteAllowsOtherSources
            | SiteDefaultAllow
            | ScmSitePublic
            | SiteNotVnetIntegrated
            | HttpsOnlyDisabled
            | MinTlsBelow12
            | FtpEnabled
            | HostNameNotBound => Some(Component::AppService),
            CosmosVnetFilterOff
            | CosmosIpRule
            | CosmosForeignVnetRule
            | CosmosAzureServicesBypass => Some(Component::Cosmos),
            GatewaySubnetMissingWebEndpoint
            | GatewaySubnetMissingDelegation
            | GatewayKeyVaultUnreachable
            | IntegrationSubnetMissingCosmosEndpoint
            | CosmosKeyAuthEnabled => None,
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    pub resource_id: String,
    pub message: String,
}

impl Finding {
    /// Blocking findings make `Ready` False and `fhirlock audit` exit 1; advisories do neither.
    pub fn is_blocking(&self) -> bool {
        self.severity != Severity::Advisory
    }
}

pub(crate) fn finding(
    code: FindingCode,
    severity: Severity,
    resource_id: &str,
    message: String,
) -> Finding {
    Finding {
        code,
        severity,
        resource_id: resource_id.to_owned(),
        message,
    }
}

/// The findings for one observed estate, by resource: site, gateway, subnets, Cosmos DB.
pub fn findings(d: &Desired, o: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(cfg) = o.site_config() {
        site_config_findings(d, &cfg.properties, &mut out);
    }
    if let Some(site) = o.site() {
        site_findings(d, &site, &mut out);
    }
    if let Some(gw) = o.gateway() {
        for fe in gw.public_frontends() {
            out.push(finding(
                FindingCode::GatewayPublicFrontend,
                Severity::High,
                &d.gateway.id,
                format!("the gateway has a public frontend {fe}, so the internet reaches the FHIR API through it"),
            ));
        }
    }
    if o.site.is_some() && d.preserves_host() && !crate::plan::host_name::binding_in_place(o) {
        out.push(finding(
            FindingCode::HostNameNotBound,
            Severity::Medium,
            &d.site_id,
            format!(
                "hostHeader is Preserve, but the site has no SNI binding of {} with the certificate fhirlock uploaded, so the gateway still sends the app's default host name and the FHIR server's absolute URLs name it",
                d.gateway.host_name
            ),
        ));
    }
    out.extend(crate::plan::waf::findings(d, o));
    subnet_findings(d, o, &mut out);
    if let Some(c) = o.cosmos() {
        cosmos_findings(d, &c.properties, &mut out);
    }
    out
}

fn site_config_findings(d: &Desired, p: &SiteConfigProperties, out: &mut Vec<Finding>) {
    let gw_subnet = &d.gateway_subnet.id;
    // Another endpoint's gateway on the same site is a way in by design, not a back door.
    let peers = crate::peers::site_gateway_subnets(d);
    let admitted =
        |r: &IpRestriction| allows_only(r, gw_subnet) || peers.iter().any(|s| allows_only(r, s));
    site_config_checks(&d.site_id, p, gw_subnet, &admitted, out);
}

/// The `config/web` findings of the site `site_id`. `admitted` tells the allow rules that are a
/// way in by design, `gw_subnet` the one subnet the SCM site may admit; without a spec
/// (`fhirlock scan`) nothing is admitted and `gw_subnet` is empty.
pub(crate) fn site_config_checks(
    site_id: &str,
    p: &SiteConfigProperties,
    gw_subnet: &str,
    admitted: &dyn Fn(&IpRestriction) -> bool,
    out: &mut Vec<Finding>,
) {
    let rules = real_rules(p.ip_security_restrictions.as_deref());
    for r in rules.iter().filter(|r| r.allows() && !admitted(r)) {
        out.push(finding(
            FindingCode::SiteAllowsOtherSources,
            Severity::High,
            site_id,
            format!("access restriction {} allows {} to reach the FHIR API directly, bypassing the gateway", rule_name(r), describe_source(r)),
        ));
    }
    if unmatched_allows(p.ip_security_restrictions_default_action.as_deref(), &rules) {
        out.push(finding(
            FindingCode::SiteDefaultAllow,
            Severity::High,
            site_id,
            "the site's unmatched action is Allow, so any internet address reaches the FHIR API directly".into(),
        ));
    }
    if let Some(how) = scm_exposure(p, gw_subnet) {
        out.push(finding(
            FindingCode::ScmSitePublic,
            Severity::High,
            site_id,
            format!("the SCM (Kudu) site is reachable: {how}"),
        ));
    }
    let tls = p.min_tls_version.as_deref().unwrap_or("1.2");
    if tls_below_12(tls) {
        out.push(finding(
            FindingCode::MinTlsBelow12,
            Severity::Medium,
            site_id,
            format!("the site accepts TLS {tls}, below 1.2"),
        ));
    }
    let ftps = p.ftps_state.as_deref().unwrap_or("AllAllowed");
    if !ftps.eq_ignore_ascii_case("Disabled") {
        out.push(finding(FindingCode::FtpEnabled, Severity::Medium, site_id, format!("FTP deployment is allowed (ftpsState {ftps}): a deployment path outside the gateway")));
    }
}

fn site_findings(d: &Desired, site: &Site, out: &mut Vec<Finding>) {
    let integrated = site
        .properties
        .virtual_network_subnet_id
        .as_deref()
        .is_some_and(|s| id::same(s, &d.integration_subnet.id));
    site_checks(&d.site_id, site, integrated, out);
}

/// The site's own findings; `integrated` says whether its VNet integration is the one wanted
/// (without a spec: whether it has any).
pub(crate) fn site_checks(site_id: &str, site: &Site, integrated: bool, out: &mut Vec<Finding>) {
    if site.properties.https_only != Some(true) {
        out.push(finding(
            FindingCode::HttpsOnlyDisabled,
            Severity::Medium,
            site_id,
            "the site answers plain HTTP (httpsOnly is off)".into(),
        ));
    }
    if !integrated {
        out.push(finding(
            FindingCode::SiteNotVnetIntegrated,
            Severity::Medium,
            site_id,
            "the site is not VNet-integrated with the integration subnet, so its calls to Cosmos DB leave over the public internet".into(),
        ));
    }
}

fn subnet_findings(d: &Desired, o: &Observed, out: &mut Vec<Finding>) {
    let gw_subnet = &d.gateway_subnet.id;
    match o.subnet(&d.gateway_subnet.name) {
        Some(s) => {
            if s.endpoint("Microsoft.Web").is_none() {
                out.push(finding(
                    FindingCode::GatewaySubnetMissingWebEndpoint,
                    Severity::Medium,
                    gw_subnet,
                    "the gateway subnet has no Microsoft.Web service endpoint, so App Service cannot admit the gateway by subnet".into(),
                ));
            }
            if !s.delegated_to("Microsoft.Network/applicationGateways") {
                out.push(finding(
                    FindingCode::GatewaySubnetMissingDelegation,
                    Severity::Medium,
                    gw_subnet,
                    "the gateway subnet is not delegated to Microsoft.Network/applicationGateways, which a private-only gateway requires".into(),
                ));
            }
        }
        None => out.push(finding(
            FindingCode::GatewaySubnetMissingWebEndpoint,
            Severity::Medium,
            gw_subnet,
            "the gateway subnet does not exist yet".into(),
        )),
    }
    // A Key Vault certificate is fetched by the gateway itself, which with a private frontend
    // only has no internet egress: it needs the Microsoft.KeyVault endpoint (or a private
    // endpoint of the vault, which fhirlock does not read) on its subnet (see
    // `plan::gateway_subnet_services`).
    if matches!(d.gateway.certificate, Certificate::KeyVault { .. })
        && o.subnet(&d.gateway_subnet.name)
            .and_then(|s| s.endpoint("Microsoft.KeyVault").cloned())
            .is_none()
    {
        out.push(finding(
            FindingCode::GatewayKeyVaultUnreachable,
            Severity::Medium,
            gw_subnet,
            "the gateway's certificate comes from Key Vault, but the gateway subnet has no Microsoft.KeyVault service endpoint; a private-only gateway has no internet egress, so it cannot fetch the certificate".into(),
        ));
    }
    if o.subnet(&d.integration_subnet.name)
        .and_then(|s| s.endpoint("Microsoft.AzureCosmosDB").cloned())
        .is_none()
    {
        out.push(finding(
            FindingCode::IntegrationSubnetMissingCosmosEndpoint,
            Severity::Medium,
            &d.integration_subnet.id,
            "the integration subnet has no Microsoft.AzureCosmosDB service endpoint, so Cosmos DB cannot admit it by subnet".into(),
        ));
    }
}

fn cosmos_findings(d: &Desired, p: &CosmosProperties, out: &mut Vec<Finding>) {
    let peers = crate::peers::cosmos_subnets(d);
    let admitted =
        |s: &str| id::same(s, &d.integration_subnet.id) || peers.iter().any(|p| id::same(s, p));
    cosmos_checks(&d.cosmos_id, p, &admitted, out);
}

/// The Cosmos DB account's findings. `admitted` tells the VNet rules that are a way in by design;
/// without a spec (`fhirlock scan`) which subnet is right is unknown, so every rule is.
pub(crate) fn cosmos_checks(
    cosmos_id: &str,
    p: &CosmosProperties,
    admitted: &dyn Fn(&str) -> bool,
    out: &mut Vec<Finding>,
) {
    if p.is_virtual_network_filter_enabled != Some(true) {
        out.push(finding(
            FindingCode::CosmosVnetFilterOff,
            Severity::High,
            cosmos_id,
            if p.ip_rules.as_ref().is_none_or(Vec::is_empty) {
                "the Cosmos DB virtual-network filter is off and there are no IP rules, so every network reaches the data".into()
            } else {
                "the Cosmos DB virtual-network filter is off, so the integration subnet is not how the data is reached".into()
            },
        ));
    }
    for r in p.ip_rules.iter().flatten() {
        out.push(finding(
            FindingCode::CosmosIpRule,
            Severity::High,
            cosmos_id,
            format!(
                "Cosmos DB IP rule {} lets that address range reach the data directly",
                r.ip_address_or_range
            ),
        ));
    }
    for r in p
        .virtual_network_rules
        .iter()
        .flatten()
        .filter(|r| !admitted(&r.id))
    {
        out.push(finding(
            FindingCode::CosmosForeignVnetRule,
            Severity::High,
            cosmos_id,
            format!(
                "Cosmos DB admits subnet {}, which is not the integration subnet",
                r.id
            ),
        ));
    }
    if p.network_acl_bypass
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("AzureServices"))
    {
        out.push(finding(
            FindingCode::CosmosAzureServicesBypass,
            Severity::High,
            cosmos_id,
            "Cosmos DB lets Azure services bypass its firewall (networkAclBypass AzureServices)"
                .into(),
        ));
    }
    if p.disable_local_auth != Some(true) {
        out.push(finding(
            FindingCode::CosmosKeyAuthEnabled,
            Severity::Advisory,
            cosmos_id,
            "Cosmos DB accepts account keys; prefer Entra ID data-plane RBAC and disableLocalAuth (fhirlock reports this, it does not change it)".into(),
        ));
    }
}

/// Rules as written, without the synthetic allow/deny-all entry ARM appends on read.
pub fn real_rules(rules: Option<&[IpRestriction]>) -> Vec<IpRestriction> {
    rules
        .unwrap_or_default()
        .iter()
        .filter(|r| !r.is_synthetic())
        .cloned()
        .collect()
}

fn allows_only(r: &IpRestriction, subnet_id: &str) -> bool {
    r.vnet_subnet_resource_id
        .as_deref()
        .is_some_and(|s| id::same(s, subnet_id))
        && r.ip_address.as_deref().is_none_or(str::is_empty)
}

/// With no rules the unmatched action is Allow; with rules and no explicit default, Deny.
fn unmatched_allows(default_action: Option<&str>, rules: &[IpRestriction]) -> bool {
    match default_action {
        Some(a) => a.eq_ignore_ascii_case("Allow"),
        None => rules.is_empty(),
    }
}

fn scm_exposure(p: &SiteConfigProperties, gw_subnet: &str) -> Option<String> {
    if p.scm_ip_security_restrictions_use_main == Some(true) {
        // Inherits the main site's rules; those are reported on the site itself.
        return None;
    }
    let rules = real_rules(p.scm_ip_security_restrictions.as_deref());
    if let Some(r) = rules
        .iter()
        .find(|r| r.allows() && !allows_only(r, gw_subnet))
    {
        return Some(format!(
            "rule {} allows {}",
            rule_name(r),
            describe_source(r)
        ));
    }
    unmatched_allows(
        p.scm_ip_security_restrictions_default_action.as_deref(),
        &rules,
    )
    .then(|| "its unmatched action is Allow and it does not use the main site's rules".to_owned())
}

fn rule_name(r: &IpRestriction) -> String {
    r.name
        .clone()
        .unwrap_or_else(|| format!("at priority {}", r.priority.unwrap_or_default()))
}

fn describe_source(r: &IpRestriction) -> String {
    match (&r.vnet_subnet_resource_id, &r.ip_address, r.tag.as_deref()) {
        (Some(s), _, _) => format!("subnet {s}"),
        (None, Some(a), Some(t)) if t.eq_ignore_ascii_case("ServiceTag") => {
            format!("service tag {a}")
        }
        (None, Some(a), _) => format!("addresses {a}"),
        _ => "an unspecified source".into(),
    }
}

fn tls_below_12(v: &str) -> bool {
    matches!(v.trim(), "1.0" | "1.1")
}

/// Who can reach what. Coarse on purpose: enough to say whether a change opens a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Site,
    Scm,
    Cosmos,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Internet,
    Addresses(String),
    ServiceTag(String),
    AzureServices,
    /// A subnet (lower-cased ID) admitted through its service endpoint.
    Subnet(String),
    GatewayPublicFrontend,
    /// Whoever reaches a private endpoint connection (its lower-cased ID): "Access restrictions
    /// don't apply to traffic entering through a private endpoint" (Microsoft Learn, "Azure App
    /// Service access restrictions"), and Cosmos DB's firewall rules are for public traffic.
    PrivateEndpoint(String),
    /// Whoever a Network Security Perimeter admits (`publicNetworkAccess: SecuredByPerimeter`);
    /// fhirlock does not read perimeters.
    Perimeter,
}

pub type Exposure = BTreeSet<(Target, Source)>;

/// Whether the site's public endpoint is open. Unset (or empty) `publicNetworkAccess` is enabled
/// "unless a private endpoint exists which changes the behavior to disable access" (Microsoft
/// Learn, "Azure App Service access restrictions", App access). Shared by [`exposure`] and the
/// spec-less scan, so both judge a site alike.
pub fn site_public(o: &Observed) -> bool {
    match o
        .site()
        .and_then(|s| s.properties.public_network_access)
        .as_deref()
    {
        None | Some("") => o.site_private_endpoint_ids().is_empty(),
        Some(a) => a.eq_ignore_ascii_case("Enabled"),
    }
}

pub fn exposure(o: &Observed) -> Exposure {
    let mut out = Exposure::new();
    let subnets = o.subnets();
    let has_endpoint = |sid: &str, svc: &str| {
        subnets
            .iter()
            .any(|s| s.id.as_deref().is_some_and(|i| id::same(i, sid)) && s.endpoint(svc).is_some())
    };
    let site_pes = o.site_private_endpoint_ids();
    let site_access = o.site().and_then(|s| s.properties.public_network_access);
    if o.site.is_some() {
        for pe in &site_pes {
            out.insert((Target::Site, Source::PrivateEndpoint(pe.clone())));
            out.insert((Target::Scm, Source::PrivateEndpoint(pe.clone())));
        }
        if site_access.is_some_and(|a| a.eq_ignore_ascii_case("SecuredByPerimeter")) {
            out.insert((Target::Site, Source::Perimeter));
            out.insert((Target::Scm, Source::Perimeter));
        }
    }
    if let (Some(cfg), true) = (o.site_config(), site_public(o)) {
        let p = &cfg.properties;
        let main = site_sources(
            p.ip_security_restrictions.as_deref(),
            p.ip_security_restrictions_default_action.as_deref(),
            &has_endpoint,
        );
        let scm = if p.scm_ip_security_restrictions_use_main == Some(true) {
            main.clone()
        } else {
            site_sources(
                p.scm_ip_security_restrictions.as_deref(),
                p.scm_ip_security_restrictions_default_action.as_deref(),
                &has_endpoint,
            )
        };
        out.extend(main.into_iter().map(|s| (Target::Site, s)));
        out.extend(scm.into_iter().map(|s| (Target::Scm, s)));
    }
    if o.gateway()
        .is_some_and(|g| !g.public_frontends().is_empty())
    {
        out.insert((Target::Site, Source::GatewayPublicFrontend));
    }
    if let Some(c) = o.cosmos() {
        cosmos_exposure(o, &c.properties, &has_endpoint, &mut out);
    }
    out
}

/// Cosmos DB: public traffic by the firewall, private endpoints always, a perimeter when it decides.
fn cosmos_exposure(
    o: &Observed,
    p: &CosmosProperties,
    has_endpoint: &dyn Fn(&str, &str) -> bool,
    out: &mut Exposure,
) {
    let pes = o.cosmos_private_endpoint_ids();
    for pe in &pes {
        out.insert((Target::Cosmos, Source::PrivateEndpoint(pe.clone())));
    }
    if p.public_network_access
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case("SecuredByPerimeter"))
    {
        out.insert((Target::Cosmos, Source::Perimeter));
    }
    if !crate::plan::cosmos_public(p) {
        return;
    }
    let filter = p.is_virtual_network_filter_enabled == Some(true);
    let ips: Vec<_> = p
        .ip_rules
        .iter()
        .flatten()
        .map(|r| r.ip_address_or_range.clone())
        .collect();
    // With private endpoints and no rules, "the Azure Cosmos DB account is accessible only
    // through the private endpoints" (Microsoft Learn, "Configure Azure Private Link for an Azure
    // Cosmos DB account").
    if !filter && ips.is_empty() && pes.is_empty() {
        out.insert((Target::Cosmos, Source::Internet));
    }
    for ip in ips {
        out.insert((
            Target::Cosmos,
            if ip.trim() == "0.0.0.0" {
                Source::AzureServices
            } else {
                Source::Addresses(ip)
            },
        ));
    }
    if p.network_acl_bypass
        .as_deref()
        .is_some_and(|b| b.eq_ignore_ascii_case("AzureServices"))
    {
        out.insert((Target::Cosmos, Source::AzureServices));
    }
    if filter {
        for r in p.virtual_network_rules.iter().flatten() {
            if has_endpoint(&r.id, "Microsoft.AzureCosmosDB") {
                out.insert((Target::Cosmos, Source::Subnet(r.id.to_ascii_lowercase())));
            }
        }
    }
}

fn site_sources(
    rules: Option<&[IpRestriction]>,
    default_action: Option<&str>,
    has_endpoint: &dyn Fn(&str, &str) -> bool,
) -> BTreeSet<Source> {
    let rules = real_rules(rules);
    let mut out = BTreeSet::new();
    for r in rules.iter().filter(|r| r.allows()) {
        match (
            &r.vnet_subnet_resource_id,
            r.ip_address.as_deref(),
            r.tag.as_deref(),
        ) {
            (Some(s), _, _) if has_endpoint(s, "Microsoft.Web") => {
                out.insert(Source::Subnet(s.to_ascii_lowercase()));
            }
            // A subnet rule without the endpoint never matches.
            (Some(_), _, _) => {}
            (None, Some(a), _) if a.eq_ignore_ascii_case("Any") => {
                out.insert(Source::Internet);
            }
            (None, Some(a), Some(t)) if t.eq_ignore_ascii_case("ServiceTag") => {
                out.insert(Source::ServiceTag(a.to_owned()));
            }
            (None, Some(a), _) => {
                out.insert(Source::Addresses(a.to_owned()));
            }
            _ => {}
        }
    }
    if unmatched_allows(default_action, &rules) {
        out.insert(Source::Internet);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_catalogue() {
        let doc = include_str!("../../../docs/posture.md");
        for c in FindingCode::ALL {
            assert!(
                doc.contains(&format!("| `{c}` |")),
                "{c} is not in docs/posture.md"
            );
        }
    }

    #[test]
    fn findings_count_against_their_components() {
        let of = |c: Option<Component>| -> Vec<&str> {
            FindingCode::ALL
                .iter()
                .filter(|f| f.component() == c)
                .map(|f| f.as_str())
                .collect()
        };
        assert_eq!(of(Some(Component::Subnets)), Vec::<&str>::new());
        assert_eq!(
            of(Some(Component::Gateway)),
            [
                "GatewayPublicFrontend",
                "WafPolicyNotAttached",
                "WafPolicyDisabled",
                "WafDetectionMode"
            ]
        );
        assert_eq!(
            of(Some(Component::AppService)),
            [
                "SiteAllowsOtherSources",
                "SiteDefaultAllow",
                "ScmSitePublic",
                "SiteNotVnetIntegrated",
                "HttpsOnlyDisabled",
                "MinTlsBelow12",
                "FtpEnabled",
                "HostNameNotBound",
            ]
        );
        assert_eq!(
            of(Some(Component::Cosmos)),
            [
                "CosmosVnetFilterOff",
                "CosmosIpRule",
                "CosmosForeignVnetRule",
                "CosmosAzureServicesBypass",
            ]
        );
    }

    #[test]
    fn codes_serialize_as_their_names() {
        for &c in FindingCode::ALL {
            assert_eq!(c.to_string(), format!("{c:?}"));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
            assert_eq!(
                serde_json::from_value::<FindingCode>(serde_json::json!(c.as_str())).unwrap(),
                c
            );
        }
    }
}
