//! Endpoints that share a site, a Cosmos DB account or a VNet (issue 13).
//!
//! Several `SecuredFhirEndpoint`s may name one App Service or one Cosmos DB account: each with its
//! own gateway in its own gateway subnet. Their writes meet on resources that hold one list for
//! everyone: the site's `ipSecurityRestrictions` and the account's `virtualNetworkRules` (PATCH
//! replaces such an array whole, `docs/azure-fidelity.md` C6). If each endpoint wrote "only mine",
//! they would take turns removing each other's rules. So each endpoint keeps, besides its own
//! rule, the rules that belong to the other endpoints that declare the same resource (its
//! *peers*), and still removes everything that belongs to nobody.
//!
//! Ownership: an access-restriction rule is an endpoint's when it allows that endpoint's gateway
//! subnet (gateway subnets are exclusive, see [`conflict`]); fhirlock names the rule it writes
//! `fhirlock-<digest of namespace/name>` ([`rule_name`]) so people can tell whose it is. A Cosmos
//! DB rule has no name (`VirtualNetworkRule` is `{id, ignoreMissingVNetServiceEndpoint}` in the
//! 2025-04-15 model), so it is an endpoint's when its `id` is that endpoint's integration subnet.
//!
//! Some claims cannot be shared: one gateway (the owner tag names one endpoint), one gateway
//! subnet (a site admits the whole subnet, so a second gateway there would be trusted for the
//! first endpoint's site), overlapping address prefixes, and one site with two different
//! integration subnets (a site has one regional VNet integration: `Site.properties.
//! virtualNetworkSubnetId` is a single subnet ID in the Web 2024-11-01 model [C]) or
//! two SCM locks (`scmIpSecurityRestrictionsUseMain` is one flag). The later endpoint
//! (creationTimestamp, then namespace/name) stalls with `ConflictsWith` before any write.
//!
//! The peers come from the controller's cache of endpoints as values ([`Claim::of`]); the one-shot
//! CLI has none. Pure: no I/O here.

use fhirlock_api::v1alpha1::{ScmSiteLock, SecuredFhirEndpointSpec};
use k8s_openapi::jiff::Timestamp;

use crate::desired::{Certificate, Desired, SubnetDesired};
use crate::id;
use crate::net::Cidr;

/// What one endpoint claims in Azure, as its spec says.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// `<namespace>/<name>`.
    pub owner: String,
    /// `metadata.creationTimestamp`: the earlier endpoint keeps a contested claim.
    pub created: Option<Timestamp>,
    /// Being deleted: its claims still stand against newcomers until it is gone, but its rules
    /// are no longer kept by the others (its own teardown removes them, or Retain leaves them to
    /// nobody).
    pub deleting: bool,
    pub site_id: String,
    pub scm: ScmSiteLock,
    pub cosmos_id: String,
    pub vnet_id: String,
    pub gateway_subnet: SubnetDesired,
    pub integration_subnet: SubnetDesired,
    pub gateway_id: String,
}

impl Claim {
    /// The claim of another endpoint, from its spec.
    pub fn of(
        namespace: &str,
        name: &str,
        created: Option<Timestamp>,
        deleting: bool,
        spec: &SecuredFhirEndpointSpec,
    ) -> Claim {
        let unresolved = Certificate::Unresolved {
            reason: "a peer's certificate is never needed".into(),
        };
        let d = Desired::from_spec(namespace, name, spec, unresolved);
        Claim {
            created,
            deleting,
            ..Claim::mine(&d)
        }
    }

    /// This endpoint's own claim.
    pub fn mine(d: &Desired) -> Claim {
        Claim {
            owner: d.owner.clone(),
            created: d.peers.created,
            deleting: false,
            site_id: d.site_id.clone(),
            scm: d.scm,
            cosmos_id: d.cosmos_id.clone(),
            vnet_id: d.vnet_id.clone(),
            gateway_subnet: d.gateway_subnet.clone(),
            integration_subnet: d.integration_subnet.clone(),
            gateway_id: d.gateway.id.clone(),
        }
    }

    /// Earlier endpoints win: by creationTimestamp (unknown counts as latest), then name.
    fn precedes(&self, other: &Claim) -> bool {
        let key = |c: &Claim| (c.created.is_none(), c.created, c.owner.clone());
        key(self) < key(other)
    }

    /// The two endpoints name each other's site, account, VNet or gateway: a change to one may
    /// change what the other must do, so the controller reconciles it too.
    pub fn touches(&self, other: &Claim) -> bool {
        id::same(&self.site_id, &other.site_id)
            || id::same(&self.cosmos_id, &other.cosmos_id)
            || id::same(&self.vnet_id, &other.vnet_id)
            || id::same(&self.gateway_id, &other.gateway_id)
    }
}

/// The other endpoints in the cluster, and when this one was created.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peers {
    /// This endpoint's creationTimestamp.
    pub created: Option<Timestamp>,
    /// Every other endpoint (this one left out by owner).
    pub others: Vec<Claim>,
}

/// A claim this endpoint cannot have, because an earlier endpoint holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// `<namespace>/<name>` of the earlier endpoint.
    pub with: String,
    /// What both claim, in words.
    pub claim: String,
}

impl Conflict {
    /// The `Stalled` message: who, what, and what to do.
    pub fn message(&self) -> String {
        format!(
            "conflicts with SecuredFhirEndpoint {}, created earlier: {}. Nothing is written to Azure for this endpoint until the claim is changed or {} is deleted",
            self.with, self.claim, self.with
        )
    }
}

