//! Cosmos DB's firewall and the site's move into the integration subnet, with the one wait in the
//! plan: a firewall change reaches Cosmos DB's data plane only some time after ARM accepted it.
//!
//! Service endpoints change the source of the subnet's traffic: "When a service endpoint for your
//! Azure Cosmos DB account is enabled on a subnet, the source of the traffic that reaches Azure
//! Cosmos DB switches from a public IP to a virtual network and subnet. [...] If your Azure
//! Cosmos DB accounts have an IP-based firewall to allow this subnet, requests from the
//! service-enabled subnet no longer match the IP firewall rules, and they're rejected" (Microsoft
//! Learn, "Configure access to Azure Cosmos DB from virtual networks",
//! `MicrosoftDocs/azure-databases-docs` `articles/cosmos-db/how-to-configure-vnet-service-endpoint.md`).
//! So the site joins the subnet only once Cosmos DB admits the subnet, and "firewall changes may
//! take up to 15 minutes to propagate and the firewall may exhibit an inconsistent behavior during
//! this period" ("Configure IP firewall in Azure Cosmos DB", `articles/cosmos-db/how-to-configure-firewall.md`).
//! ARM says nothing when a change has reached the data plane: the 2025-04-15
//! `DatabaseAccountGetResults` model has no such field, and the account's `provisioningState`
//! is about the control-plane operation [U: no signal found]. So fhirlock counts the 15 minutes
//! from the first look that saw the rule in place on a settled account; the time comes in as a
//! value ([`Clock`]) and the edge records that moment in `status.cosmosRuleSince`.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{
    Method, Step, StepKind, WEB_DELEGATION, endpoint_succeeded, managed_diff, step, waiting,
};
use crate::desired::Desired;
use crate::id;
use crate::json;
use crate::model::{self, CosmosProperties};
use crate::observed::{Observed, api_version};

/// How long a Cosmos DB firewall change may take to reach the data plane (see the module docs).
pub const FIREWALL_PROPAGATION: Duration = Duration::from_secs(15 * 60);

/// What the plan knows about time: when this look happened, and since when Cosmos DB has been
/// seen admitting the integration subnet by its rule (as recorded by earlier looks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// `None`: unknown (`fhirlock plan`, tests), so no wait is ever over.
    pub now: Option<Timestamp>,
    pub cosmos_rule_since: Option<Timestamp>,
    /// [`FIREWALL_PROPAGATION`] unless configured otherwise (the emulator scales its time).
    pub propagation: Duration,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            now: None,
            cosmos_rule_since: None,
            propagation: FIREWALL_PROPAGATION,
        }
    }
}

impl Clock {
    pub fn at(
        now: Timestamp,
        cosmos_rule_since: Option<Timestamp>,
        propagation: Duration,
    ) -> Clock {
        Clock {
            now: Some(now),
            cosmos_rule_since,
            propagation,
        }
    }
}

/// How Cosmos DB's firewall, as observed, treats the integration subnet's service-endpoint traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// No firewall at all: "If you don't configure any firewall rules, then by default, all
    /// traffic can access an Azure Cosmos DB account" ("Configure Azure Private Link for an Azure
    /// Cosmos DB account", Private Link combined with firewall rules). Not with a private
    /// endpoint: "If you don't configure any public traffic or service endpoint and you create
    /// private endpoints, then the Azure Cosmos DB account is accessible only through the private
    /// endpoints."
    Open,
    /// The VNet filter is on and a rule names the integration subnet.
    ByRule,
    /// The subnet's traffic would be refused; why.
    Refused(String),
}

/// Whether public network access is on (unset counts as on, as the 2025-04-15 accounts return it).
pub(crate) fn public(p: &CosmosProperties) -> bool {
    p.public_network_access
        .as_deref()
        .is_none_or(|a| a.eq_ignore_ascii_case("Enabled"))
}

fn has_ip_rules(p: &CosmosProperties) -> bool {
    p.ip_rules.as_ref().is_some_and(|v| !v.is_empty())
}

