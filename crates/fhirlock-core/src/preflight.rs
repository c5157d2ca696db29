//! Checks that need Azure to know, run before any write. A failure stops the reconcile with a
//! reason that says what to fix (`Stalled`), instead of leaving a half-built endpoint.

use serde::{Deserialize, Serialize};

use crate::desired::Desired;
use crate::id;
use crate::model::{
    self, ApplicationGateway, CosmosAccount, Site, SiteConfig, Subnet, VirtualNetwork,
};
use crate::net::Cidr;
use crate::observed::{Observed, same_region};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightFailure {
    /// Stable reason, used as the `Stalled` condition's reason.
    pub code: &'static str,
    pub message: String,
}

fn fail(code: &'static str, message: String) -> PreflightFailure {
    PreflightFailure { code, message }
}

/// App Service plan tiers that cannot do regional VNet integration.
const TIERS_WITHOUT_VNET_INTEGRATION: &[&str] = &["free", "shared", "dynamic"];

/// Every failure, in the order to fix them. Without the VNet or the site nothing else can be
/// judged, so only that failure is reported.
pub fn check(d: &Desired, o: &Observed) -> Vec<PreflightFailure> {
    let mut out = Vec::new();
    // Another endpoint's claim comes first: whatever Azure holds, this endpoint must not write.
    if let Some(c) = crate::peers::conflict(d) {
        out.push(fail("ConflictsWith", c.message()));
    }
    if let Some(f) = unreadable(d, o) {
        out.push(f);
        return out;
    }
    let Some(vnet) = o.vnet() else {
        out.push(fail(
            "VirtualNetworkNotFound",
            format!(
                "virtual network {} does not exist or is not readable",
                d.vnet_id
            ),
        ));
        return out;
    };
    let Some(site) = o.site() else {
        out.push(fail(
            "AppServiceNotFound",
            format!(
                "App Service {} does not exist or is not readable",
                d.site_id
            ),
        ));
        return out;
    };
    if o.cosmos.is_none() {
        out.push(fail(
            "CosmosAccountNotFound",
            format!(
                "Cosmos DB account {} does not exist or is not readable",
                d.cosmos_id
            ),
        ));
    }
    plan_tier(o, &mut out);
    regions(d, &vnet, &site, &mut out);
    let subnets = o.subnets();
    subnet_prefixes(d, &vnet, &subnets, &mut out);
    if let Some(gw) = subnets.iter().find(|s| is_named(s, &d.gateway_subnet.name)) {
        gateway_subnet_dedicated(d, gw, &mut out);
    }
    if let Some(int) = subnets
        .iter()
        .find(|s| is_named(s, &d.integration_subnet.name))
    {
        integration_subnet_free(d, int, &site, &mut out);
    }
    site_integrated_elsewhere(d, &site, &mut out);
    site_public_access(d, o, &site, &mut out);
    cosmos_public_access(d, o, &mut out);
    gateway_ours_or_creatable(d, o, &mut out);
    waf_policy_usable(d, o, &mut out);
    out
}

/// An answer that does not have the shape of its resource's model (an array entry that is not
/// an object, a number where a name goes): nothing about that resource can be judged, so
/// nothing is written until it reads again. Without this such an answer read as "absent": a VNet
/// was "not found", and a site config or Cosmos DB account showed no findings at all, so a back
/// door in it went unreported.
fn unreadable(d: &Desired, o: &Observed) -> Option<PreflightFailure> {
    fn check<T: serde::de::DeserializeOwned>(
        id: &str,
        body: &Option<serde_json::Value>,
    ) -> Option<PreflightFailure> {
        let e = model::parse::<T>(body.as_ref()?).err()?;
        Some(fail(
            "AzureResponseUnreadable",
            format!(
                "Azure's answer for {id} does not have the shape of its model ({e}): fhirlock writes nothing until it reads as one; report it if the resource looks right in the portal"
            ),
        ))
    }
    check::<VirtualNetwork>(&d.vnet_id, &o.vnet)
        .or_else(|| check::<ApplicationGateway>(&d.gateway.id, &o.gateway))
        .or_else(|| check::<Site>(&d.site_id, &o.site))
        .or_else(|| check::<SiteConfig>(&d.site_config_id(), &o.site_config))
        .or_else(|| check::<CosmosAccount>(&d.cosmos_id, &o.cosmos))
}