/// Whether `a` and `b` cannot both hold their claims, and what they contest.
pub fn clash(a: &Claim, b: &Claim) -> Option<String> {
    if id::same(&a.gateway_id, &b.gateway_id) {
        return Some(format!(
            "both name the Application Gateway {}",
            a.gateway_id
        ));
    }
    if id::same(&a.vnet_id, &b.vnet_id)
        && let Some(what) = subnets_clash(a, b)
    {
        return Some(what);
    }
    if id::same(&a.site_id, &b.site_id) {
        if !id::same(&a.integration_subnet.id, &b.integration_subnet.id)
            || a.integration_subnet.prefix != b.integration_subnet.prefix
        {
            return Some(format!(
                "both name the App Service {}, which has one regional VNet integration, with different integration subnets ({} {}, {} {}); name the same integration subnet in both",
                a.site_id,
                a.integration_subnet.id,
                a.integration_subnet.prefix,
                b.integration_subnet.id,
                b.integration_subnet.prefix
            ));
        }
        if a.scm != b.scm {
            return Some(format!(
                "both name the App Service {} with different spec.appService.scmSite ({:?}, {:?}); the SCM site has one setting",
                a.site_id, a.scm, b.scm
            ));
        }
    }
    None
}

/// In one VNet: a gateway subnet is nobody else's, by name or by address; an integration subnet
/// may be shared only as the same subnet (name and prefix).
fn subnets_clash(a: &Claim, b: &Claim) -> Option<String> {
    let pairs = [
        (
            &a.gateway_subnet,
            &b.gateway_subnet,
            "gateway subnet",
            false,
        ),
        (
            &a.gateway_subnet,
            &b.integration_subnet,
            "gateway subnet",
            false,
        ),
        (
            &a.integration_subnet,
            &b.gateway_subnet,
            "integration subnet",
            false,
        ),
        (
            &a.integration_subnet,
            &b.integration_subnet,
            "integration subnet",
            true,
        ),
    ];
    for (x, y, what, may_share) in pairs {
        let same_name = x.name.eq_ignore_ascii_case(&y.name);
        if may_share && same_name && x.prefix == y.prefix {
            continue;
        }
        let overlap = match (Cidr::parse(&x.prefix), Cidr::parse(&y.prefix)) {
            (Some(p), Some(q)) => p.overlaps(&q),
            _ => false,
        };
        if same_name || overlap {
            return Some(format!(
                "its {what} {} ({}) and the other's subnet {} ({}) are {} in VNet {}",
                x.name,
                x.prefix,
                y.name,
                y.prefix,
                if same_name {
                    "the same subnet"
                } else {
                    "overlapping"
                },
                a.vnet_id
            ));
        }
    }
    None
}

/// The earliest endpoint that holds a claim this one contests, if any: then this endpoint stalls
/// (`ConflictsWith`) and writes nothing.
pub fn conflict(d: &Desired) -> Option<Conflict> {
    let me = Claim::mine(d);
    let mut earlier: Vec<&Claim> = d
        .peers
        .others
        .iter()
        .filter(|p| p.owner != me.owner && p.precedes(&me))
        .collect();
    earlier.sort_by(|a, b| {
        if a.precedes(b) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    earlier.into_iter().find_map(|p| {
        clash(&me, p).map(|claim| Conflict {
            with: p.owner.clone(),
            claim,
        })
    })
}

/// Peers whose rules this endpoint keeps: not being deleted, and not themselves stalled on a
/// conflict (a stalled endpoint writes nothing, so it owns nothing yet).
fn standing(d: &Desired) -> impl Iterator<Item = &Claim> {
    let me = Claim::mine(d);
    d.peers.others.iter().filter(move |p| {
        p.owner != me.owner
            && !p.deleting
            && !std::iter::once(&me)
                .chain(d.peers.others.iter())
                .any(|q| q.owner != p.owner && q.precedes(p) && clash(p, q).is_some())
    })
}

/// The gateway subnets of the peers that declare this endpoint's site: their allow rules stay.
pub fn site_gateway_subnets(d: &Desired) -> Vec<String> {
    standing(d)
        .filter(|p| id::same(&p.site_id, &d.site_id))
        .map(|p| p.gateway_subnet.id.clone())
        .collect()
}

/// The integration subnets of the peers that declare this endpoint's Cosmos DB account: their
/// VNet rules stay.
pub fn cosmos_subnets(d: &Desired) -> Vec<String> {
    standing(d)
        .filter(|p| id::same(&p.cosmos_id, &d.cosmos_id))
        .map(|p| p.integration_subnet.id.clone())
        .collect()
}

/// Whether any other endpoint (stalled or not, but not being deleted) still declares something
/// a teardown would remove: `f` says what.
pub fn still_claimed(d: &Desired, f: impl Fn(&Claim) -> bool) -> bool {
    d.peers
        .others
        .iter()
        .any(|p| p.owner != d.owner && !p.deleting && f(p))
}

/// The name fhirlock gives the access-restriction rule it writes for an endpoint: stable, short
/// (App Service documents no length limit for it [U]; 19 characters stays inside any the portal
/// shows), and the same for every case of the same `namespace/name`.
pub fn rule_name(owner: &str) -> String {
    format!("fhirlock-{}", crate::desired::identity_digest(owner))
}
