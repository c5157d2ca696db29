//! The HTTP precondition a step's write carries, so ARM refuses it (412 `PreconditionFailed`)
//! instead of overwriting a change someone made after fhirlock read the resource, or creating a
//! resource twice.
//!
//! The contract (ARM RPC, `Addendum.md`, "ETags for Resources",
//! Azure/azure-resource-manager-rpc v1.0): the resource provider, not ARM's front door, stores and
//! validates etags; a PUT with `If-Match: <etag>` on a resource whose etag differs, or with
//! `If-None-Match: *` on one that exists, is 412; so is a PATCH or DELETE with a stale
//! `If-Match`. The Azure REST API guidelines (microsoft/api-guidelines `azure/Guidelines.md`,
//! "Conditional Requests") say the same.
//!
//! Which resources it is sent to: those whose model carries an `etag`, which in fhirlock's writes
//! are the Network ones: subnets (whose etag is their VNet's, shared by every subnet in it) and
//! the Application Gateway (`etag` in `Subnet` and `ApplicationGateway`, azure-mgmt-network
//! 30.0.0 / the 2025-01-01 spec). The Web `Site`, `SiteConfigResource` and the Cosmos
//! `DatabaseAccountGetResults` models have no `etag` (azure-mgmt-web 10.0.0, api-version
//! 2024-11-01; azure-mgmt-cosmosdb 9.8.0, 2025-04-15), so there is nothing to match and those
//! PATCHes go without. [U] Whether the Network resource provider honours the headers on subnets
//! and gateways: no `If-Match` parameter is declared on `ApplicationGateways_CreateOrUpdate` (the
//! 2025-01-01 spec, `applicationGateway.json`) nor on `Subnets_CreateOrUpdate` (shared reference
//! §5.5; in azure-mgmt-network 30.0.0, generated from the 2024-10-01 spec, only IPAM pools, network
//! groups and verifier workspaces send one); kubernetes-sigs/cloud-provider-azure sends the
//! observed etag as `If-Match` on NSG, load balancer and route PUTs and handles 412 by dropping
//! its cache (`pkg/provider/azure_securitygroup_repo.go`) [O]; an NSG PUT with a stale etag was
//! once reported ignored (Azure/azure-rest-api-specs#6789, 2019) [O]. An RP that ignores them
//! behaves as if they were not sent, so sending them costs nothing and no request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A write's precondition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// `If-Match: <etag>`: the resource is still as fhirlock read it.
    IfMatch(String),
    /// `If-None-Match: *`: the resource does not exist yet.
    IfNoneMatch,
}

impl Precondition {
    /// For a write to a resource whose model carries an etag: `If-None-Match: *` when it
    /// creates the resource, else `If-Match` with the etag it was read with (`observed`). `None`
    /// when the read-back carried no etag.
    pub fn for_etagged(creates: bool, observed: Option<&Value>) -> Option<Precondition> {
        if creates {
            return Some(Precondition::IfNoneMatch);
        }
        observed?
            .get("etag")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(|e| Precondition::IfMatch(e.to_owned()))
    }
}