/// Every code [`check`] can return; each is documented in `docs/operations.md`.
pub const CODES: &[&str] = &[
    "ConflictsWith",
    "AzureResponseUnreadable",
    "VirtualNetworkNotFound",
    "AppServiceNotFound",
    "CosmosAccountNotFound",
    "PlanTierUnsupported",
    "PlanNotReadable",
    "RegionMismatch",
    "PrefixOutsideVirtualNetwork",
    "PrefixOverlapsSubnet",
    "SubnetPrefixDiffers",
    "GatewaySubnetInUse",
    "GatewaySubnetDelegatedElsewhere",
    "IntegrationSubnetDelegatedElsewhere",
    "IntegrationSubnetInUse",
    "IntegrationSubnetUsedByAnotherPlan",
    "AppServiceIntegratedElsewhere",
    "SitePublicAccessDisabled",
    "SiteHasPrivateEndpoint",
    "CosmosPublicAccessDisabled",
    "CosmosSecuredByPerimeter",
    "GatewayNotOwned",
    "NetworkIsolationNotRegistered",
    "CertificateUnavailable",
    "WafPolicyNotFound",
    "WafPolicyNotOwned",
];

/// The gateway reaches the site through the site's public (default) endpoint, filtered by
/// service-endpoint access restrictions. Microsoft Learn, "Azure App Service access restrictions"
/// (`articles/app-service/overview-access-restrictions.md`): app access "`Disabled`" closes that
/// endpoint; unset, "the default behavior is to enable access unless a private endpoint exists
/// which changes the behavior to disable access"; "Access restrictions don't apply to traffic
/// entering through a private endpoint"; and "Access restriction rules based on service endpoints
/// are not supported on apps that have private endpoint configured". "Using Private Endpoints for
/// App Service apps" (`articles/app-service/networking/private-endpoint.md`), Limitations: "Apps
/// that you configure with private endpoints cannot use service endpoint-based access restriction
/// rules." So fhirlock writes nothing to such a site: opening its public endpoint would widen
/// it, and its rules would not hold.
fn site_public_access(d: &Desired, o: &Observed, site: &Site, out: &mut Vec<PreflightFailure>) {
    if let Some(pna) = site.properties.public_network_access.as_deref()
        && !pna.is_empty()
        && !pna.eq_ignore_ascii_case("Enabled")
    {
        out.push(fail(
            "SitePublicAccessDisabled",
            format!(
                "the App Service {} has publicNetworkAccess {pna}: it is reachable only through private endpoints, and fhirlock's design admits the gateway through the site's public endpoint, filtered to the gateway subnet by service-endpoint access restrictions. fhirlock does not open it: use private-endpoint mode (not yet available), or set publicNetworkAccess to Enabled yourself",
                d.site_id
            ),
        ));
    }
    let endpoints = o.site_private_endpoint_ids();
    if !endpoints.is_empty() {
        out.push(fail(
            "SiteHasPrivateEndpoint",
            format!(
                "the App Service {} has {} private endpoint connection(s) ({}): App Service does not support service-endpoint access restrictions on an app with a private endpoint, and an unset publicNetworkAccess then means disabled. Use private-endpoint mode (not yet available), or remove the private endpoint",
                d.site_id,
                endpoints.len(),
                endpoints.join(", ")
            ),
        ));
    }
}

