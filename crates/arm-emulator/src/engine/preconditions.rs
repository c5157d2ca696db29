//! Conditional writes: `If-Match` and `If-None-Match` on PUT, PATCH and DELETE, and the `ETag`
//! header on Network answers.
//!
//! The contract is the ARM RPC's (Azure/azure-resource-manager-rpc `v1.0/Addendum.md`, "ETags for
//! Resources"; the resource provider checks, never the front door):
//!
//! | PUT                 | absent | exists                |
//! |---------------------|--------|-----------------------|
//! | `If-Match: *`       | 412    | as without            |
//! | `If-Match: "xyz"`   | 412    | as without, or 412    |
//! | `If-None-Match: *`  | 201    | 412                   |
//!
//! A PATCH with `If-Match` on an absent resource is 404, a DELETE 204 (the write's own answer);
//! on one that exists, a stale etag is 412. The Azure REST API guidelines (microsoft/api-guidelines
//! `azure/Guidelines.md`, "Conditional Requests") say the same of `If-Match` and `If-None-Match`.
//! The error is ARM's envelope, `{"error":{"code":"PreconditionFailed","message":…}}`.
//!
//! Which resources have an etag: the Network ones (`etag` in the `Subnet`, `VirtualNetwork`,
//! `ApplicationGateway`, `PublicIPAddress` models); a subnet's is its VNet's, as ARM returns them
//! (`shared/reference/azure-arm.md` §1.3 [O]). Web sites, `config/web`, plans and Cosmos accounts
//! have none in their models, so an `If-Match` naming an etag never matches them and only `*`
//! does (HTTP's rule, RFC 9110 §13.1.1). [U] Whether each resource provider
//! enforces the headers: the Network specs declare no `If-Match` on subnets or gateways, an NSG
//! PUT with a stale etag was once reported ignored (Azure/azure-rest-api-specs#6789) while
//! kubernetes-sigs/cloud-provider-azure relies on 412 for NSGs and load balancers. The emulator
//! enforces them whenever they are sent (`behaviour.enforceIfMatch`, default true), so it never
//! accepts a conditional write the RPC says is refused; `false` ignores them, as an RP that does
//! not implement them would.

use super::{Engine, R, Request, Response};
use crate::error::ArmError;
use crate::ids::{self, ArmPath};
use crate::validate::NET_SUBNET;

fn precondition_failed() -> ArmError {
    ArmError::new(
        412,
        "PreconditionFailed",
        "The condition specified using HTTP conditional header(s) is not met.",
    )
}

/// Whether an `If-Match` / `If-None-Match` value (`*` or a list of etags) names `etag`.
fn names(header: &str, etag: Option<&str>) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|want| want == "*" || etag.is_some_and(|e| !e.is_empty() && want == e))
}

impl Engine {
    /// The etag a client sees for `id`: a Network resource's own, a subnet's VNet's; `None` for
    /// a resource type without one, or one that does not exist.
    pub(super) fn visible_etag(&self, id: &str) -> Option<String> {
        let r = self.state.get(id)?;
        if !r.rtype.starts_with("Microsoft.Network") {
            return None;
        }
        if r.rtype == NET_SUBNET {
            return self.state.get(&ids::parent(id)).map(|v| v.etag.clone());
        }
        Some(r.etag.clone())
    }

    /// `resp` with the resource's `ETag` header, when it has one (the RPC: an etag in the body
    /// must also be a header).
    pub(super) fn with_etag(&self, resp: Response, id: &str) -> Response {
        match self.visible_etag(id) {
            Some(e) if resp.get_header("ETag").is_none() => resp.header("ETag", e),
            _ => resp,
        }
    }

    /// Refuses a write whose precondition does not hold, before anything is changed.
    pub(super) fn check_preconditions(&self, req: &Request, p: &ArmPath, now: u64) -> R<()> {
        if !self.cfg.behaviour.enforce_if_match {
            return Ok(());
        }
        let method = req.method.as_str();
        let id = p.id();
        let exists = self.visible(&id, now);
        let etag = self.visible_etag(&id);
        if let Some(m) = req.header("if-match") {
            // PATCH and DELETE of an absent resource answer 404 and 204 themselves.
            let refused = if exists {
                !names(m, etag.as_deref())
            } else {
                method == "PUT"
            };
            if refused {
                return Err(precondition_failed());
            }
        }
        if let Some(m) = req.header("if-none-match")
            && exists
            && names(m, etag.as_deref())
        {
            return Err(precondition_failed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn header_values_name_an_etag_or_any() {
        let e = Some("W/\"1\"");
        assert!(names("*", e));
        assert!(names("*", None));
        assert!(names("W/\"1\"", e));
        assert!(names("\"0\", W/\"1\"", e));
        assert!(!names("W/\"2\"", e));
        assert!(!names("W/\"1\"", None), "no etag: nothing but * matches");
        assert!(!names("", Some("")));
    }
}