fn names_subnet(p: &CosmosProperties, subnet: &str) -> bool {
    p.virtual_network_rules
        .iter()
        .flatten()
        .any(|r| id::same(&r.id, subnet))
}

pub fn admission(d: &Desired, o: &Observed) -> Admission {
    let Some(c) = o.cosmos() else {
        return Admission::Refused("the Cosmos DB account to be readable".into());
    };
    let p = &c.properties;
    if !public(p) {
        return Admission::Refused("Cosmos DB public network access to be Enabled".into());
    }
    let filter = p.is_virtual_network_filter_enabled == Some(true);
    if !filter && !has_ip_rules(p) && o.cosmos_private_endpoint_ids().is_empty() {
        Admission::Open
    } else if filter && names_subnet(p, &d.integration_subnet.id) {
        Admission::ByRule
    } else {
        Admission::Refused(format!(
            "Cosmos DB's VNet filter to be on with a rule for {}",
            d.integration_subnet.name
        ))
    }
}

/// Since when the rule has been seen in place, for status: kept while it stays, started on a look
/// that sees it on a settled account (not mid-operation), forgotten when it goes.
pub fn admitted_since(d: &Desired, o: &Observed, clock: &Clock) -> Option<Timestamp> {
    if admission(d, o) != Admission::ByRule {
        return None;
    }
    let settled = o
        .cosmos()
        .and_then(|c| c.properties.provisioning_state)
        .is_none_or(|s| s.eq_ignore_ascii_case("Succeeded"));
    clock.cosmos_rule_since.or(clock.now.filter(|_| settled))
}

/// When the site's wait for the Cosmos DB firewall ends, if it is waiting for that alone: the
/// moment to look again, rather than polling.
pub fn wait_ends(d: &Desired, o: &Observed, clock: &Clock) -> Option<Timestamp> {
    let integrated = o
        .site()
        .and_then(|s| s.properties.virtual_network_subnet_id)
        .is_some_and(|s| id::same(&s, &d.integration_subnet.id));
    if integrated || admission(d, o) != Admission::ByRule {
        return None;
    }
    let end = admitted_since(d, o, clock)?
        .checked_add(clock.propagation)
        .ok()?;
    clock.now.filter(|now| *now < end).map(|_| end)
}

/// `None` when the data plane admits the integration subnet now; otherwise what to wait for.
fn admitted_now(d: &Desired, o: &Observed, clock: &Clock) -> Option<String> {
    match admission(d, o) {
        Admission::Open => None,
        Admission::Refused(why) => Some(why),
        Admission::ByRule => {
            let since = admitted_since(d, o, clock);
            let over = match (clock.now, since) {
                (Some(now), Some(since)) => {
                    now.duration_since(since).unsigned_abs() >= clock.propagation
                }
                _ => false,
            };
            (!over).then(|| {
                format!(
                    "Cosmos DB's firewall to apply the rule for {} ({} s after it was seen in place{})",
                    d.integration_subnet.name,
                    clock.propagation.as_secs(),
                    since.map(|s| format!(", at {s}")).unwrap_or_default()
                )
            })
        }
    }
}