/// Cosmos DB admits the integration subnet's service-endpoint traffic only while public network
/// access is on. Microsoft Learn, "Configure Azure Private Link for an Azure Cosmos DB account"
/// (`articles/cosmos-db/how-to-configure-private-endpoints.md`): the `publicNetworkAccess` flag
/// "takes precedence over any IP or virtual network rule. All public and virtual network traffic
/// is blocked when the flag is set to *Disabled*". `SecuredByPerimeter` (a value of the
/// 2025-04-15 `PublicNetworkAccess` enum) hands public access to a Network Security Perimeter.
/// fhirlock never turns either into `Enabled` itself: that would open the public endpoint of an
/// account someone closed.
fn cosmos_public_access(d: &Desired, o: &Observed, out: &mut Vec<PreflightFailure>) {
    let Some(pna) = o.cosmos().and_then(|c| c.properties.public_network_access) else {
        return;
    };
    if pna.eq_ignore_ascii_case("Enabled") {
        return;
    }
    let what_to_do = "fhirlock's service-endpoint design needs public network access on, filtered to the integration subnet: use private-endpoint mode (not yet available), or set publicNetworkAccess to Enabled yourself";
    if pna.eq_ignore_ascii_case("SecuredByPerimeter") {
        out.push(fail(
            "CosmosSecuredByPerimeter",
            format!(
                "the Cosmos DB account {} has publicNetworkAccess SecuredByPerimeter: a Network Security Perimeter decides who reaches it, and fhirlock does not take that away. {what_to_do}",
                d.cosmos_id
            ),
        ));
    } else {
        out.push(fail(
            "CosmosPublicAccessDisabled",
            format!(
                "the Cosmos DB account {} has publicNetworkAccess {pna}: it is reachable only through private endpoints, and fhirlock does not open it. {what_to_do}",
                d.cosmos_id
            ),
        ));
    }
}

fn plan_tier(o: &Observed, out: &mut Vec<PreflightFailure>) {
    match o.server_farm().and_then(|f| f.sku).and_then(|s| s.tier) {
        Some(tier) if TIERS_WITHOUT_VNET_INTEGRATION.contains(&tier.to_ascii_lowercase().as_str()) => out.push(fail(
            "PlanTierUnsupported",
            format!("the App Service plan's tier {tier} does not support regional VNet integration: scale it to Basic, Standard or Premium"),
        )),
        None => out.push(fail(
            "PlanNotReadable",
            "the App Service plan could not be read, so its tier cannot be checked for VNet integration".into(),
        )),
        _ => {}
    }
}

fn regions(d: &Desired, vnet: &VirtualNetwork, site: &Site, out: &mut Vec<PreflightFailure>) {
    let vnet_region = vnet.location.clone().unwrap_or_default();
    if let Some(site_region) = &site.location
        && !same_region(site_region, &vnet_region)
    {
        out.push(fail(
            "RegionMismatch",
            format!("the App Service is in {site_region} but the VNet is in {vnet_region}: VNet integration needs one region"),
        ));
    }
    if !same_region(&d.gateway.location, &vnet_region) {
        out.push(fail(
            "RegionMismatch",
            format!("spec.gateway.location is {} but the VNet is in {vnet_region}: the gateway must be in the VNet's region", d.gateway.location),
        ));
    }
}

/// Both prefixes inside the VNet, clear of every other subnet, and equal to an existing
/// subnet's of the same name.
fn subnet_prefixes(
    d: &Desired,
    vnet: &VirtualNetwork,
    subnets: &[Subnet],
    out: &mut Vec<PreflightFailure>,
) {
    let space: Vec<Cidr> = vnet
        .properties
        .address_space
        .as_ref()
        .map(|a| {
            a.address_prefixes
                .iter()
                .filter_map(|p| Cidr::parse(p))
                .collect()
        })
        .unwrap_or_default();
    for want in [&d.gateway_subnet, &d.integration_subnet] {
        let Some(prefix) = Cidr::parse(&want.prefix) else {
            continue;
        };
        if !space.iter().any(|s| s.contains(&prefix)) {
            out.push(fail(
                "PrefixOutsideVirtualNetwork",
                format!(
                    "subnet {} prefix {} is outside the VNet's address space",
                    want.name, want.prefix
                ),
            ));
        }
        for other in subnets.iter().filter(|s| {
            !is_named(s, &d.gateway_subnet.name) && !is_named(s, &d.integration_subnet.name)
        }) {
            if other
                .prefixes()
                .iter()
                .filter_map(|p| Cidr::parse(p))
                .any(|p| p.overlaps(&prefix))
            {
                out.push(fail(
                    "PrefixOverlapsSubnet",
                    format!(
                        "subnet {} prefix {} overlaps existing subnet {} ({})",
                        want.name,
                        want.prefix,
                        other.name.as_deref().unwrap_or("?"),
                        other.prefixes().join(",")
                    ),
                ));
            }
        }
        if let Some(existing) = subnets.iter().find(|s| is_named(s, &want.name))
            && !existing.prefixes().iter().any(|p| p == &want.prefix)
        {
            out.push(fail(
                "SubnetPrefixDiffers",
                format!(
                    "subnet {} already exists with prefix {}, not {}: fhirlock does not re-address an existing subnet",
                    want.name,
                    existing.prefixes().join(","),
                    want.prefix
                ),
            ));
        }
    }
}

