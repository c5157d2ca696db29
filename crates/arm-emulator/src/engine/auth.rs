//! Who is calling ARM: the bearer token (signature, audience, expiry) and the role assignments
//! that cover the requested scope.

use serde_json::json;

use super::{Engine, R, Request};
use crate::error::ArmError;
use crate::ids;
use crate::jwt;
use crate::throttle::Kind;
use crate::util::rfc3339;

pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

/// Who is calling ARM.
#[derive(Debug, Clone)]
pub struct Principal {
    pub object_id: String,
    pub client_id: String,
}

impl Engine {
    pub(super) fn authenticate(&self, req: &Request, now: u64) -> R<Principal> {
        let Some(h) = req.header("authorization") else {
            return Err(ArmError::new(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        let Some(token) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        else {
            return Err(ArmError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ));
        };
        let invalid = || {
            ArmError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
        };
        let d = jwt::decode(token).map_err(|_| invalid())?;
        d.verify(&json!({"keys": [self.key.jwk()]})).map_err(|_| {
            ArmError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token has an invalid signature.",
            )
        })?;
        let aud = d.claims["aud"].as_str().unwrap_or("");
        if !ARM_AUDIENCES.contains(&aud) {
            return Err(ArmError::new(
                401,
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
                ),
            ));
        }
        let exp = d.claims["exp"].as_u64().unwrap_or(0);
        if exp * 1000 <= now {
            return Err(ArmError::new(
                401,
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    utc_words(exp * 1000),
                    utc_words(now)
                ),
            ));
        }
        Ok(Principal {
            object_id: d.claims["oid"].as_str().unwrap_or("").to_string(),
            client_id: d.claims["appid"].as_str().unwrap_or("").to_string(),
        })
    }

    pub(super) fn authorize(&self, p: &Principal, scope: &str, action: &str, verb: Kind) -> R<()> {
        let ok = self.cfg.role_assignments.iter().any(|ra| {
            (ra.principal.eq_ignore_ascii_case(&p.object_id)
                || ra.principal.eq_ignore_ascii_case(&p.client_id))
                && ids::scope_covers(&ra.scope, scope)
                && ra
                    .actions
                    .iter()
                    .any(|a| a == "*" || a.eq_ignore_ascii_case(verb.word()))
        });
        if ok {
            Ok(())
        } else {
            Err(ArmError::new(
                403,
                "AuthorizationFailed",
                format!(
                    "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                    p.object_id, p.object_id
                ),
            ))
        }
    }
}

/// `11/27/2026 08:00:00` — the format ARM uses in token-expiry messages.
pub(crate) fn utc_words(ms: u64) -> String {
    let s = rfc3339(ms);
    format!("{}/{}/{} {}", &s[5..7], &s[8..10], &s[0..4], &s[11..19])
}