/// Admits the integration subnet before the site moves into it. When the account filters by IP
/// rules (or private endpoints) with the VNet filter off, a rule alone admits nothing, so the
/// filter goes on too; every listed rule then counts, so the others go (the lockdown removes them
/// anyway), and no other subnet gets in on the way. IP rules, bypass and private endpoints keep
/// admitting what they admitted.
pub(super) fn cosmos_vnet_rule(d: &Desired, o: &Observed) -> Option<Step> {
    let cosmos = o.cosmos()?;
    let p = &cosmos.properties;
    let has_rule = names_subnet(p, &d.integration_subnet.id);
    let filter_on = p.is_virtual_network_filter_enabled == Some(true);
    let needs_filter = !filter_on && admission(d, o) != Admission::Open;
    if has_rule && !needs_filter {
        return None;
    }
    let ignore_missing =
        !endpoint_succeeded(o, &d.integration_subnet.name, "Microsoft.AzureCosmosDB");
    // A peer's rule (another endpoint on this account) stays whatever happens.
    let peers = crate::peers::cosmos_subnets(d);
    let kept = |r: &model::CosmosVnetRule| {
        id::same(&r.id, &d.integration_subnet.id) || peers.iter().any(|s| id::same(&r.id, s))
    };
    let rules = p.virtual_network_rules.clone().unwrap_or_default();
    let mut new_rules: Vec<Value> = rules
        .iter()
        .filter(|r| !needs_filter || kept(r))
        .map(model::to_json)
        .collect();
    if !has_rule {
        new_rules.push(json!({"id": d.integration_subnet.id, "ignoreMissingVNetServiceEndpoint": ignore_missing}));
    }
    let mut props = serde_json::Map::new();
    props.insert("virtualNetworkRules".into(), json!(new_rules));
    if needs_filter {
        props.insert("isVirtualNetworkFilterEnabled".into(), json!(true));
    }
    let want = json!({ "properties": props });
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

/// The site joins the integration subnet once the subnet is delegated and Cosmos DB's data plane
/// admits the subnet's service-endpoint traffic.
pub(super) fn site_vnet_integration(d: &Desired, o: &Observed, clock: &Clock) -> Option<Step> {
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
    let why = if !delegated {
        Some(format!(
            "subnet {} delegated to {WEB_DELEGATION}",
            d.integration_subnet.name
        ))
    } else {
        admitted_now(d, o, clock)
    };
    Some(waiting(s, why))
}

/// The VNet rules the lockdown keeps, in the order Cosmos DB returned them (so a kept list is no
/// change): the peers' rules as they are (each endpoint on the account writes its own), and this
/// endpoint's, settled (`ignoreMissingVNetServiceEndpoint` false), added last if missing.
fn locked_rules(d: &Desired, o: &Observed) -> Vec<Value> {
    let peers = crate::peers::cosmos_subnets(d);
    let mine = json!({"id": d.integration_subnet.id, "ignoreMissingVNetServiceEndpoint": false});
    let mut rules = Vec::new();
    let mut have_mine = false;
    let observed = o
        .cosmos()
        .and_then(|c| c.properties.virtual_network_rules)
        .unwrap_or_default();
    for r in &observed {
        if id::same(&r.id, &d.integration_subnet.id) {
            if !have_mine {
                rules.push(mine.clone());
            }
            have_mine = true;
        } else if peers.iter().any(|s| id::same(&r.id, s)) {
            let mut v = model::to_json(r);
            // ARM may omit ignoreMissingVNetServiceEndpoint when false.
            if let Some(m) = v.as_object_mut() {
                m.entry("ignoreMissingVNetServiceEndpoint")
                    .or_insert(json!(false));
            }
            rules.push(v);
        }
    }
    if !have_mine {
        rules.push(mine);
    }
    rules
}

/// Filter on, only the integration subnet (and the peers' on the same account), no IP rules, no
/// bypass. `publicNetworkAccess` is not written: pre-flight stops on any value but `Enabled`, and
/// fhirlock never opens it.
pub(super) fn cosmos_lockdown(d: &Desired, o: &Observed) -> Option<Step> {
    o.cosmos.as_ref()?;
    let want = json!({"properties": {
        "isVirtualNetworkFilterEnabled": true,
        "virtualNetworkRules": locked_rules(d, o),
        "ipRules": [],
        "networkAclBypass": "None",
    }});
    let mut current = o.cosmos.clone().unwrap_or_default();
    // ARM may omit ignoreMissingVNetServiceEndpoint when false.
    if let Some(rules) = current
        .pointer_mut("/properties/virtualNetworkRules")
        .and_then(Value::as_array_mut)
    {
        // A rule that is not an object is left as it is: the diff replaces it.
        for r in rules.iter_mut().filter_map(Value::as_object_mut) {
            r.entry("ignoreMissingVNetServiceEndpoint")
                .or_insert(json!(false));
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