/// The gateway subnet holds nothing but gateways.
fn gateway_subnet_dedicated(d: &Desired, gw: &Subnet, out: &mut Vec<PreflightFailure>) {
    let p = &gw.properties;
    let foreign_ip_configs = p
        .ip_configurations
        .iter()
        .flatten()
        .filter(|c| {
            !c.get("id")
                .and_then(|v| v.as_str())
                .is_some_and(|i| i.to_ascii_lowercase().contains("/applicationgateways/"))
        })
        .count();
    let other_delegation = p.delegations.iter().flatten().find(|x| {
        !x.properties
            .service_name
            .eq_ignore_ascii_case("Microsoft.Network/applicationGateways")
    });
    if foreign_ip_configs > 0 || p.private_endpoints.as_ref().is_some_and(|v| !v.is_empty()) {
        out.push(fail(
            "GatewaySubnetInUse",
            format!("subnet {} holds resources other than Application Gateways: it must be dedicated to the gateway", d.gateway_subnet.name),
        ));
    }
    if let Some(x) = other_delegation {
        out.push(fail(
            "GatewaySubnetDelegatedElsewhere",
            format!("subnet {} is delegated to {}; the gateway needs it delegated to Microsoft.Network/applicationGateways", d.gateway_subnet.name, x.properties.service_name),
        ));
    }
}

/// The integration subnet is free, or already delegated to App Service (and not to another plan).
fn integration_subnet_free(
    d: &Desired,
    int: &Subnet,
    site: &Site,
    out: &mut Vec<PreflightFailure>,
) {
    let p = &int.properties;
    if let Some(x) = p.delegations.iter().flatten().find(|x| {
        !x.properties
            .service_name
            .eq_ignore_ascii_case("Microsoft.Web/serverFarms")
    }) {
        out.push(fail(
            "IntegrationSubnetDelegatedElsewhere",
            format!(
                "subnet {} is delegated to {}; VNet integration needs Microsoft.Web/serverFarms",
                d.integration_subnet.name, x.properties.service_name
            ),
        ));
    }
    if p.ip_configurations.as_ref().is_some_and(|v| !v.is_empty())
        || p.private_endpoints.as_ref().is_some_and(|v| !v.is_empty())
    {
        out.push(fail(
            "IntegrationSubnetInUse",
            format!(
                "subnet {} holds other resources: VNet integration needs a dedicated subnet",
                d.integration_subnet.name
            ),
        ));
    }
    let farm = site.properties.server_farm_id.clone().unwrap_or_default();
    for link in p.service_association_links.iter().flatten() {
        let linked = link
            .pointer("/properties/link")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !linked.is_empty() && !farm.is_empty() && !id::same(linked, &farm) {
            out.push(fail(
                "IntegrationSubnetUsedByAnotherPlan",
                format!(
                    "subnet {} is used by App Service plan {linked}: one subnet serves one plan",
                    d.integration_subnet.name
                ),
            ));
        }
    }
}

fn site_integrated_elsewhere(d: &Desired, site: &Site, out: &mut Vec<PreflightFailure>) {
    if let Some(current) = &site.properties.virtual_network_subnet_id
        && !current.is_empty()
        && !id::same(current, &d.integration_subnet.id)
    {
        out.push(fail(
            "AppServiceIntegratedElsewhere",
            format!("the App Service is VNet-integrated with {current}; remove that integration or name that subnet in spec.network.integrationSubnet"),
        ));
    }
}

/// The gateway is ours, or can be created; adopting someone else's is explicit.
fn gateway_ours_or_creatable(d: &Desired, o: &Observed, out: &mut Vec<PreflightFailure>) {
    match o.gateway() {
        Some(gw) => {
            if gw.tag(crate::OWNER_TAG) != Some(d.owner.as_str()) {
                out.push(fail(
                    "GatewayNotOwned",
                    format!(
                        "Application Gateway {} exists but is not owned by this endpoint (tag {}={}): fhirlock does not adopt it implicitly; choose another name or tag it {}={}",
                        d.gateway.name,
                        crate::OWNER_TAG,
                        gw.tag(crate::OWNER_TAG).unwrap_or("<none>"),
                        crate::OWNER_TAG,
                        d.owner
                    ),
                ));
            }
        }
        None => {
            if o.isolation_feature.as_deref() == Some(crate::observed::FEATURE_UNREADABLE) {
                out.push(fail(
                    "NetworkIsolationNotRegistered",
                    "creating a private-only Application Gateway needs the subscription feature Microsoft.Network/EnableApplicationGatewayNetworkIsolation registered, and fhirlock's identity may not read the subscription's feature registrations (403): give it Reader on the subscription until the gateway exists (fhirlock no longer reads the feature then), or create the gateway yourself".to_owned(),
                ));
            } else if o.isolation_feature.as_deref() != Some("Registered") {
                out.push(fail(
                    "NetworkIsolationNotRegistered",
                    format!(
                        "a private-only Application Gateway needs the subscription feature Microsoft.Network/EnableApplicationGatewayNetworkIsolation registered (state: {}): run `az feature register --namespace Microsoft.Network --name EnableApplicationGatewayNetworkIsolation`",
                        o.isolation_feature.as_deref().unwrap_or("NotRegistered")
                    ),
                ));
            }
            if let crate::desired::Certificate::Unresolved { reason } = &d.gateway.certificate {
                out.push(fail(
                    "CertificateUnavailable",
                    format!("the gateway cannot be created without its certificate: {reason}"),
                ));
            }
        }
    }
}

/// A WAF_v2 gateway references a policy: the one its owner named must exist (ARM refuses a
/// gateway that references a missing one), and one of the name fhirlock would create must be
/// its own (the owner tag), or fhirlock would take over someone else's policy.
fn waf_policy_usable(d: &Desired, o: &Observed, out: &mut Vec<PreflightFailure>) {
    let Some(waf) = &d.gateway.waf else { return };
    let owner = o.waf_policy.as_ref().map(|p| {
        p.pointer(&format!("/tags/{}", crate::OWNER_TAG))
            .and_then(serde_json::Value::as_str)
    });
    match (waf.owned, owner) {
        (false, None) => out.push(fail(
            "WafPolicyNotFound",
            format!(
                "WAF policy {} (spec.gateway.waf.policyId) does not exist or is not readable: create it, or remove policyId to have fhirlock create one",
                waf.policy_id
            ),
        )),
        (true, Some(tag)) if tag != Some(d.owner.as_str()) => out.push(fail(
            "WafPolicyNotOwned",
            format!(
                "WAF policy {} exists but is not owned by this endpoint (tag {}={}): fhirlock does not adopt it implicitly; set spec.gateway.waf.policyId to it, or tag it {}={}",
                waf.policy_id,
                crate::OWNER_TAG,
                tag.unwrap_or("<none>"),
                crate::OWNER_TAG,
                d.owner
            ),
        )),
        _ => {}
    }
}

fn is_named(s: &Subnet, name: &str) -> bool {
    s.name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::CODES;

    /// Every code `check` can return is in [`CODES`], and each is in the troubleshooting table.
    #[test]
    fn every_code_is_listed_and_documented() {
        let all = include_str!("preflight.rs");
        let src = &all[..all.find("#[cfg(test)]").unwrap()];
        let mut used = Vec::new();
        for (i, _) in src.match_indices("fail(") {
            let rest = src[i + 5..].trim_start();
            if let Some(s) = rest.strip_prefix('"') {
                used.push(&s[..s.find('"').unwrap()]);
            }
        }
        assert!(used.len() >= CODES.len(), "{used:?}");
        for code in &used {
            assert!(CODES.contains(code), "{code} is not in CODES");
        }
        let doc = include_str!("../../../docs/operations.md");
        for code in CODES {
            assert!(used.contains(code), "{code} is never returned");
            assert!(
                doc.contains(&format!("`{code}`")),
                "{code} is not in docs/operations.md"
            );
        }
    }
}
